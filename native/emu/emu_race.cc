// The emulator's racecheck (NCF_CUDA_EMU_RACE=ON): hazards between the threads of a launch in
// shared memory (as compute-sanitizer's racecheck finds them on a GPU) and in device memory,
// found as the emulated kernels run.
//
// How: the CUDA sources are compiled with -fsanitize=thread, which makes the compiler call
// __tsan_read4(p), __tsan_write16(p), ... before each memory access; this file defines those
// functions itself (ThreadSanitizer's own runtime is never linked). An access counts when a
// kernel's thread makes it to the block's dynamic shared memory, to a static __shared__ variable
// (under emulation a static variable of the loaded image's writable segment) or to device memory
// (cudaMalloc's). Each byte keeps its last write and its last reads from two threads: who (block
// and thread), in which barrier interval of the block (each __syncthreads starts a new one), and
// at which warp-barrier stamp of the thread's warp (each shuffle or __syncwarp releasing the warp
// takes a new one). Two accesses of different threads, one a write, are ordered only if a
// __syncthreads came between them, or, within one warp, a shuffle or __syncwarp; in device memory,
// accesses of different blocks of one launch never are (separate launches always are); otherwise
// that is a hazard. A WMMA fragment load or store is the warp's (which lane moves which element is
// unspecified): ordered against each of its lanes' own accesses only by a __syncwarp or shuffle
// between them. Atomics never conflict with atomics, only with plain reads and writes. A cp.async
// copy (copy16_async) is checked as a write when it is issued and again when its thread waits for
// it (where the emulator lands it): any access of another thread to its destination in between is
// a hazard too, since on a GPU the data may land at any point of that span.
//
// GCC instruments assignments, not a call's result stored in place (`dst[i] = f(x)` with f not
// inlined); the racecheck build inlines all it can, and what stays a call goes unchecked.
//
// After a launch with hazards, the first ten are described and the process stops (with
// race_count_only(true) they are only counted: the emulator's own checks of this file).
#include "emu_race.h"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace emu {
namespace race {
namespace {

enum class Kind : uint8_t { None, Read, Write, Atomic, Copy };

struct Access {
  uint32_t interval = 0, stamp = 0;
  uint32_t grid = 0, block = 0;  // the grid (launch) and the block's index in it (device memory)
  uint16_t tid = 0;
  Kind kind = Kind::None;
};
struct Cell {
  Access write, read[2];
};

constexpr size_t kReportsPerLaunch = 10;
constexpr uintptr_t kChunk = 4096;

// Thread ids: a block's threads 0..1023, and for a warp's collective accesses (WMMA fragment
// loads and stores), kCollective + the warp.
constexpr int kCollective = 1024;
int warp_of(int tid) { return tid < kCollective ? tid / 32 : tid - kCollective; }

// Where an access lands: shared memory (the block's own), or device memory (the grid's).
enum class Region { None, Shared, Device };

struct State {
  int tid = -1, lane_tid = -1;  // who accesses now (a thread, or its warp collectively); the thread
  uint32_t interval = 0, stamps = 0;
  uint32_t grid = 0, block_index = 0;
  std::vector<uint32_t> warp_stamp;
  const char *kernel = "", *site = nullptr;
  uint3 block{};
  uintptr_t shared = 0;
  size_t shared_bytes = 0;
  std::vector<Cell> shared_cells;
  std::unordered_map<uintptr_t, Cell> static_cells;
  // Device memory: the allocations as the grid started (sorted by start) and the one hit last;
  // the cells of the chunks of kChunk bytes the grid has touched (the last one cached), and
  // chunk buffers to reuse (never cleared: cells of an earlier grid are ordered before this one's).
  std::vector<std::pair<uintptr_t, size_t>> allocations;
  size_t last_allocation = 0;
  std::unordered_map<uintptr_t, Cell*> device_chunks;
  uintptr_t last_chunk = 1;
  Cell* last_chunk_cells = nullptr;
  std::vector<std::unique_ptr<Cell[]>> chunk_buffers;
  size_t chunks_used = 0;
  size_t hazards = 0;
  std::vector<std::string> reports;
};

thread_local State t_state;
// The state while one of this host thread's fibers runs a kernel's thread, else null: the one
// thread-local read on every instrumented access.
thread_local State* t_running = nullptr;

std::atomic<size_t> g_hazards{0};
std::atomic<bool> g_count_only{false};

// The writable segments of the image this file is linked into (the plugin or the emulator's
// self-test): where static __shared__ variables live under emulation.
std::vector<std::pair<uintptr_t, uintptr_t>> g_static;
std::once_flag g_static_once;

void find_static_segments() {
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void*) -> int {
        const auto here = reinterpret_cast<uintptr_t>(&find_static_segments);
        bool ours = false;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
          if (ph.p_type == PT_LOAD && here >= lo && here < lo + ph.p_memsz) ours = true;
        }
        if (!ours) return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type == PT_LOAD && (ph.p_flags & PF_W)) {
            const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
            g_static.emplace_back(lo, lo + ph.p_memsz);
          }
        }
        return 1;
      },
      nullptr);
}

