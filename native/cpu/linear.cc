// The hidden layers on the CPU.
// linear_forward: y = x W^T by sgemm, then one pass per row adds the bias, applies ReLU and the
// dropout mask (8 features per Philox block, see core/dropout.h) and the 1/(1-p) scale.
// linear_backward: dz = dy * (y > 0) * scale in place (y > 0 exactly where ReLU passed and
// dropout kept, so no mask is stored), then grad_w = dz^T x and dx = dz W by sgemm, and grad_b as
// per-thread column sums added in thread order.
#include <algorithm>
#include <vector>

#include "cpu_backend.h"
#include "gemm.h"

namespace ncf {

void CpuBackend::linear_forward(Mat x, const LinearParams& p, const Dropout& d, Mat y) {
  require_f32(x, "x");
  require_f32(y, "y");
  const int n = int(x.rows), in = p.in, out = p.out;
  float* yp = y.f32();
  sgemm(pool_, false, true, n, out, in, 1.0f, x.f32(), in, p.w, in, 0.0f, yp, out);
  pool_.parallel_for(
      n,
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) {
          float* row = yp + size_t(i) * out;
          for (int j = 0; j < out; ++j) row[j] = std::max(row[j] + p.b[j], 0.0f);
          if (!d.active) continue;
          for (int g = 0; g * 8 < out; ++g) {
            const U32x4 blk = dropout_block(d, uint64_t(i), uint32_t(g));
            const int lanes = std::min(8, out - g * 8);
            for (int l = 0; l < lanes; ++l) {
              float& v = row[g * 8 + l];
              v = dropout_keep(d, blk, l) ? v * d.scale : 0.0f;
            }
          }
        }
      },
      16);
}

void CpuBackend::linear_backward(Mat dy, Mat y, Mat x, const LinearParams& p, const Dropout& d, Mat dx,
                                 float* grad_w, float* grad_b) {
  require_f32(dy, "dy");
  require_f32(y, "y");
  require_f32(x, "x");
  require_f32(dx, "dx");
  const int n = int(dy.rows), in = p.in, out = p.out;
  float* dz = dy.f32();
  const float* yp = y.f32();
  const float scale = d.active ? d.scale : 1.0f;
  std::vector<std::vector<float>> partial(size_t(pool_.size()), std::vector<float>(size_t(out), 0.0f));
  pool_.parallel_for(
      n,
      [&](int64_t b, int64_t e, int t) {
        float* acc = partial[size_t(t)].data();
        for (int64_t i = b; i < e; ++i) {
          float* row = dz + size_t(i) * out;
          const float* yr = yp + size_t(i) * out;
          for (int j = 0; j < out; ++j) {
            row[j] = yr[j] > 0.0f ? row[j] * scale : 0.0f;
            acc[j] += row[j];
          }
        }
      },
      16);
  for (int j = 0; j < out; ++j) {
    float s = 0.0f;
    for (auto& part : partial) s += part[size_t(j)];
    grad_b[j] = s;
  }
  sgemm(pool_, true, false, out, in, n, 1.0f, dz, out, x.f32(), in, 0.0f, grad_w, in);
  if (!dx.empty()) sgemm(pool_, false, false, n, in, out, 1.0f, dz, out, p.w, in, 0.0f, dx.f32(), in);
}

}  // namespace ncf
