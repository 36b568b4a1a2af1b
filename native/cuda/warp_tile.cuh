// The pieces of the fused kernels (split_forward.cu, train_pass.cu) in which one warp carries 16
// rows through the hidden layers in shared memory, multiplying on Tensor Cores with WMMA: fp16
// inputs with fp32 accumulation when the activations are fp16, TF32 when they are fp32.
// A warp's activation rows are padded by 16 bytes against shared-memory bank conflicts; a layer
// is computed 16 output columns at a time into a 16 x 16 fp32 accumulator tile in shared memory,
// from which the caller's epilogue reads.
#pragma once
#include <mma.h>

#include "cuda_common.cuh"

namespace ncf::cuda {

constexpr int kTileRows = 16;                       // rows per warp (WMMA's M)
constexpr int kAccLd = 20;                          // row stride of the accumulator tile, floats
constexpr int kAccBytes = kTileRows * kAccLd * 4;
constexpr int kPadHalf = 8, kPadFloat = 4;          // 16 bytes of padding per activation row
constexpr int kMaxFusedLayers = 8;                  // hidden layers a fused kernel takes

// WMMA shapes and conversions per activation type. TF32 WMMA exists from sm_80: for older
// architectures in a build, kernels on fp32 activations must not be instantiated on the device
// (NCF_WARP_TF32 is undefined there) and are never launched.
template <typename T>
struct Tc;
template <>
struct Tc<__half> {
  static constexpr int K = 16;
  static constexpr int pad = kPadHalf;
  using A = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major>;
  using Bt = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __half, nvcuda::wmma::col_major>;
  using Bn = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __half, nvcuda::wmma::row_major>;
  using C = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;
  template <typename F>
  __device__ static void to_tf32(F&) {}
  __device__ static __half from_float(float v) { return __float2half_rn(v); }
  __device__ static float to_float(__half v) { return __half2float(v); }
};
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define NCF_WARP_TF32 1
template <>
struct Tc<float> {
  static constexpr int K = 8;
  static constexpr int pad = kPadFloat;
  using A = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 8, nvcuda::wmma::precision::tf32, nvcuda::wmma::row_major>;
  using Bt = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 8, nvcuda::wmma::precision::tf32, nvcuda::wmma::col_major>;
  using Bn = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 8, nvcuda::wmma::precision::tf32, nvcuda::wmma::row_major>;
  using C = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float>;
  template <typename F>
  __device__ static void to_tf32(F& f) {
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = nvcuda::wmma::__float_to_tf32(f.x[i]);
  }
  __device__ static float from_float(float v) { return v; }
  __device__ static float to_float(float v) { return v; }
};
#endif

// acc [16 x 16] = x [16 x k] W^T restricted to output columns n0 .. n0 + 15, for W [out x k]
// row-major (a layer's forward pass); x in shared memory with row stride ldx. The accumulator is
// in shared memory and visible to the whole warp on return.
template <typename T>
__device__ void tile_times_wt(const T* x, int ldx, int k, const T* W, int n0, float* acc) {
  typename Tc<T>::C c;
  nvcuda::wmma::fill_fragment(c, 0.0f);
  for (int k0 = 0; k0 < k; k0 += Tc<T>::K) {
    typename Tc<T>::A fa;
    typename Tc<T>::Bt fb;
    nvcuda::wmma::load_matrix_sync(fa, x + k0, unsigned(ldx));
    // W^T [k x out] is W read column-major: element (i, j) at W[j * k + i].
    nvcuda::wmma::load_matrix_sync(fb, W + int64_t(n0) * k + k0, unsigned(k));
    Tc<T>::to_tf32(fa);
    Tc<T>::to_tf32(fb);
    nvcuda::wmma::mma_sync(c, fa, fb, c);
  }
  nvcuda::wmma::store_matrix_sync(acc, c, kAccLd, nvcuda::wmma::mem_row_major);
  __syncwarp();
}

// acc [16 x 16] = dz [16 x out] W restricted to columns n0 .. n0 + 15, for W [out x in]
// row-major (a layer's input gradient); dz in shared memory with row stride ldz.
template <typename T>
__device__ void tile_times_w(const T* dz, int ldz, int out, const T* W, int in, int n0, float* acc) {
  typename Tc<T>::C c;
  nvcuda::wmma::fill_fragment(c, 0.0f);
  for (int k0 = 0; k0 < out; k0 += Tc<T>::K) {
    typename Tc<T>::A fa;
    typename Tc<T>::Bn fb;
    nvcuda::wmma::load_matrix_sync(fa, dz + k0, unsigned(ldz));
    nvcuda::wmma::load_matrix_sync(fb, W + int64_t(k0) * in + n0, unsigned(in));
    Tc<T>::to_tf32(fa);
    Tc<T>::to_tf32(fb);
    nvcuda::wmma::mma_sync(c, fa, fb, c);
  }
  nvcuda::wmma::store_matrix_sync(acc, c, kAccLd, nvcuda::wmma::mem_row_major);
  __syncwarp();
}

// Above 48 KiB a kernel must opt in to its dynamic shared memory: once per kernel, to the limit.
inline void opt_in_shared_memory(const void* kernel, size_t limit, bool& done) {
  if (!done) NCF_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(limit)));
  done = true;
}

// After launching a fused kernel: true if it was accepted. A GPU that cannot run it as
// configured (too many registers or too much shared memory for it, no kernel image for its
// architecture) gets the op chain instead, said once on stderr, and fused kernels stay off;
// any other error throws.
bool fused_launch_ok(const char* kernel, bool& fused_enabled);

inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

}  // namespace ncf::cuda