bool in_static(uintptr_t a) {
  for (const auto& [lo, hi] : g_static)
    if (a >= lo && a < hi) return true;
  return false;
}

// Whether access a (of another thread, or this one) is ordered before what thread tid does now.
// In device memory, accesses of earlier grids are; of other blocks of this grid, never.
bool ordered(const State& s, const Access& a, int tid, Region r) {
  if (a.kind == Kind::None) return true;
  if (r == Region::Device && (a.grid != s.grid || a.block != s.block_index)) return a.grid != s.grid;
  if (a.tid == tid || a.interval < s.interval) return true;
  const int w = warp_of(tid);
  return warp_of(a.tid) == w && a.stamp < s.warp_stamp[size_t(w)];
}

// "thread 5 (warp 0)", or "warp 0 (a WMMA load or store)".
std::string who(int tid) {
  char b[64];
  if (tid >= kCollective) std::snprintf(b, sizeof b, "warp %d (a WMMA load or store)", warp_of(tid));
  else std::snprintf(b, sizeof b, "thread %d (warp %d)", tid, tid / 32);
  return b;
}

const char* verb(Kind k, bool past) {
  switch (k) {
    case Kind::Read: return past ? "read" : "reads";
    case Kind::Write: return past ? "wrote" : "writes";
    case Kind::Atomic: return past ? "updated atomically" : "updates atomically";
    case Kind::Copy: return past ? "copied into (cp.async)" : "copies into (cp.async)";
    default: return "?";
  }
}

void hazard(State& s, uintptr_t a, size_t n, Kind kind, const Access& prev, Region r, uintptr_t base, const char* how) {
  ++s.hazards;
  if (s.reports.size() >= kReportsPerLaunch) return;
  char where[128];
  if (r == Region::Device)
    std::snprintf(where, sizeof where, "device memory byte %zu of the allocation at %p", size_t(a - base),
                  reinterpret_cast<void*>(base));
  else if (a - s.shared < s.shared_bytes)
    std::snprintf(where, sizeof where, "dynamic shared memory byte %zu", size_t(a - s.shared));
  else
    std::snprintf(where, sizeof where, "a static __shared__ variable (%p)", reinterpret_cast<void*>(a));
  char other[48] = "";
  if (r == Region::Device && prev.block != s.block_index) std::snprintf(other, sizeof other, " of block %u", prev.block);
  char line[640];
  std::snprintf(line, sizeof line, "block (%u,%u,%u): %s %s %zu bytes at %s, which %s%s %s %s", s.block.x, s.block.y,
                s.block.z, who(s.tid).c_str(), verb(kind, false), n, where, who(prev.tid).c_str(), other,
                verb(prev.kind, true), how);
  s.reports.emplace_back(line);
}

constexpr const char* kUnordered = "with no __syncthreads (or, within a warp, __syncwarp or shuffle) between";
constexpr const char* kOtherBlock = "in the same launch (blocks of a grid are not ordered; atomics would be)";

// The region of the bytes at a (an access lies in one) and, in device memory, the allocation's
// start; Region::None: memory the check leaves alone (a thread's stack, host memory).
struct Where {
  Region region = Region::None;
  uintptr_t base = 0;
};
Where where_is(State& s, uintptr_t a) {
  if (a - s.shared < s.shared_bytes) return {Region::Shared, s.shared};
  if (in_static(a)) return {Region::Shared, 0};
  const auto& al = s.allocations;
  if (al.empty()) return {};
  size_t k = s.last_allocation;
  if (k >= al.size() || a - al[k].first >= al[k].second) {
    auto it = std::upper_bound(al.begin(), al.end(), std::make_pair(a, ~size_t(0)));
    if (it == al.begin()) return {};
    k = size_t(--it - al.begin());
    if (a - al[k].first >= al[k].second) return {};
    s.last_allocation = k;
  }
  return {Region::Device, al[k].first};
}

// The cell of byte a, in the region where_is found.
Cell* cell_at(State& s, uintptr_t a, Region r) {
  if (r == Region::Device) {
    const uintptr_t chunk = a & ~(kChunk - 1);
    if (chunk != s.last_chunk) {
      Cell*& cells = s.device_chunks[chunk];
      if (!cells) {
        if (s.chunks_used == s.chunk_buffers.size()) s.chunk_buffers.emplace_back(new Cell[kChunk]());
        cells = s.chunk_buffers[s.chunks_used++].get();
      }
      s.last_chunk = chunk;
      s.last_chunk_cells = cells;
    }
    return s.last_chunk_cells + (a - chunk);
  }
  if (a - s.shared < s.shared_bytes) return &s.shared_cells[a - s.shared];
  return &s.static_cells[a];
}

