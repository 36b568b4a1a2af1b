// The pieces of the fused kernels (split_forward.cu, train_pass.cu) in which one warp carries 16
// rows through the hidden layers in shared memory, multiplying on Tensor Cores with WMMA: fp16
// inputs with fp32 accumulation when the activations are fp16, TF32 when they are fp32.
// A warp's activation rows are padded by 16 bytes against shared-memory bank conflicts; a layer
// is computed 16 output columns at a time into a 16 x 16 fp32 accumulator tile in shared memory,
// from which the caller's epilogue reads.
#pragma once
#include <mma.h>

#include <type_traits>

#include "../core/backend.h"
#include "cuda_common.cuh"

namespace ncf::cuda {

constexpr int kTileRows = 16;                       // rows per warp (WMMA's M)
constexpr int kAccLd = 20;                          // row stride of the accumulator tile, floats
constexpr int kAccBytes = kTileRows * kAccLd * 4;
constexpr int kPadHalf = 8, kPadFloat = 4;          // 16 bytes of padding per activation row
constexpr int kMaxFusedLayers = 8;                  // hidden layers a fused kernel takes
constexpr int kFusedWarps = 4;                      // warps per block of a fused kernel

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

// acc [16 x 16] = x [16 x k] op(W) restricted to output columns n0 .. n0 + 15, with x in shared
// memory (row stride ldx) and W row-major with rows of ldw elements: op(W) = W^T for W [out x k]
// (a layer's forward pass, ldw = k) or W itself for W [k x out] (a layer's input gradient from
// its output gradient, ldw = out). The accumulator is in shared memory and visible to the whole
// warp on return.
template <typename T, bool kTransposeW>
__device__ void tile_mma(const T* x, int ldx, int k, const T* W, int ldw, int n0, float* acc) {
  using B = typename std::conditional<kTransposeW, typename Tc<T>::Bt, typename Tc<T>::Bn>::type;
  typename Tc<T>::C c;
  nvcuda::wmma::fill_fragment(c, 0.0f);
  for (int k0 = 0; k0 < k; k0 += Tc<T>::K) {
    typename Tc<T>::A fa;
    B fb;
    nvcuda::wmma::load_matrix_sync(fa, x + k0, unsigned(ldx));
    // W^T read column-major has element (i, j) at W[j * ldw + i]; W read row-major at W[i * ldw + j].
    nvcuda::wmma::load_matrix_sync(fb, kTransposeW ? W + int64_t(n0) * ldw + k0 : W + int64_t(k0) * ldw + n0, unsigned(ldw));
    Tc<T>::to_tf32(fa);
    Tc<T>::to_tf32(fb);
    nvcuda::wmma::mma_sync(c, fa, fb, c);
  }
  nvcuda::wmma::store_matrix_sync(acc, c, kAccLd, nvcuda::wmma::mem_row_major);
  __syncwarp();
}

// A fused kernel: Body<T>::run(args, the block's dynamic shared memory). Bodies on fp32
// activations trap on architectures without TF32 WMMA, where they are never launched.
template <typename T, typename Args, template <typename> class Body>
__global__ void __launch_bounds__(kFusedWarps * 32) fused_kernel(Args a) {
  extern __shared__ float4 fused_shared[];
#ifndef NCF_WARP_TF32
  if constexpr (std::is_same<T, float>::value) __trap();
  else
#endif
    Body<T>::run(a, fused_shared);
}

// Launches fused_kernel<T, Args, Body>, first opting it in (once: `opted_in`) to the GPU's limit
// of dynamic shared memory, which above 48 KiB a kernel must ask for.
template <typename T, typename Args, template <typename> class Body>
void launch_fused(const Args& a, unsigned blocks, size_t shared, cudaStream_t stream, size_t limit, bool& opted_in) {
  void (*const kernel)(Args) = fused_kernel<T, Args, Body>;
  if (!opted_in)
    NCF_CUDA(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, int(limit)));
  opted_in = true;
  kernel<<<blocks, kFusedWarps * 32, shared, stream>>>(a);
}

// After launching a fused kernel: true if it was accepted. A GPU that cannot run it as
// configured (too many registers or too much shared memory for it, no kernel image for its
// architecture) gets the op chain instead, said once on stderr, and fused kernels stay off;
// any other error throws.
bool fused_launch_ok(const char* kernel, bool& fused_enabled);

inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Whether a fused kernel takes a layer width: a positive multiple of 16 (WMMA tiles).
inline bool fused_width(int w) { return w > 0 && w % 16 == 0; }
// A hidden layer as the fused kernels take it: its weights and bias in the activations' type.
// False unless both exist, the weights are 32-byte aligned (WMMA loads) and both widths fit.
inline bool fused_layer(const LinearParams& p, bool half, const void** w, const void** b) {
  *w = half ? p.w_half : p.w;
  *b = half ? p.b_half : p.b;
  return *w && *b && aligned_to(*w, 32) && fused_width(p.in) && fused_width(p.out);
}

}  // namespace ncf::cuda
