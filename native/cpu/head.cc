// The output unit on the CPU. head_forward: logit = w . [mf_user[u] * mf_item[v] ; mlp] + b per
// row, the GMF product formed in the dot product.
// head_forward_backward: the same logit, the numerically stable sigmoid-BCE
//   loss = max(z, 0) - z y + log(1 + exp(-|z|)),  dloss/dz = sigmoid(z) - y,
// the input gradients g w, and the weight gradients as per-thread partial sums added in thread
// order.
#include <cmath>
#include <vector>

#include "cpu_backend.h"

namespace ncf {

namespace {
// Written over local pointers, with OpenMP simd reductions (no OpenMP runtime: -fopenmp-simd),
// so the compiler vectorises the dot products.
// b + w_mlp . mlp
inline float mlp_term(const float* __restrict mlp, const HeadParams& p) {
  const float* __restrict w = p.w + p.factors;
  const int m = p.mlp_width;
  float zm = 0.0f;
#pragma omp simd reduction(+ : zm)
  for (int j = 0; j < m; ++j) zm += w[j] * mlp[j];
  return p.b[0] + zm;
}
// The logit from the GMF values gmf.
inline float head_logit(const float* __restrict gmf, const float* __restrict mlp, const HeadParams& p) {
  const float* __restrict w = p.w;
  float zg = 0.0f;
#pragma omp simd reduction(+ : zg)
  for (int j = 0; j < p.factors; ++j) zg += w[j] * gmf[j];
  return zg + mlp_term(mlp, p);
}
// The logit from the GMF factors mu and mi, their product formed here.
inline float head_logit(const float* __restrict mu, const float* __restrict mi, const float* __restrict mlp,
                        const HeadParams& p) {
  const float* __restrict w = p.w;
  float zg = 0.0f;
#pragma omp simd reduction(+ : zg)
  for (int j = 0; j < p.factors; ++j) zg += w[j] * (mu[j] * mi[j]);
  return zg + mlp_term(mlp, p);
}
}  // namespace

void CpuBackend::head_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp,
                              const HeadParams& p, float* logits) {
  require_f32(mlp, "mlp");
  const float* x = mlp.f32();
  const size_t f = size_t(p.factors);
  pool_.parallel_for(
      mlp.rows,
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i)
          logits[i] = head_logit(t.mf_user + users[i] * f, t.mf_item + items[i] * f, x + size_t(i) * p.mlp_width, p);
      },
      256);
}

void CpuBackend::head_forward_backward(Mat gmf, Mat mlp, const float* labels, const HeadParams& p, float grad_scale,
                                       const LossScaler* scaler, Mat d_gmf, Mat d_mlp, float* grad_w, float* grad_b,
                                       double* loss_sum) {
  require_f32(gmf, "gmf");
  require_f32(mlp, "mlp");
  require_f32(d_gmf, "d_gmf");
  require_f32(d_mlp, "d_mlp");
  const float scale = grad_scale * (scaler ? *scaler->scale : 1.0f);
  const int f = p.factors, w = p.mlp_width, width = f + w;
  const float* g = gmf.f32();
  const float* x = mlp.f32();
  float* dg = d_gmf.f32();
  float* dx = d_mlp.f32();
  const int T = pool_.size();
  std::vector<std::vector<float>> partial(size_t(T), std::vector<float>(size_t(width + 1), 0.0f));
  std::vector<double> loss(size_t(T), 0.0);
  pool_.parallel_for(
      gmf.rows,
      [&](int64_t b, int64_t e, int t) {
        float* acc = partial[size_t(t)].data();
        double l = 0.0;
        for (int64_t i = b; i < e; ++i) {
          const float* gi = g + size_t(i) * f;
          const float* xi = x + size_t(i) * w;
          const float z = head_logit(gi, xi, p);
          const float y = labels[i];
          l += double(std::fmax(z, 0.0f) - z * y + std::log1p(std::exp(-std::fabs(z))));
          const float dz = (1.0f / (1.0f + std::exp(-z)) - y) * scale;
          float* dgi = dg + size_t(i) * f;
          float* dxi = dx + size_t(i) * w;
          for (int j = 0; j < f; ++j) {
            dgi[j] = dz * p.w[j];
            acc[j] += dz * gi[j];
          }
          for (int j = 0; j < w; ++j) {
            dxi[j] = dz * p.w[f + j];
            acc[f + j] += dz * xi[j];
          }
          acc[width] += dz;
        }
        loss[size_t(t)] = l;
      },
      64);
  for (int j = 0; j <= width; ++j) {
    float s = 0.0f;
    for (int t = 0; t < T; ++t) s += partial[size_t(t)][size_t(j)];
    if (j < width) grad_w[j] = s; else grad_b[0] = s;
  }
  for (double l : loss) *loss_sum += l;
}

}  // namespace ncf
