// The Adam update (Kingma & Ba), in the form PyTorch's torch.optim.Adam uses:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Written with explicit fmaf so that the compiler cannot fuse differently on the host and the
// device: the CPU and CUDA backends produce bit-identical updates from identical gradients.
#pragma once
#include <cmath>
#include <cstdint>

#include "hd.h"

namespace ncf {

struct AdamScalars {
  float beta1 = 0.25f, beta2 = 0.5f;
  float one_minus_beta1 = 0.75f, one_minus_beta2 = 0.5f;
  float step_size = 0.0f;         // lr / (1 - b1^t)
  float inv_sqrt_bias2 = 1.0f;    // 1 / sqrt(1 - b2^t)
  float eps = 1e-8f;
};

inline AdamScalars make_adam_scalars(double lr, double beta1, double beta2, double eps, uint64_t step) {
  AdamScalars s;
  s.beta1 = float(beta1);
  s.beta2 = float(beta2);
  s.one_minus_beta1 = float(1.0 - beta1);
  s.one_minus_beta2 = float(1.0 - beta2);
  s.step_size = float(lr / (1.0 - std::pow(beta1, double(step))));
  s.inv_sqrt_bias2 = float(1.0 / std::sqrt(1.0 - std::pow(beta2, double(step))));
  s.eps = float(eps);
  return s;
}

NCF_HD void adam_update(const AdamScalars& s, float g, float* p, float* m, float* v) {
  const float m1 = fmaf(s.beta1, *m, s.one_minus_beta1 * g);
  const float v1 = fmaf(s.beta2, *v, (s.one_minus_beta2 * g) * g);
  const float denom = fmaf(sqrtf(v1), s.inv_sqrt_bias2, s.eps);
  *p = fmaf(-s.step_size, m1 / denom, *p);
  *m = m1;
  *v = v1;
}

}  // namespace ncf
