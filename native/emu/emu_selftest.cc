// Checks of the emulator itself against CUDA's and cuBLASLt's documented behaviour, so that the
// CUDA backend's tests under emulation rest on a harness that is known to be right: launch
// limits and the shared-memory opt-in, pointer checks, warp shuffles, __syncthreads, __syncwarp,
// WMMA (fp16 and tf32) and __float_to_tf32, copy directions, stream capture and graphs, and cuBLASLt's
// column-major matmul for every transpose, with the RELU_BIAS epilogue, fp16 output and its
// argument checks, each against a plain loop written from the documentation.
// Prints one line per check; exits non-zero if any fails.
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_emu.h"

namespace {

int failures = 0, checks = 0;
void expect(bool ok, const char* what) {
  ++checks;
  if (!ok) ++failures;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
}

void noop_kernel(int*) {}

// Every lane ends with the sum of all lanes' values (a butterfly reduction).
void shuffle_sum_kernel(int* out) {
  int v = int(threadIdx.x);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// Thread i writes slot i, then (after the barrier) reads its neighbour's slot.
void barrier_kernel(int* out) {
  __shared__ int slots[256];
  slots[threadIdx.x] = int(threadIdx.x) * 3;
  __syncthreads();
  out[threadIdx.x] = slots[(threadIdx.x + 1) % blockDim.x];
}

// Lane i writes slot i of shared memory; after __syncwarp it reads its neighbour's.
// Each lane: lane 5's value + 1000 * (every lane's id < 32) + 2000 * (every lane's id < 31).
void vote_kernel(int* out) {
  const int lane = int(threadIdx.x % 32);
  out[threadIdx.x] = __shfl_sync(0xffffffffu, lane * 7, 5) + 1000 * __all_sync(0xffffffffu, lane < 32) +
                     2000 * __all_sync(0xffffffffu, lane < 31);
}

// Lane i gets lane i - 3's value (lanes 0..2 keep their own).
void shuffle_up_kernel(int* out) {
  const int lane = int(threadIdx.x % 32);
  out[threadIdx.x] = __shfl_up_sync(0xffffffffu, lane * 10, 3);
}

// Lane i gets lane i + 3's value (lanes 29..31 keep their own).
void shuffle_down_kernel(int* out) {
  const int lane = int(threadIdx.x % 32);
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, lane * 10, 3);
}

void syncwarp_kernel(int* out) {
  __shared__ int slots[32];
  slots[threadIdx.x] = int(threadIdx.x) + 100;
  __syncwarp();
  out[threadIdx.x] = slots[(threadIdx.x + 1) % 32];
}

// Every block's thread 0 writes its block index to out[0]: the last block to run wins.
void last_block_kernel(int* out) {
  if (threadIdx.x == 0) out[0] = int(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
}

// Each thread copies its 16 bytes of src into dynamic shared memory by cp.async and reads them
// before and after its wait: out[2t] what was there before (the launch's fill), out[2t + 1] src's.
void async_copy_kernel(const int* src, int* out) {
  int* slots = emu::dynamic_shared<int>();
  const int t = int(threadIdx.x);
  emu::async_copy16(slots + 4 * t, src + 4 * t);
  out[2 * t] = slots[4 * t];
  emu::async_copies_wait();
  out[2 * t + 1] = slots[4 * t];
}

#ifdef NCF_EMU_RACE
// Shared-memory accesses, each with a hazard or without one, for the racecheck (emu_race.cc).
enum class Planted {
  AcrossWarps,            // thread t writes slot t, then reads slot t + 32 (mod 64): no barrier
  AcrossWarpsBarrier,     // the same with __syncthreads between
  InWarp,                 // lane l writes slot l, reads slot l + 1 (mod 32): no __syncwarp
  InWarpSyncwarp,         // the same with __syncwarp between
  InWarpShuffle,          // the same with a shuffle between
  StaticShared,           // AcrossWarps on a static __shared__ array
  Atomics,                // every thread atomically adds to one word: atomics do not race
  AtomicThenRead,         // ... and then thread 0 reads it, no barrier
  AtomicThenBarrierRead,  // ... with __syncthreads first
  CopyWhileRead,          // warp 1 reads slots that warp 0 refills by cp.async, no barrier
  CopyReadNoBarrier,      // thread 1 reads what thread 0 copied, after thread 0's wait, no barrier
  CopyReadBeforeWait,     // thread 1 reads it after a barrier that came before thread 0's wait
  CopyWaitBarrierRead,    // the right order: copy, wait, __syncthreads, read
  WmmaLoadNoSync,         // each warp's lanes write a 16 x 16 tile, then load it as a fragment
  WmmaLoadSyncwarp,       // the same with __syncwarp between
  WmmaStoreNoSync,        // each warp stores a fragment, then its lanes read the tile
  WmmaStoreSyncwarp,      // the same with __syncwarp between
  GlobalAcrossBlocks,     // thread 0 of each block writes one word of device memory
  GlobalAtomics,          // every thread of every block atomically adds to it
  GlobalInBlock,          // thread 0 writes a word of device memory, thread 33 reads it, no barrier
  GlobalInBlockBarrier,   // the same with __syncthreads between
};
void planted_kernel(Planted p, const int* src, int* out, int* word) {
  __shared__ int static_slots[64];
  int* slots = emu::dynamic_shared<int>();
  const int t = int(threadIdx.x);
  int v = 0;
  switch (p) {
    case Planted::GlobalAcrossBlocks:
      if (t == 0) word[0] = int(blockIdx.x);
      break;
    case Planted::GlobalAtomics:
      atomicAdd(word, 1);
      break;
    case Planted::GlobalInBlock:
    case Planted::GlobalInBlockBarrier:
      if (t == 0) word[1 + blockIdx.x] = 5;
      if (p == Planted::GlobalInBlockBarrier) __syncthreads();
      if (t == 33) v = word[1 + blockIdx.x];
      break;
    case Planted::AcrossWarps:
    case Planted::AcrossWarpsBarrier:
      slots[t] = t;
      if (p == Planted::AcrossWarpsBarrier) __syncthreads();
      v = slots[(t + 32) % 64];
      break;
    case Planted::InWarp:
    case Planted::InWarpSyncwarp:
    case Planted::InWarpShuffle:
      slots[t] = t;
      if (p == Planted::InWarpSyncwarp) __syncwarp();
      if (p == Planted::InWarpShuffle) v = __shfl_xor_sync(0xffffffffu, t, 1);
      v += slots[(t + 1) % 32 + t / 32 * 32];
      break;
    case Planted::StaticShared:
      static_slots[t] = t;
      v = static_slots[(t + 32) % 64];
      break;
    case Planted::Atomics:
    case Planted::AtomicThenRead:
    case Planted::AtomicThenBarrierRead:
      if (t == 0) slots[0] = 0;
      __syncthreads();
      atomicAdd(slots, 1);
      if (p == Planted::AtomicThenBarrierRead) __syncthreads();
      if (p != Planted::Atomics && t == 0) v = slots[0];
      break;
    case Planted::CopyWhileRead:
      slots[t] = t;
      __syncthreads();
      if (t >= 32) v = slots[t - 32];
      else if (t < 16) emu::async_copy16(slots + 4 * t, src + 4 * t);
      emu::async_copies_wait();
      break;
    case Planted::CopyReadNoBarrier:  // copy; barrier; wait; read
      if (t == 0) emu::async_copy16(slots, src);
      __syncthreads();
      emu::async_copies_wait();
      if (t == 1) v = slots[0];
      break;
    case Planted::CopyReadBeforeWait:  // copy; barrier; read; barrier; wait
      if (t == 0) emu::async_copy16(slots, src);
      __syncthreads();
      if (t == 1) v = slots[0];
      __syncthreads();
      emu::async_copies_wait();
      break;
    case Planted::CopyWaitBarrierRead:  // copy; wait; barrier; read
      if (t == 0) emu::async_copy16(slots, src);
      emu::async_copies_wait();
      __syncthreads();
      if (t == 1) v = slots[0];
      break;
    case Planted::WmmaLoadNoSync:
    case Planted::WmmaLoadSyncwarp:
    case Planted::WmmaStoreNoSync:
    case Planted::WmmaStoreSyncwarp: {
      using namespace nvcuda;
      float* tile = reinterpret_cast<float*>(slots) + 256 * (t / 32);  // and 512 further on, a copy
      const int lane = t % 32;
      wmma::fragment<wmma::accumulator, 16, 16, 8, float> f;
      const bool load = p == Planted::WmmaLoadNoSync || p == Planted::WmmaLoadSyncwarp;
      const bool sync = p == Planted::WmmaLoadSyncwarp || p == Planted::WmmaStoreSyncwarp;
      if (load) {
        for (int i = 0; i < 8; ++i) tile[(lane / 16 * 8 + i) * 16 + lane % 16] = float(i);  // by columns
        if (sync) __syncwarp();
        wmma::load_matrix_sync(f, tile, 16, wmma::mem_row_major);
        wmma::store_matrix_sync(tile + 512, f, 16, wmma::mem_row_major);  // (keeps the load)
      } else {
        wmma::fill_fragment(f, 1.0f);
        wmma::store_matrix_sync(tile, f, 16, wmma::mem_row_major);
        if (sync) __syncwarp();
        for (int i = 0; i < 8; ++i) v += int(tile[(lane / 16 * 8 + i) * 16 + lane % 16]);
      }
      break;
    }
  }
  out[blockIdx.x * blockDim.x + t] = v;
}
#endif

// D = A B + C on one 16 x 16 x K tile by WMMA; A row-major [16 x K], B [K x 16] column-major
// (ld K) or row-major (ld 16), C and D row-major [16 x 16]. Inputs are rounded to tf32 for the tf32 variant.
template <typename T, typename E, int K, typename LayoutB>
void wmma_kernel(const E* a, const E* b, const float* c, float* d) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, K, T, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, K, T, LayoutB> fb;
  wmma::fragment<wmma::accumulator, 16, 16, K, float> fc;
  wmma::load_matrix_sync(fa, a, K);
  wmma::load_matrix_sync(fb, b, std::is_same<LayoutB, wmma::col_major>::value ? K : 16);
  wmma::load_matrix_sync(fc, c, 16, wmma::mem_row_major);
  if constexpr (std::is_same<T, wmma::precision::tf32>::value) {
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  }
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(d, fc, 16, wmma::mem_row_major);
}

template <typename T>
T* device_array(const std::vector<T>& host) {
  void* p = nullptr;
  cudaMalloc(&p, host.size() * sizeof(T));
  cudaMemcpyAsync(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, nullptr);
  return static_cast<T*>(p);
}
template <typename T>
std::vector<T> host_array(const T* p, size_t n) {
  std::vector<T> h(n);
  cudaMemcpyAsync(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost, nullptr);
  return h;
}

// out[0] += v (one thread).
void add_kernel(int* out, int v) {
  if (threadIdx.x == 0) out[0] += v;
}

// Stream capture and graphs as CUDA documents them: captured work does not run until the graph
// is launched, and then with the arguments it was captured with; an update takes a capture of
// the same nodes and refuses another; calls a capture refuses invalidate it.
void graph_checks() {
  int* d = device_array(std::vector<int>(4, 0));
  cudaStream_t s = nullptr;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  auto capture = [&](int v, int launches) {
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    for (int i = 0; i < launches; ++i) emu::launch(add_kernel, dim3(1), dim3(32), 0, s)(d, v);
    cudaGraph_t g = nullptr;
    return cudaStreamEndCapture(s, &g) == cudaSuccess ? g : nullptr;
  };
  cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
  cudaStreamIsCapturing(s, &status);
  expect(status == cudaStreamCaptureStatusActive, "a stream being captured says so");
  cudaMemsetAsync(d, 0, 4 * sizeof(int), s);
  emu::launch(add_kernel, dim3(1), dim3(32), 0, s)(d, 5);
  cudaGraph_t g = nullptr;
  expect(cudaStreamEndCapture(s, &g) == cudaSuccess && g != nullptr, "a capture ends in a graph");
  cudaStreamIsCapturing(s, &status);
  expect(status == cudaStreamCaptureStatusNone, "and the stream is no longer captured");
  cudaMemsetAsync(d, 0, 4 * sizeof(int), nullptr);
  emu::launch(add_kernel, dim3(1), dim3(32), 0, nullptr)(d, 1);
  expect(host_array(d, 1)[0] == 1, "captured work did not run, and work on another stream did");
  cudaGraphExec_t exec = nullptr;
  expect(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess, "the graph instantiates");
  cudaGraphDestroy(g);
  cudaGraphLaunch(exec, s);
  expect(host_array(d, 1)[0] == 5, "a launch runs the graph's nodes in order (memset, then += 5)");
  g = capture(7, 1);
  cudaGraph_t g2 = g;
  // The update's graph has one node fewer than the executable one (memset, kernel).
  cudaGraphExecUpdateResultInfo info{};
  expect(cudaGraphExecUpdate(exec, g, &info) == cudaErrorGraphExecUpdateFailure &&
             info.result == cudaGraphExecUpdateErrorTopologyChanged,
         "an update with another count of nodes is refused");
  cudaGraphExec_t exec2 = nullptr;
  cudaGraphInstantiate(&exec2, g2, 0);
  cudaGraphDestroy(g2);
  g = capture(11, 1);
  expect(cudaGraphExecUpdate(exec2, g, &info) == cudaSuccess && info.result == cudaGraphExecUpdateSuccess,
         "an update with the same nodes is taken");
  cudaGraphDestroy(g);
  cudaGraphLaunch(exec2, s);
  cudaGraphLaunch(exec2, s);
  expect(host_array(d, 1)[0] == 27, "the updated graph runs with the new argument (5 + 11 + 11)");
  // Refused calls: each invalidates the capture, and the work captured around it never runs.
  int* fresh = nullptr;
  std::vector<int> h(4, 0);
  const char* what[] = {"cudaStreamSynchronize", "cudaMalloc", "a copy from the host", "cudaEventRecord"};
  cudaEvent_t ev = nullptr;
  cudaEventCreate(&ev);
  for (int which = 0; which < 4; ++which) {
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    emu::launch(add_kernel, dim3(1), dim3(32), 0, s)(d, 100);
    const cudaError_t e = which == 0   ? cudaStreamSynchronize(s)
                          : which == 1 ? cudaMalloc(reinterpret_cast<void**>(&fresh), 16)
                          : which == 2 ? cudaMemcpyAsync(d, h.data(), 16, cudaMemcpyHostToDevice, s)
                                       : cudaEventRecord(ev, s);
    cudaStreamIsCapturing(s, &status);
    cudaGraph_t bad = nullptr;
    const cudaError_t end = cudaStreamEndCapture(s, &bad);
    char line[160];
    std::snprintf(line, sizeof line, "%s is refused while capturing and invalidates the capture", what[which]);
    expect(e == cudaErrorStreamCaptureUnsupported && status == cudaStreamCaptureStatusInvalidated &&
               end == cudaErrorStreamCaptureInvalidated && bad == nullptr,
           line);
  }
  expect(host_array(d, 1)[0] == 27, "nothing of an invalidated capture ran");
  cudaEventDestroy(ev);
  cudaGraphExecDestroy(exec);
  cudaGraphExecDestroy(exec2);
  cudaStreamDestroy(s);
  cudaFree(d);
}

void launch_checks() {
  int* d = device_array(std::vector<int>(1024, 0));
  emu::launch(noop_kernel, dim3(1), dim3(2048))(d);
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "a block of 2048 threads is an invalid configuration");
  emu::launch(noop_kernel, dim3(0), dim3(32))(d);
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "an empty grid is an invalid configuration");
  emu::launch(noop_kernel, dim3(1), dim3(32), size_t(64) << 10)(d);
  expect(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB of dynamic shared memory needs an opt-in");
  expect(cudaFuncSetAttribute(reinterpret_cast<const void*>(noop_kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                              64 << 10) == cudaSuccess,
         "cudaFuncSetAttribute opts a kernel in to 64 KiB");
  emu::launch(noop_kernel, dim3(1), dim3(32), size_t(64) << 10)(d);
  expect(cudaGetLastError() == cudaSuccess, "after the opt-in a launch with 64 KiB runs");
  expect(cudaFuncSetAttribute(reinterpret_cast<const void*>(noop_kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                              1 << 20) == cudaErrorInvalidValue,
         "an opt-in beyond the device's shared memory is refused");
  int host = 0;
  bool threw = false;
  try {
    emu::launch(noop_kernel, dim3(1), dim3(32))(&host);
  } catch (const std::runtime_error&) {
    threw = true;
  }
  expect(threw, "a host pointer passed to a kernel is reported");
  std::vector<int> h(4);
  expect(cudaMemcpyAsync(d, h.data(), 16, cudaMemcpyDeviceToHost, nullptr) == cudaErrorInvalidValue,
         "a copy in the wrong direction is refused");
  cudaFree(d);
}

void warp_and_block_checks() {
  int* d = device_array(std::vector<int>(256, 0));
  emu::launch(shuffle_sum_kernel, dim3(2), dim3(64))(d);
  const std::vector<int> s = host_array(d, 128);
  bool ok = true;
  for (int i = 0; i < 128; ++i) ok = ok && s[size_t(i)] == ((i % 64) / 32) * 32 * 32 + 496;  // sum of the warp's lane ids
  expect(ok, "__shfl_xor_sync butterfly: every lane gets its warp's sum");
  emu::launch(barrier_kernel, dim3(1), dim3(256))(d);
  const std::vector<int> b = host_array(d, 256);
  ok = true;
  for (int i = 0; i < 256; ++i) ok = ok && b[size_t(i)] == ((i + 1) % 256) * 3;
  expect(ok, "__syncthreads: every write before the barrier is seen after it");
  emu::launch(syncwarp_kernel, dim3(1), dim3(32))(d);
  const std::vector<int> w = host_array(d, 32);
  ok = true;
  for (int i = 0; i < 32; ++i) ok = ok && w[size_t(i)] == (i + 1) % 32 + 100;
  expect(ok, "__syncwarp: every lane's write before it is seen after it");
  emu::launch(vote_kernel, dim3(1), dim3(64))(d);
  const std::vector<int> v = host_array(d, 64);
  ok = true;
  for (int i = 0; i < 64; ++i) ok = ok && v[size_t(i)] == 35 + 1000;
  expect(ok, "__shfl_sync broadcasts lane 5's value; __all_sync is true only where every lane agrees");
  emu::launch(shuffle_up_kernel, dim3(1), dim3(64))(d);
  const std::vector<int> up = host_array(d, 64);
  ok = true;
  for (int i = 0; i < 64; ++i) ok = ok && up[size_t(i)] == (i % 32 < 3 ? i % 32 : i % 32 - 3) * 10;
  expect(ok, "__shfl_up_sync: lane i gets lane i - 3's value, lanes 0..2 their own");
  emu::launch(shuffle_down_kernel, dim3(1), dim3(64))(d);
  const std::vector<int> down = host_array(d, 64);
  ok = true;
  for (int i = 0; i < 64; ++i) ok = ok && down[size_t(i)] == (i % 32 > 28 ? i % 32 : i % 32 + 3) * 10;
  expect(ok, "__shfl_down_sync: lane i gets lane i + 3's value, lanes 29..31 their own");
  int last[2];
#ifdef NCF_EMU_RACE
  emu::race_count_only(true);  // the blocks race for out[0] on purpose
#endif
  for (int& l : last) {
    emu::launch(last_block_kernel, dim3(3, 2, 2), dim3(32))(d);
    l = host_array(d, 1)[0];
  }
#ifdef NCF_EMU_RACE
  emu::race_count_only(false);
#endif
  expect(std::min(last[0], last[1]) == 0 && std::max(last[0], last[1]) == 11,
         "consecutive grids run their blocks in opposite orders (the last block is 11, then 0, or 0, then 11)");
  cudaFree(d);
}

// cp.async under emulation lands at the issuing thread's wait, not before.
void async_copy_checks() {
  std::vector<int> src(256);
  for (int i = 0; i < 256; ++i) src[size_t(i)] = 1000 + i;
  int* dsrc = device_array(src);
  int* dout = device_array(std::vector<int>(128, 0));
  emu::launch(async_copy_kernel, dim3(1), dim3(64), 64 * 16)(dsrc, dout);
  const std::vector<int> out = host_array(dout, 128);
  bool before = true, after = true;
  for (int t = 0; t < 64; ++t) {
    before = before && out[size_t(2 * t)] == int(0xA5A5A5A5u);
    after = after && out[size_t(2 * t + 1)] == 1000 + 4 * t;
  }
  expect(before, "cp.async: before the thread's wait its destination still holds what was there");
  expect(after, "cp.async: after the wait it holds the copied bytes");
  cudaFree(dsrc);
  cudaFree(dout);
}

#ifdef NCF_EMU_RACE
// The racecheck finds each planted hazard and nothing where there is none, whichever way round
// the emulator runs the warps (it alternates launch by launch).
void race_checks() {
  emu::race_count_only(true);
  int* dsrc = device_array(std::vector<int>(256, 7));
  int* dout = device_array(std::vector<int>(128, 0));
  int* dword = device_array(std::vector<int>(4, 0));
  const struct {
    Planted p;
    bool hazard;
    const char* what;
  } cases[] = {
      {Planted::AcrossWarps, true, "a read of another warp's write with no __syncthreads between"},
      {Planted::AcrossWarpsBarrier, false, "the same with __syncthreads between"},
      {Planted::InWarp, true, "a read of another lane's write with no __syncwarp between"},
      {Planted::InWarpSyncwarp, false, "the same with __syncwarp between"},
      {Planted::InWarpShuffle, false, "the same with a shuffle between"},
      {Planted::StaticShared, true, "a static __shared__ array read across warps with no barrier"},
      {Planted::Atomics, false, "atomicAdd by every thread to one shared word"},
      {Planted::AtomicThenRead, true, "a plain read of that word with no barrier after the atomics"},
      {Planted::AtomicThenBarrierRead, false, "the same read after __syncthreads"},
      {Planted::CopyWhileRead, true, "a cp.async refill of slots another warp is reading"},
      {Planted::CopyReadNoBarrier, true, "a read of another thread's cp.async after its wait, no __syncthreads"},
      {Planted::CopyReadBeforeWait, true, "a read of another thread's cp.async before its wait"},
      {Planted::CopyWaitBarrierRead, false, "cp.async, wait, __syncthreads, then another thread's read"},
      {Planted::WmmaLoadNoSync, true, "a WMMA load of what the warp's lanes wrote, no __syncwarp between"},
      {Planted::WmmaLoadSyncwarp, false, "the same with __syncwarp between"},
      {Planted::WmmaStoreNoSync, true, "the lanes' reads of a WMMA store, no __syncwarp between"},
      {Planted::WmmaStoreSyncwarp, false, "the same with __syncwarp between"},
      {Planted::GlobalAcrossBlocks, true, "two blocks' plain writes to one word of device memory"},
      {Planted::GlobalAtomics, false, "atomicAdd by every thread of two blocks to one word of device memory"},
      {Planted::GlobalInBlock, true, "a read of another warp's write to device memory, no __syncthreads between"},
      {Planted::GlobalInBlockBarrier, false, "the same with __syncthreads between"},
  };
  for (const auto& c : cases) {
    bool right = true;
    for (int round = 0; round < 2; ++round) {
      const size_t before = emu::race_hazards();
      emu::launch(planted_kernel, dim3(2), dim3(64), 4096)(c.p, dsrc, dout, dword);
      right = right && (emu::race_hazards() > before) == c.hazard;
    }
    std::string what = std::string("racecheck: ") + (c.hazard ? "reports " : "finds nothing in ") + c.what;
    expect(right, what.c_str());
  }
  // Separate launches are ordered: the second grid's writes after the first grid's reads.
  const size_t before = emu::race_hazards();
  for (int i = 0; i < 2; ++i)
    emu::launch(planted_kernel, dim3(2), dim3(64), 4096)(Planted::GlobalInBlockBarrier, dsrc, dout, dword);
  expect(emu::race_hazards() == before, "racecheck: finds nothing between one launch's accesses and the next's");
  emu::race_count_only(false);
  cudaFree(dsrc);
  cudaFree(dout);
  cudaFree(dword);
}
#endif

// The tf32 value CUDA's cvt.rna.tf32.f32 gives: 10 mantissa bits, nearest, ties away from zero.
float tf32_reference(float x) {
  const double m = std::ldexp(1.0, std::ilogb(x) - 10);  // the spacing of tf32 values near x
  const double q = double(x) / m;
  return float(std::copysign(std::floor(std::fabs(q) + 0.5), q) * m);
}

void wmma_checks() {
  using namespace nvcuda;
  std::vector<float> a(16 * 16), b(16 * 16), c(16 * 16);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float((i * 37) % 23) / 7.0f - 1.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float((i * 53) % 29) / 11.0f - 1.2f;
  for (size_t i = 0; i < c.size(); ++i) c[i] = float(i % 5) - 2.0f;
  float* dc = device_array(c);
  float* dd = device_array(std::vector<float>(16 * 16));
  auto check = [&](int K, auto in, const char* what, double tol, bool b_row_major = false) {
    double err = 0;
    const std::vector<float> got = host_array(dd, 16 * 16);
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) {
        double s = c[size_t(i) * 16 + j];
        for (int q = 0; q < K; ++q)
          s += double(in(a[size_t(i) * K + q])) * double(in(b_row_major ? b[size_t(q) * 16 + j] : b[size_t(j) * K + q]));
        err = std::max(err, std::fabs(s - double(got[size_t(i) * 16 + j])));
      }
    char msg[160];
    std::snprintf(msg, sizeof msg, "%s (max error %.1e)", what, err);
    expect(err < tol, msg);
  };
  {
    std::vector<__half> ha(16 * 16), hb(16 * 16);
    for (size_t i = 0; i < ha.size(); ++i) ha[i] = __float2half_rn(a[i]);
    for (size_t i = 0; i < hb.size(); ++i) hb[i] = __float2half_rn(b[i]);
    __half* da = device_array(ha);
    __half* db = device_array(hb);
    const auto as_half = [](float x) { return __half2float(__float2half_rn(x)); };
    emu::launch(wmma_kernel<__half, __half, 16, wmma::col_major>, dim3(1), dim3(32))(da, db, dc, dd);
    check(16, as_half, "wmma 16x16x16 fp16: D = A B + C, A row-major, B column-major", 1e-4);
    emu::launch(wmma_kernel<__half, __half, 16, wmma::row_major>, dim3(1), dim3(32))(da, db, dc, dd);
    check(16, as_half, "wmma 16x16x16 fp16: D = A B + C, A row-major, B row-major", 1e-4, true);
    cudaFree(da);
    cudaFree(db);
  }
  {
    float* da = device_array(std::vector<float>(a.begin(), a.begin() + 16 * 8));
    float* db = device_array(std::vector<float>(b.begin(), b.begin() + 16 * 8));
    emu::launch(wmma_kernel<wmma::precision::tf32, float, 8, wmma::col_major>, dim3(1), dim3(32))(da, db, dc, dd);
    check(8, tf32_reference, "wmma 16x16x8 tf32 on __float_to_tf32 inputs: D = A B + C, B column-major", 1e-4);
    emu::launch(wmma_kernel<wmma::precision::tf32, float, 8, wmma::row_major>, dim3(1), dim3(32))(da, db, dc, dd);
    check(8, tf32_reference, "wmma 16x16x8 tf32: B row-major", 1e-4, true);
    cudaFree(da);
    cudaFree(db);
  }
  bool ok = true;
  for (float x : {1.0f + 0x1p-11f, 1.0f + 0x1p-10f + 0x1p-11f, -3.0f - 0x1p-9f - 0x1p-11f, 1e-30f * 1.0007f, 123456.7f})
    ok = ok && wmma::__float_to_tf32(x) == tf32_reference(x);
  expect(ok, "__float_to_tf32 rounds to nearest, ties away from zero");
  cudaFree(dc);
  cudaFree(dd);
}

// D (m x n, column-major) = op(A) op(B) with op(A) m x k, by the definition.
std::vector<float> reference_gemm(bool ta, bool tb, int m, int n, int k, const std::vector<float>& a, int lda,
                                  const std::vector<float>& b, int ldb, const std::vector<float>* bias, bool relu) {
  std::vector<float> d(size_t(m) * size_t(n));
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int q = 0; q < k; ++q) s += double(ta ? a[size_t(i) * lda + q] : a[size_t(q) * lda + i]) * (tb ? b[size_t(q) * ldb + j] : b[size_t(j) * ldb + q]);
      if (bias) s += (*bias)[size_t(i)];
      if (relu && s < 0) s = 0;
      d[size_t(j) * m + i] = float(s);
    }
  return d;
}

