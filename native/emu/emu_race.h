// The racecheck build's bookkeeping (NCF_CUDA_EMU_RACE=ON, emu_race.cc), as the scheduler
// (emu_grid.cc) drives it: which grid, block and thread run, when a barrier releases the block or
// a warp, and the cp.async copies a thread issues and waits for. Without NCF_EMU_RACE these are
// empty inline functions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "cuda_emu.h"

namespace emu {
// The device allocations now, as (start, bytes) sorted by start (emu_cudart.cc).
void device_allocations(std::vector<std::pair<uintptr_t, size_t>>* out);
}  // namespace emu

namespace emu::race {

#ifdef NCF_EMU_RACE
// A grid starts (its blocks follow); accesses to device memory by its threads are checked
// against each other until grid_end.
void grid_begin();
// A block of `threads` threads of the kernel launched as `name` from function `site` (or null)
// starts, with `bytes` of dynamic shared memory at shared. Accesses until the next block_begin
// belong to it.
void block_begin(const char* name, const char* site, uint3 block, unsigned threads, const void* shared, size_t bytes);
// Thread tid of the block runs from now on (-1: the scheduler, whose accesses are not checked).
void set_thread(int tid);
// __syncthreads released the block; a shuffle or __syncwarp released warp w.
void block_released();
void warp_released(unsigned w);
// The block's current barrier interval (for async_commit).
uint32_t interval();
// The running thread issues a cp.async of n bytes from src to dst (checked as a read and a write
// then); it lands at the thread's wait (async_commit, with the interval it was issued in).
void async_issue(const void* dst, const void* src, size_t n);
void async_commit(const void* dst, size_t n, uint32_t issued);
// The grid has finished: reports its hazards (and stops the process if any, unless told not to).
void grid_end();
#else
inline void grid_begin() {}
inline void block_begin(const char*, const char*, uint3, unsigned, const void*, size_t) {}
inline void set_thread(int) {}
inline void block_released() {}
inline void warp_released(unsigned) {}
inline uint32_t interval() { return 0; }
inline void async_issue(const void*, const void*, size_t) {}
inline void async_commit(const void*, size_t, uint32_t) {}
inline void grid_end() {}
#endif

}  // namespace emu::race
