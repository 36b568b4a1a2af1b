// Shared by the CUDA backend's files: error checks that throw ncf::Error naming the call and the
// place, the device guard, launch helpers, and fp16/fp32 loads and stores selected by a Mat's dtype.
#pragma once
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "../core/env_switch.h"
#include "../core/errors.h"
#include "../core/tensor.h"

namespace ncf::cuda {

[[noreturn]] void throw_cuda(cudaError_t e, const char* what, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t s, const char* what, const char* file, int line);

#define NCF_CUDA(call)                                                   \
  do {                                                                   \
    cudaError_t ncf_e_ = (call);                                         \
    if (ncf_e_ != cudaSuccess) ::ncf::cuda::throw_cuda(ncf_e_, #call, __FILE__, __LINE__); \
  } while (0)
#define NCF_CUBLAS(call)                                                 \
  do {                                                                   \
    cublasStatus_t ncf_s_ = (call);                                      \
    if (ncf_s_ != CUBLAS_STATUS_SUCCESS) ::ncf::cuda::throw_cublas(ncf_s_, #call, __FILE__, __LINE__); \
  } while (0)
// After a kernel launch: reports launch errors (bad configuration) at the launch site.
#define NCF_LAUNCHED() NCF_CUDA(cudaGetLastError())

// Makes `device` current on the calling thread (the addon calls ops from several worker threads).
void use_device(int device);

// The environment variable `name` as a count (unset or empty: 0); anything but digits fails with
// an error naming it.
inline int env_count(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  const std::string s = v;
  if (s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos)
    fail(ErrorCode::InvalidArgument, std::string(name) + " is '" + s + "': expected a count (0 to 999999)");
  return std::stoi(s);
}

// Blocks of per_block threads for n work items, at least 1; past 1M blocks the kernels' grid-stride
// loops take the rest (CudaBackend::grid caps it further under NCF_CUDA_MAX_BLOCKS).
constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int per_block = kThreads) {
  const int64_t b = (n + per_block - 1) / per_block;
  return unsigned(b < 1 ? 1 : (b > 65535LL * 16 ? 65535LL * 16 : b));
}

// A grid-stride loop over the (row, group) pairs of a rows x groups index space (index i = row *
// groups + g), without a 64-bit division per step: the thread's first index is divided once, and
// each step adds the stride's quotient and remainder (a division costs more instructions than
// the rest of a dropout kernel's index work).
struct RowGroupWalk {
  int64_t row;
  int g;
  int groups;
  int64_t row_step;
  int g_step;
  __device__ RowGroupWalk(int groups_per_row)
      : groups(groups_per_row) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    row = i / groups;
    g = int(i - row * groups);
    row_step = stride / groups;
    g_step = int(stride - row_step * groups);
  }
  __device__ void next() {
    row += row_step;
    g += g_step;
    if (g >= groups) {
      g -= groups;
      ++row;
    }
  }
};

// Element i of a matrix stored as fp32 or fp16.
__device__ __forceinline__ float load(const void* p, DType t, int64_t i) {
  return t == DType::F32 ? static_cast<const float*>(p)[i] : __half2float(static_cast<const __half*>(p)[i]);
}
__device__ __forceinline__ void store(void* p, DType t, int64_t i, float v) {
  if (t == DType::F32) static_cast<float*>(p)[i] = v;
  else static_cast<__half*>(p)[i] = __float2half_rn(v);
}

// Eight halves moved as one 16-byte value. A union, so that reading the halves of a loaded uint4
// is defined in GNU C++ as in CUDA (a reinterpret_cast of a local uint4 breaks strict aliasing,
// and g++ under the host emulation optimises it into reads of stale values).
union Half8 {
  uint4 raw;
  __half2 h2[4];
};

// Eight consecutive values (a 16-byte-aligned group) to and from fp16 or fp32 memory.
template <typename T>
__device__ __forceinline__ void store8(T* dst, const float* v) {
  if constexpr (std::is_same<T, __half>::value) {
    Half8 p;
#pragma unroll
    for (int k = 0; k < 4; ++k) p.h2[k] = __floats2half2_rn(v[2 * k], v[2 * k + 1]);
    *reinterpret_cast<uint4*>(dst) = p.raw;
  } else {
    reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
}
// Eight fp16 values as loaded in 16 bytes, to floats.
__device__ __forceinline__ void unpack8(uint4 raw, float* v) {
  Half8 p;
  p.raw = raw;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 f = __half22float2(p.h2[k]);
    v[2 * k] = f.x;
    v[2 * k + 1] = f.y;
  }
}
template <typename T>
__device__ __forceinline__ void load8(const T* src, float* v) {
  if constexpr (std::is_same<T, __half>::value) {
    unpack8(*reinterpret_cast<const uint4*>(src), v);
  } else {
    const float4 a = reinterpret_cast<const float4*>(src)[0], b = reinterpret_cast<const float4*>(src)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
}

// The sum of v over the warp's 32 lanes, in every lane (butterfly of shuffles).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// dst[0..3] += (a, b, c, d) atomically: one 16-byte vector atomic on sm_90, four atomics before.
// dst must be 16-byte aligned.
__device__ __forceinline__ void atomic_add4(float* dst, float a, float b, float c, float d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float4*>(dst), make_float4(a, b, c, d));
#else
  atomicAdd(dst, a);
  atomicAdd(dst + 1, b);
  atomicAdd(dst + 2, c);
  atomicAdd(dst + 3, d);
#endif
}

// dst[0..7] += v[0..7] atomically (two atomic_add4); dst 16-byte aligned.
__device__ __forceinline__ void atomic_add8(float* dst, const float* v) {
  atomic_add4(dst, v[0], v[1], v[2], v[3]);
  atomic_add4(dst + 4, v[4], v[5], v[6], v[7]);
}

// A running sum of 8 columns over consecutive rows of one key (a table row): rows of the same key
// add up in registers, and each run reaches memory as one atomic_add8 into table + key * ld, when
// the key changes and at the end (flush). Starts on the first row's key. The kernels that use it
// give a thread kRunRows consecutive rows (a batch grouped by user has ~8 rows per user at
// ml-20m's shape), so a run costs one atomic_add8 instead of one per row.
constexpr int kRunRows = 16;
struct RunSum8 {
  uint32_t key;
  float acc[8];
  __device__ explicit RunSum8(uint32_t first) : key(first), acc{0, 0, 0, 0, 0, 0, 0, 0} {}
  __device__ void add(uint32_t k, const float* v, float* table, int64_t ld) {
    if (k != key) {
      flush(table, ld);
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] = 0.0f;
      key = k;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[j] += v[j];
  }
  __device__ void flush(float* table, int64_t ld) const { atomic_add8(table + int64_t(key) * ld, acc); }
};

inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

inline cudaDataType_t cuda_type(DType t) { return t == DType::F32 ? CUDA_R_32F : CUDA_R_16F; }

}  // namespace ncf::cuda