// An access of n bytes at p by the running thread: checked against each byte's earlier
// accesses, then recorded.
void access(uintptr_t a, size_t n, Kind kind, bool check = true) {
  State& s = *t_running;
  const Where where = where_is(s, a);
  if (where.region == Region::None) return;  // most accesses: a thread's own stack
  const int tid = s.tid;
  const Access now{s.interval, s.warp_stamp[size_t(warp_of(tid))], s.grid, s.block_index, uint16_t(tid), kind};
  bool reported = !check;
  for (size_t i = 0; i < n; ++i) {
    Cell* c = cell_at(s, a + i, where.region);
    if (!reported) {
      const Access* clash = nullptr;
      const bool plain_write = kind == Kind::Write || kind == Kind::Copy;
      // Any access clashes with an unordered write (atomics not with atomic writes); writes and
      // atomics also with unordered reads.
      if (!ordered(s, c->write, tid, where.region) && (kind != Kind::Atomic || c->write.kind != Kind::Atomic))
        clash = &c->write;
      for (const Access& r : c->read)
        if (!clash && (plain_write || kind == Kind::Atomic) && !ordered(s, r, tid, where.region)) clash = &r;
      if (clash) {
        const bool other_block = where.region == Region::Device && clash->block != s.block_index;
        hazard(s, a, n, kind, *clash, where.region, where.base, other_block ? kOtherBlock : kUnordered);
        reported = true;
      }
    }
    if (kind == Kind::Read) {
      if (c->read[0].tid != tid || c->read[0].block != now.block || c->read[0].grid != now.grid) c->read[1] = c->read[0];
      c->read[0] = now;
    } else {
      c->write = now;
    }
  }
}

void access_if_running(const void* p, size_t n, Kind kind) {
  if (t_running) access(reinterpret_cast<uintptr_t>(p), n, kind);
}

}  // namespace

void grid_begin() {
  std::call_once(g_static_once, find_static_segments);
  State& s = t_state;
  ++s.grid;
  device_allocations(&s.allocations);
  s.last_allocation = 0;
  s.device_chunks.clear();
  s.chunks_used = 0;
  s.last_chunk = 1;  // no chunk starts there
}

void block_begin(const char* name, const char* site, uint3 block, unsigned threads, const void* shared, size_t bytes) {
  State& s = t_state;
  s.kernel = name;
  s.site = site;
  s.block = block;
  s.block_index = block.x + g_coords.grid_dim.x * (block.y + g_coords.grid_dim.y * block.z);
  ++s.interval;  // every earlier access (other blocks') is ordered before this block's
  s.warp_stamp.assign((threads + 31) / 32, ++s.stamps);
  s.shared = reinterpret_cast<uintptr_t>(shared);
  s.shared_bytes = bytes;
  if (s.shared_cells.size() < bytes) s.shared_cells.resize(bytes);
  s.static_cells.clear();
}

void set_thread(int tid) {
  State& s = t_state;
  s.tid = s.lane_tid = tid;
  t_running = tid >= 0 ? &s : nullptr;
}

void block_released() { ++t_state.interval; }
void warp_released(unsigned w) { t_state.warp_stamp[w] = ++t_state.stamps; }
uint32_t interval() { return t_state.interval; }

void async_issue(const void* dst, const void* src, size_t n) {
  access_if_running(src, n, Kind::Read);
  access_if_running(dst, n, Kind::Copy);
}

void async_commit(const void* dst, size_t n, uint32_t issued) {
  if (!t_running) return;
  State& s = *t_running;
  const auto a = reinterpret_cast<uintptr_t>(dst);
  if (where_is(s, a).region != Region::Shared) return;
  // Another thread's access since the copy was issued: the data may have landed before or after it.
  for (size_t i = 0; i < n; ++i) {
    Cell* c = cell_at(s, a + i, Region::Shared);
    const Access* clash = nullptr;
    if (c->write.kind != Kind::None && c->write.tid != s.tid && c->write.interval >= issued) clash = &c->write;
    for (const Access& r : c->read)
      if (!clash && r.kind != Kind::None && r.tid != s.tid && r.interval >= issued) clash = &r;
    if (clash) {
      hazard(s, a, n, Kind::Copy, *clash, Region::Shared, s.shared,
             "while the copy was in flight (between its issue and the issuing thread's wait, and a __syncthreads after it)");
      return access(a, n, Kind::Copy, false);  // one report a copy
    }
  }
  access(a, n, Kind::Copy);
}