struct Matmul {
  cublasLtHandle_t h;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, ld;
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
  Matmul(bool ta, bool tb, int m, int n, int k, int lda, int ldb, cudaDataType_t dtype, uint32_t epilogue, const void* bias) {
    cublasLtCreate(&h);
    cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, ta ? k : m, ta ? m : k, lda);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, tb ? n : k, tb ? k : n, ldb);
    cublasLtMatrixLayoutCreate(&ld, dtype, m, n, m);
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulHeuristicResult_t r{};
    int count = 0;
    found = cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, ld, ld, pref, 1, &r, &count) == CUBLAS_STATUS_SUCCESS && count == 1;
    algo = r.algo;
  }
  ~Matmul() {
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(h);
  }
  cublasStatus_t run(const void* a, const void* b, void* d) {
    const float one = 1.0f, zero = 0.0f;
    return cublasLtMatmul(h, desc, &one, a, la, b, lb, &zero, d, ld, d, ld, &algo, nullptr, 0, nullptr);
  }
};

void gemm_checks() {
  const int m = 7, n = 5, k = 9;
  std::vector<float> a(size_t(k) * 16), b(size_t(k) * 16), bias(m);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float((i * 37) % 17) / 8.0f - 1.0f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float((i * 53) % 19) / 9.0f - 1.0f;
  for (int i = 0; i < m; ++i) bias[size_t(i)] = 0.3f * float(i) - 1.0f;
  float* da = device_array(a);
  float* db = device_array(b);
  float* dbias = device_array(bias);
  float* dd = device_array(std::vector<float>(size_t(m) * n));
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 2;  // padded leading dimensions
    for (const bool epi : {false, true}) {
      Matmul mm(ta, tb, m, n, k, lda, ldb, CUDA_R_32F, epi ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_DEFAULT, epi ? dbias : nullptr);
      const bool ran = mm.found && mm.run(da, db, dd) == CUBLAS_STATUS_SUCCESS;
      const std::vector<float> got = host_array(dd, size_t(m) * n);
      const std::vector<float> want = reference_gemm(ta, tb, m, n, k, a, lda, b, ldb, epi ? &bias : nullptr, epi);
      double err = 0;
      for (size_t i = 0; i < got.size(); ++i) err = std::max(err, double(std::fabs(got[i] - want[i])));
      char what[160];
      std::snprintf(what, sizeof what, "cublasLtMatmul op(A)=%c op(B)=%c%s = the column-major definition (max error %.1e)",
                    ta ? 'T' : 'N', tb ? 'T' : 'N', epi ? " + RELU_BIAS (bias along D's rows)" : "", err);
      expect(ran && err < 1e-5, what);
    }
  }
  {
    __half* dh = device_array(std::vector<__half>(size_t(m) * n));
    Matmul mm(false, false, m, n, k, m, k, CUDA_R_16F, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    expect(!mm.found, "fp32 inputs with an fp16 output: no algorithm, as in cuBLASLt's table");
    cudaFree(dh);
  }
  {
    Matmul mm(false, false, m, n, k, m - 1, k, CUDA_R_32F, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    expect(!mm.found, "a leading dimension below the stored rows is refused");
  }
  {
    // DRELU_BGRAD: element (i, j) of D kept where bit i + j * 128 of the mask is set (bit b of
    // byte b / 8, from the low end), and D's row sums written to the bias pointer.
    const int64_t aux_ld = 128;
    std::vector<uint8_t> bits(size_t(n) * aux_ld / 8);
    for (size_t i = 0; i < bits.size(); ++i) bits[i] = uint8_t(i * 89 + 45);
    uint8_t* daux = device_array(bits);
    float* dgrad = device_array(std::vector<float>(size_t(m)));
    Matmul mm(false, false, m, n, k, m, k, CUDA_R_32F, CUBLASLT_EPILOGUE_DRELU_BGRAD, dgrad);
    cublasLtMatmulDescSetAttribute(mm.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &daux, sizeof daux);
    cublasLtMatmulDescSetAttribute(mm.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld);
    Matmul refused(false, false, m, n, k, m, k, CUDA_R_32F, CUBLASLT_EPILOGUE_DRELU_BGRAD, dgrad);
    const int64_t bad_ld = 64;
    cublasLtMatmulDescSetAttribute(refused.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &daux, sizeof daux);
    cublasLtMatmulDescSetAttribute(refused.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &bad_ld, sizeof bad_ld);
    // The heuristic again, now that the descriptors hold the bit-mask.
    auto choose = [](Matmul& x) {
      cublasLtMatmulHeuristicResult_t r{};
      int count = 0;
      x.found = cublasLtMatmulAlgoGetHeuristic(x.h, x.desc, x.la, x.lb, x.ld, x.ld, x.pref, 1, &r, &count) ==
                    CUBLAS_STATUS_SUCCESS && count == 1;
      x.algo = r.algo;
      return x.found;
    };
    const bool found_bad = choose(refused);
    const bool ran = choose(mm) && mm.run(da, db, dd) == CUBLAS_STATUS_SUCCESS;
    std::vector<float> want = reference_gemm(false, false, m, n, k, a, m, b, k, nullptr, false), sums(size_t(m), 0.0f);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const size_t bit = size_t(i) + size_t(j) * aux_ld;
        float& v = want[size_t(j) * m + i];
        if (!((bits[bit / 8] >> (bit % 8)) & 1)) v = 0.0f;
        sums[size_t(i)] += v;
      }
    const std::vector<float> got = host_array(dd, size_t(m) * n), grad = host_array(dgrad, size_t(m));
    double err = 0;
    for (size_t i = 0; i < got.size(); ++i) err = std::max(err, double(std::fabs(got[i] - want[i])));
    for (int i = 0; i < m; ++i) err = std::max(err, double(std::fabs(grad[size_t(i)] - sums[size_t(i)])));
    expect(ran && err < 1e-5, "cublasLtMatmul + DRELU_BGRAD: D masked by the column-major bit-mask, bias = D's row sums");
    expect(!found_bad, "a DRELU bit-mask leading dimension that is not a multiple of 128 is refused");
    cudaFree(daux);
    cudaFree(dgrad);
  }
  {
    Matmul mm(false, false, m, n, k, m, k, CUDA_R_32F, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    expect(mm.found && mm.run(da + 1, db, dd) == CUBLAS_STATUS_INVALID_VALUE,
           "an operand less aligned than the algorithm was chosen for is refused");
  }
  for (void* p : {static_cast<void*>(da), static_cast<void*>(db), static_cast<void*>(dbias), static_cast<void*>(dd)}) cudaFree(p);
}

}  // namespace

int main() {
  launch_checks();
  warp_and_block_checks();
  gemm_checks();
  wmma_checks();
  graph_checks();
  async_copy_checks();
#ifdef NCF_EMU_RACE
  race_checks();
#endif
  if (failures) std::printf("%d of %d emulator checks FAILED\n", failures, checks);
  else std::printf("all %d emulator checks passed\n", checks);
  return failures ? 1 : 0;
}
