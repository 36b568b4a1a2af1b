// The optimizer and loss-scaling ops on the CPU: Adam over the flat parameter buffer (the rule
// itself is core/adam_rule.h, shared with CUDA; gradients unscaled as they are read), the
// overflow check of scaled gradients, and the loss-scale update. The CPU trains in fp32, so the
// last two, Adam's unscaling and its fp16 mirror exist for the self-test's comparison with their
// CUDA twins.
#include <cmath>
#include <cstring>

#include "cpu_backend.h"

namespace ncf {

void CpuBackend::adam_step(float* params, const float* grads, float* m, float* v, size_t n, const AdamScalars& s,
                           const float* loss_scale, const int32_t* skip_if, const HalfMirror& mirror) {
  if (skip_if && *skip_if) return;
  const float inv = loss_scale ? 1.0f / *loss_scale : 1.0f;  // x * 1.0f is x: one loop for both
  pool_.parallel_for(
      int64_t(n),
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) adam_update(s, grads[i] * inv, &params[i], &m[i], &v[i]);
      },
      4096);
  if (mirror.dst) to_half(params + mirror.begin, mirror.dst, mirror.end - mirror.begin);
}

void CpuBackend::overflow_check(const float* grads, size_t n, const LossScaler& scaler) {
  const float inv = 1.0f / *scaler.scale;
  bool bad = false;
  for (size_t i = 0; i < n; ++i) bad |= !std::isfinite(grads[i] * inv);
  if (bad) *scaler.found_inf = 1;
}

void CpuBackend::update_loss_scale(const LossScaler& scaler) {
  if (*scaler.found_inf) {
    if (scaler.dynamic) *scaler.scale = std::fmax(*scaler.scale * 0.5f, 1.0f);
    *scaler.good_steps = 0;
  } else if (scaler.dynamic && ++*scaler.good_steps >= scaler.growth_interval) {
    *scaler.scale = std::fmin(*scaler.scale * 2.0f, 16777216.0f);
    *scaler.good_steps = 0;
  }
  *scaler.found_inf = 0;
}

void CpuBackend::to_half(const float* src, void* dst, size_t n) {
  // IEEE binary16 with round-to-nearest-even, as the device's __float2half_rn.
  uint16_t* out = static_cast<uint16_t*>(dst);
  for (size_t i = 0; i < n; ++i) {
    uint32_t x;
    std::memcpy(&x, &src[i], 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t absx = x & 0x7FFFFFFFu;
    uint16_t h;
    if (absx >= 0x7F800000u) {
      h = uint16_t(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0u));
    } else if (absx >= 0x477FF000u) {  // rounds to >= 65520: overflow to infinity
      h = uint16_t(sign | 0x7C00u);
    } else if (absx < 0x38800000u) {   // subnormal half (or zero)
      const float f = std::fabs(src[i]) * 16777216.0f;  // value / 2^-24, the subnormal step
      h = uint16_t(sign | uint32_t(std::nearbyint(f)));
    } else {
      const uint32_t mant = absx + 0xC8000FFFu + ((absx >> 13) & 1u);  // rebias exponent, round to even
      h = uint16_t(sign | (mant >> 13));
    }
    out[i] = h;
  }
}

}  // namespace ncf

namespace ncf {

void CpuBackend::from_half(const void* src, float* dst, size_t n) {
  const uint16_t* in = static_cast<const uint16_t*>(src);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t h = in[i], sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    float f;
    if (exp == 0) {
      f = std::ldexp(float(mant), -24);  // zero or subnormal
    } else if (exp == 31) {
      f = mant ? std::nanf("") : INFINITY;
    } else {
      const uint32_t bits = ((exp + 112u) << 23) | (mant << 13);
      std::memcpy(&f, &bits, 4);
    }
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b |= sign;
    std::memcpy(&dst[i], &b, 4);
  }
}

}  // namespace ncf
