// Shared by the CUDA backend's files: error checks that throw ncf::Error naming the call and the
// place, the device guard, launch helpers, and fp16/fp32 loads and stores selected by a Mat's dtype.
#pragma once
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

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

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int per_block = kThreads) {
  const int64_t b = (n + per_block - 1) / per_block;
  return unsigned(b < 1 ? 1 : (b > 65535LL * 16 ? 65535LL * 16 : b));
}

// Element i of a matrix stored as fp32 or fp16.
__device__ __forceinline__ float load(const void* p, DType t, int64_t i) {
  return t == DType::F32 ? static_cast<const float*>(p)[i] : __half2float(static_cast<const __half*>(p)[i]);
}
__device__ __forceinline__ void store(void* p, DType t, int64_t i, float v) {
  if (t == DType::F32) static_cast<float*>(p)[i] = v;
  else static_cast<__half*>(p)[i] = __float2half_rn(v);
}

inline cudaDataType_t cuda_type(DType t) { return t == DType::F32 ? CUDA_R_32F : CUDA_R_16F; }

}  // namespace ncf::cuda
