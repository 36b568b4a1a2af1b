// The last step of a hidden layer's forward for 8 consecutive features [8g, 8g + 8) of one row,
// shared by linear_forward's kernel (after the GEMM) and gather_add_relu (the first layer by
// parts): optional bias and ReLU, then dropout with the row's Philox block (core/dropout.h); the
// values stay in registers, the caller loads and stores them.
#pragma once
#include "../core/dropout.h"
#include "cuda_common.cuh"

namespace ncf::cuda {

template <typename T>
constexpr DType dtype_of() {
  return std::is_same<T, __half>::value ? DType::F16 : DType::F32;
}

// v as it reads back after a store in T.
template <typename T>
__device__ __forceinline__ float stored(float v) {
  if constexpr (std::is_same<T, __half>::value) return __half2float(__float2half_rn(v));
  else return v;
}

// v[l] (l < lanes, the features present) = dropout(relu(v[l] + bias[l])) where relu (bias may be
// null: none), else dropout(v[l]). Returns the live-unit byte of the values as they will be
// stored in T: bit l set where v[l] > 0.
template <typename T>
__device__ __forceinline__ uint32_t relu_dropout8(float* v, int lanes, const float* bias, bool relu, const Dropout& d,
                                                  int64_t row, int g) {
  const U32x4 blk = d.active ? dropout_block(d, uint64_t(row), uint32_t(g)) : U32x4{0, 0, 0, 0};
  uint32_t live = 0;
#pragma unroll
  for (int l = 0; l < 8; ++l) {
    if (relu && l < lanes) v[l] = fmaxf(v[l] + (bias ? bias[l] : 0.0f), 0.0f);
    if (d.active) v[l] = dropout_keep(d, blk, l) ? v[l] * d.scale : 0.0f;
    if (l < lanes) live |= uint32_t(stored<T>(v[l]) > 0.0f) << l;
  }
  return live;
}

// The same for 8 fp16 values as stored (16 bytes), in half2 arithmetic: two features per
// instruction and no conversions, for the fp16 forms of the kernels that issue limits
// (gather_add_relu, the dropout pass after a GEMM). With half_dropout_ok(d) (the scale exact in
// fp16, as dropout 0.5's 2 is), the stored result is exactly the fp32 path's on fp16 inputs: the
// fp16 product rounds once, as the exact fp32 product rounded to fp16 does, and ReLU and the keep
// mask only select. gather_add_relu rounds its sum to fp16 first (__hadd2), as a separate add
// would: against scaling the fp32 sum that moves an output by at most one fp16 ulp, and not at
// all with a power-of-two scale outside fp16's subnormal range.
inline bool half_dropout_ok(const Dropout& d) {
  return !d.active || (d.threshold <= 0xFFFFu && __half2float(__float2half_rn(d.scale)) == d.scale);
}

// 0xFFFF in each 16-bit half of w whose value is >= threshold, else 0.
__device__ __forceinline__ uint32_t keep_mask2(uint32_t w, uint32_t threshold) {
#ifdef __CUDA_ARCH__
  return __vcmpgeu2(w, threshold * 0x10001u);
#else
  return ((w & 0xFFFFu) >= threshold ? 0xFFFFu : 0u) | ((w >> 16) >= threshold ? 0xFFFF0000u : 0u);
#endif
}

// fp16 pairs as their 32 bits (a union: defined under the host emulation too).
union Half2Bits {
  __half2 h;
  uint32_t u;
};

// The dropout's scale as an fp16 pair, made once per thread (outside the row loop: the conversion
// is inline assembly, which the compiler does not hoist).
__device__ __forceinline__ __half2 half_scale(const Dropout& d) { return __float2half2_rn(d.scale); }

__device__ __forceinline__ uint32_t relu_dropout8_half(uint4& raw, bool relu, const Dropout& d, __half2 scale, int64_t row,
                                                       int g) {
  const U32x4 blk = d.active ? dropout_block(d, uint64_t(row), uint32_t(g)) : U32x4{0, 0, 0, 0};
  Half2Bits zero;
  zero.u = 0u;
  Half8 p;
  p.raw = raw;
  uint32_t pos = 0;  // bit 2k: feature 2k > 0, bit 2k + 16: feature 2k + 1 > 0
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    // Features 2k (the low half: the lower address) and 2k + 1, from word k of the block as in
    // dropout_keep.
    if (relu) p.h2[k] = __hmax2(p.h2[k], zero.h);
    if (d.active) {
      Half2Bits v;
      v.h = p.h2[k];
      v.u &= keep_mask2(philox_word(blk, k), d.threshold);
      p.h2[k] = __hmul2(v.h, scale);
    }
    pos |= (__hgt2_mask(p.h2[k], zero.h) & 0x10001u) << (2 * k);
  }
  raw = p.raw;
  return (pos & 0x55u) | ((pos >> 15) & 0xAAu);
}

// gather_add_relu's step for 8 values (16-byte-aligned groups): out = dropout(relu(x + y)) for row
// `row`, features 8g..8g+7, in half2 arithmetic where x, y and out are fp16 and half_math (the sum
// rounded to fp16, as a separate add would), else from their fp32 sum rounded as O stores it.
// Returns the live-unit byte. out may be y (the loads come first).
template <typename T, typename O>
__device__ __forceinline__ uint32_t add_relu_dropout8(const T* x, const T* y, O* out, const Dropout& d, __half2 scale,
                                                      bool half_math, int64_t row, int g) {
  if constexpr (std::is_same<T, __half>::value && std::is_same<O, __half>::value) {
    if (half_math) {
      Half8 a, b;
      a.raw = *reinterpret_cast<const uint4*>(x);
      b.raw = *reinterpret_cast<const uint4*>(y);
#pragma unroll
      for (int k = 0; k < 4; ++k) a.h2[k] = __hadd2(a.h2[k], b.h2[k]);
      const uint32_t live = relu_dropout8_half(a.raw, true, d, scale, row, g);
      *reinterpret_cast<uint4*>(out) = a.raw;
      return live;
    }
  }
  float a[8], b[8];
  load8(x, a);
  load8(y, b);
#pragma unroll
  for (int k = 0; k < 8; ++k) a[k] += b[k];
  const uint32_t live = relu_dropout8<O>(a, 8, nullptr, true, d, row, g);
  store8(out, a);
  return live;
}

// Writes a row's live-unit byte for features [8g, 8g + 8) (UnitMask: ld % 128 == 0, so the group
// is byte g of the row's bits).
__device__ __forceinline__ void store_live(const UnitMask& mask, int64_t row, int g, uint32_t live) {
  if (mask.bits) mask.bits[row * (mask.ld / 8) + g] = uint8_t(live);
}

}  // namespace ncf::cuda
