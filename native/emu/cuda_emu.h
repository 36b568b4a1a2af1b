// CUDA emulation on the host, for testing the CUDA backend where there is no GPU.
//
// cmake/NcfCudaEmu.cmake compiles native/cuda/*.cu with the host C++ compiler into
// ncf_cuda_emu.so, a drop-in for ncf_cuda.so (load it with NCF_CUDA_PLUGIN=path). This header
// is force-included first. It keeps CUDA's own headers for the types (dim3, __half, uint4 ...,
// cuRAND's Philox) and replaces what only a GPU provides:
//   - kernels run block after block; the threads of a block are fibers (emu_grid.cc) that switch
//     only at __syncthreads and warp shuffles, so both have CUDA's semantics (a shuffle waits for
//     its 32 lanes, __syncthreads for the whole block) and atomics are plain read-modify-writes;
//   - launches are checked as CUDA checks them (block size, grid size, shared memory), and every
//     pointer argument of a kernel must lie in device memory (emu_cudart.cc keeps the registry);
//   - cuBLASLt's matmul is a host GEMM with the same layouts, checks and epilogues, TF32 rounding
//     of inputs under CUBLAS_COMPUTE_32F_FAST_TF32 (emu_cublaslt.cc).
// The configure step rewrites `k<<<g, b, s, st>>>(args)` into
// `::emu::launch("k", __PRETTY_FUNCTION__, k, g, b, s, st)(args)` (names for reports)
// and `extern __shared__ T x[];` into `T* x = ::emu::dynamic_shared<T>();`; nothing else in the
// CUDA sources changes. cp.async copies (copy16_async in mlp_tiles.cuh) land when the issuing
// thread waits for them, the latest a GPU may, so a read of their destination before then sees
// what was there before. What this cannot find: timing and performance, and differences of the
// real cuBLASLt kernels. Fibers never interleave, so races cannot show as wrong values, but the
// build with NCF_CUDA_EMU_RACE=ON reports hazards between a launch's threads in shared and device
// memory as they happen (emu_race.cc).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static  // blocks run one after another, so one instance serves each block in turn
#define __launch_bounds__(...)

namespace emu {

// The running fiber's coordinates (per host thread: the addon may run ops from worker threads).
struct Coords {
  uint3 thread{0, 0, 0}, block{0, 0, 0};
  dim3 block_dim{1, 1, 1}, grid_dim{1, 1, 1};
};
extern thread_local Coords g_coords;

struct LaunchConfig {
  dim3 grid, block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
  size_t shared_limit = 48 << 10;  // the kernel's dynamic shared memory limit (cudaFuncSetAttribute)
  // For reports: the kernel's name as the launch wrote it, and the function that launched it.
  const char* name = "a kernel";
  const char* site = nullptr;
};
// The limit cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, ...) set
// for a kernel (48 KiB until then, as on the GPU).
size_t dynamic_shared_limit(const void* kernel);

// Runs body once per thread of the grid (see emu_grid.cc); c has passed launch_error (Launch
// checks it when the kernel is launched or captured, not again at each graph launch).
void run_grid(const LaunchConfig& c, const std::function<void()>& body);
// What CUDA says of the launch configuration c (cudaSuccess: it may run).
cudaError_t launch_error(const LaunchConfig& c);

// CUDA Graphs (emu_graph.cc). While the calling thread captures a stream (cudaStreamBeginCapture),
// the work submitted to that stream (kernels, memsets, device-to-device copies, cuBLASLt matmuls)
// becomes the graph's next node instead of running, with its arguments as they were when it was
// submitted; cudaGraphLaunch runs the nodes in order. Otherwise submit runs the work at once.
enum class NodeKind { Kernel, Memset, Copy, Matmul };
void submit(cudaStream_t stream, NodeKind kind, std::function<void()> work);
// For the calls a capture refuses (waiting for the device, allocating or freeing, copies to or
// from the host, events, NCCL): when the calling thread is capturing, invalidates its capture and
// returns true, and the call returns cudaErrorStreamCaptureUnsupported (CUDA's thread-local mode).
bool capture_refuses();
// The block's dynamic shared memory (the launch's third argument), 16-byte aligned.
void* dynamic_shared_memory();
template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_memory());
}
// __syncthreads: waits until every thread of the block arrives.
void block_barrier();
// A warp shuffle: publishes this lane's 8 bytes, waits for the warp, returns src_lane's.
uint64_t warp_exchange(uint64_t mine, int src_lane);
// cp.async: 16 bytes from global to shared memory, copied when the calling thread next calls
// async_copies_wait (or finishes), not before.
void async_copy16(void* shared, const void* global);
void async_copies_wait();
#ifdef NCF_EMU_RACE
// The racecheck build (emu_race.cc): an atomic access of n bytes at p (atomics do not race with
// each other, only with plain accesses); hazards found so far in this process; on: hazards are
// only counted, off (the default): a launch with hazards reports them and stops the process.
void race_atomic(const void* p, size_t n);
size_t race_hazards();
void race_count_only(bool on);
#endif
// Whether p lies in (or one past) memory from cudaMalloc; kernels get only such pointers.
bool is_device_pointer(const void* p);
// While one exists, the host may touch device memory. With NCF_EMU_PROTECT=1 device memory is
// otherwise mapped PROT_NONE, so host code that dereferences a device pointer (which crashes on
// a real GPU) crashes here too; kernels, copies, memsets, cuBLASLt and NCCL open a scope.
struct DeviceScope {
  DeviceScope();
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
};
// Records a launch error for cudaGetLastError.
void set_last_error(cudaError_t e);
[[noreturn]] void fatal(const char* what);

