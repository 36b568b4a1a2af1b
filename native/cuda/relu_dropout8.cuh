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

// Writes a row's live-unit byte for features [8g, 8g + 8) (UnitMask: ld % 128 == 0, so the group
// is byte g of the row's bits).
__device__ __forceinline__ void store_live(const UnitMask& mask, int64_t row, int g, uint32_t live) {
  if (mask.bits) mask.bits[row * (mask.ld / 8) + g] = uint8_t(live);
}

}  // namespace ncf::cuda