void grid_end() {
  State& s = t_state;
  if (s.hazards == 0) return;
  g_hazards += s.hazards;
  if (g_count_only) {
    s.hazards = 0;
    s.reports.clear();
    return;
  }
  std::fprintf(stderr, "CUDA emulator racecheck: %zu hazard(s) in %s%s%s; the first %zu:\n", s.hazards,
               s.kernel, s.site ? ", launched from " : "", s.site ? s.site : "", s.reports.size());
  for (const std::string& r : s.reports) std::fprintf(stderr, "  %s\n", r.c_str());
  std::fprintf(stderr, "CUDA emulator racecheck: stopping\n");
  std::fflush(stderr);
  std::abort();
}

}  // namespace race

void race_atomic(const void* p, size_t n) { race::access_if_running(p, n, race::Kind::Atomic); }
void race_warp_collective(bool on) {
  race::State& s = race::t_state;
  if (s.lane_tid >= 0) s.tid = on ? race::kCollective + s.lane_tid / 32 : s.lane_tid;
}
size_t race_hazards() { return race::g_hazards; }
void race_count_only(bool on) { race::g_count_only = on; }

}  // namespace emu

// The calls -fsanitize=thread puts before each memory access and around each function.
extern "C" {
using emu::race::Kind;
using emu::race::access_if_running;
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
#define NCF_RACE_ACCESS(n)                                                             \
  void __tsan_read##n(void* p) { access_if_running(p, n, Kind::Read); }                \
  void __tsan_write##n(void* p) { access_if_running(p, n, Kind::Write); }              \
  void __tsan_unaligned_read##n(void* p) { access_if_running(p, n, Kind::Read); }      \
  void __tsan_unaligned_write##n(void* p) { access_if_running(p, n, Kind::Write); }    \
  void __tsan_volatile_read##n(void* p) { access_if_running(p, n, Kind::Read); }       \
  void __tsan_volatile_write##n(void* p) { access_if_running(p, n, Kind::Write); }
NCF_RACE_ACCESS(1)
NCF_RACE_ACCESS(2)
NCF_RACE_ACCESS(4)
NCF_RACE_ACCESS(8)
NCF_RACE_ACCESS(16)
#undef NCF_RACE_ACCESS
void __tsan_read_range(void* p, unsigned long n) { access_if_running(p, n, Kind::Read); }
void __tsan_write_range(void* p, unsigned long n) { access_if_running(p, n, Kind::Write); }

// C++ atomics in the instrumented sources (host code, static initialisation guards): done as
// they say, never checked (kernels' atomics are atomicAdd, reported through emu::race_atomic).
#define NCF_RACE_ATOMICS(bits)                                                                                  \
  using a##bits = uint##bits##_t;                                                                               \
  a##bits __tsan_atomic##bits##_load(const volatile a##bits* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); } \
  void __tsan_atomic##bits##_store(volatile a##bits* a, a##bits v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); } \
  a##bits __tsan_atomic##bits##_exchange(volatile a##bits* a, a##bits v, int) {                                \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                             \
  a##bits __tsan_atomic##bits##_fetch_add(volatile a##bits* a, a##bits v, int) {                               \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                             \
  a##bits __tsan_atomic##bits##_fetch_sub(volatile a##bits* a, a##bits v, int) {                               \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                             \
  a##bits __tsan_atomic##bits##_fetch_and(volatile a##bits* a, a##bits v, int) {                               \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                             \
  a##bits __tsan_atomic##bits##_fetch_or(volatile a##bits* a, a##bits v, int) {                                \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                           \
  }                                                                                                             \
  a##bits __tsan_atomic##bits##_fetch_xor(volatile a##bits* a, a##bits v, int) {                               \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                             \
  int __tsan_atomic##bits##_compare_exchange_strong(volatile a##bits* a, a##bits* c, a##bits v, int, int) {    \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                     \
  }                                                                                                             \
  int __tsan_atomic##bits##_compare_exchange_weak(volatile a##bits* a, a##bits* c, a##bits v, int mo, int fmo) { \
    return __tsan_atomic##bits##_compare_exchange_strong(a, c, v, mo, fmo);                                     \
  }                                                                                                             \
  a##bits __tsan_atomic##bits##_compare_exchange_val(volatile a##bits* a, a##bits c, a##bits v, int, int) {    \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                           \
    return c;                                                                                                   \
  }
NCF_RACE_ATOMICS(8)
NCF_RACE_ATOMICS(16)
NCF_RACE_ATOMICS(32)
NCF_RACE_ATOMICS(64)
#undef NCF_RACE_ATOMICS
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
}