template <typename T>
void check_argument(const T& arg, int index) {
  if constexpr (std::is_pointer_v<T>) {
    if (arg != nullptr && !is_device_pointer(arg)) {
      char msg[128];
      std::snprintf(msg, sizeof msg, "kernel argument %d is a pointer outside device memory", index);
      fatal(msg);
    }
  }
}

template <typename... P>
struct Launch {
  void (*kernel)(P...);
  LaunchConfig config;
  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    // Arguments are converted to the parameter types and copied once, as a launch does (a
    // captured launch keeps them for its graph's launches).
    auto params = std::make_shared<const std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
    if (const cudaError_t e = launch_error(config)) return set_last_error(e);
    submit(config.stream, NodeKind::Kernel, [k = kernel, c = config, params] {
      std::apply([](const auto&... p) {
        int i = 0;
        (check_argument(p, i++), ...);
      }, *params);
      run_grid(c, [&] { std::apply(k, *params); });
    });
  }
};

template <typename... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes = 0, cudaStream_t stream = nullptr) {
  return Launch<P...>{kernel, LaunchConfig{grid, block, shared_bytes, stream,
                                           dynamic_shared_limit(reinterpret_cast<const void*>(kernel))}};
}
// The same, named (the rewritten CUDA sources' launches).
template <typename... P>
Launch<P...> launch(const char* name, const char* site, void (*kernel)(P...), dim3 grid, dim3 block,
                    size_t shared_bytes = 0, cudaStream_t stream = nullptr) {
  Launch<P...> l = launch(kernel, grid, block, shared_bytes, stream);
  l.config.name = name;
  l.config.site = site;
  return l;
}

}  // namespace emu

#define threadIdx (::emu::g_coords.thread)
#define blockIdx (::emu::g_coords.block)
#define blockDim (::emu::g_coords.block_dim)
#define gridDim (::emu::g_coords.grid_dim)

inline void __syncthreads() { ::emu::block_barrier(); }

namespace emu {
// Lane src_lane's v, in the calling lane: the shuffles' common part.
template <typename T>
T shuffle_from(unsigned mask, T v, int src_lane, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move up to 8 bytes");
  if (mask != 0xffffffffu || width != 32) fatal("the emulator supports full-warp shuffles only");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  bits = warp_exchange(bits, src_lane & 31);
  T out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}
}  // namespace emu

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::emu::shuffle_from(mask, v, int(threadIdx.x % 32) ^ lane_mask, width);
}

// Lane src_lane's v in every lane.
template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return ::emu::shuffle_from(mask, v, src_lane, width);
}

// Lane (lane - delta)'s v, or the lane's own v where that is below lane 0.
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = int(threadIdx.x % 32), src = lane - int(delta);
  return ::emu::shuffle_from(mask, v, src < 0 ? lane : src, width);
}

// Lane (lane + delta)'s v, or the lane's own v where that is past lane 31.
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = int(threadIdx.x % 32), src = lane + int(delta);
  return ::emu::shuffle_from(mask, v, src > 31 ? lane : src, width);
}

// Whether pred holds in every lane (a butterfly of exchanges, so every lane takes part).
inline bool __all_sync(unsigned mask, bool pred) {
  if (mask != 0xffffffffu) ::emu::fatal("the emulator supports full-warp votes only");
  const int lane = int(threadIdx.x % 32);
  uint64_t all = pred ? 1 : 0;
  for (int o = 1; o < 32; o <<= 1) all &= ::emu::warp_exchange(all, lane ^ o);
  return all != 0;
}

// __syncwarp: every lane of the warp arrives before any goes on (full mask only).
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) ::emu::fatal("the emulator supports full-warp __syncwarp only");
  ::emu::warp_exchange(0, int(threadIdx.x % 32));
}

// Fibers switch only at barriers, so a read-modify-write is atomic. (In the racecheck build the
// access is reported as atomic, and the read-modify-write itself is left uninstrumented.)
#ifdef NCF_EMU_RACE
#define NCF_EMU_UNCHECKED __attribute__((noinline, no_sanitize_thread))
#else
#define NCF_EMU_UNCHECKED
#endif
template <typename T>
NCF_EMU_UNCHECKED T emu_atomic_rmw(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
#undef NCF_EMU_UNCHECKED
template <typename T>
T emu_atomic_add(T* p, T v) {
#ifdef NCF_EMU_RACE
  ::emu::race_atomic(p, sizeof(T));
#endif
  return emu_atomic_rmw(p, v);
}
inline float atomicAdd(float* p, float v) { return emu_atomic_add(p, v); }
inline double atomicAdd(double* p, double v) { return emu_atomic_add(p, v); }
inline int atomicAdd(int* p, int v) { return emu_atomic_add(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return emu_atomic_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return emu_atomic_add(p, v); }

using std::isfinite;
using std::max;
using std::min;

#include "emu_wmma.h"
