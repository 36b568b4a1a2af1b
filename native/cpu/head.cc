// The output unit on the CPU. head_forward: logit = w . [mf_user[u] * mf_item[v] ; mlp] + b per
// row, the GMF product formed in the dot product.
// head_forward_backward: the same logit, the numerically stable sigmoid-BCE
//   loss = max(z, 0) - z y + log(1 + exp(-|z|)),  dloss/dz = sigmoid(z) - y,
// the MLP input gradient g w_mlp, the weight gradients as per-thread partial sums added in thread
// order, the GMF tables' gradients scattered by row owner (owned_scatter.h); with the last hidden
// layer, its dropout first, applied to mlp in place (linear_forward's pass), and its
// relu_dropout_backward last.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/errors.h"
#include "cpu_backend.h"
#include "owned_scatter.h"
#include "row_pass.h"

namespace ncf {

namespace {
// Written over local pointers, with OpenMP simd reductions (no OpenMP runtime: -fopenmp-simd),
// so the compiler vectorises the dot products.
// The logit from the GMF factors mu and mi (their product formed here) and the MLP output.
inline float head_logit(const float* __restrict mu, const float* __restrict mi, const float* __restrict mlp,
                        const HeadParams& p) {
  const float* __restrict w = p.w;
  const int f = p.factors, m = p.mlp_width;
  float zg = 0.0f, zm = 0.0f;
#pragma omp simd reduction(+ : zg)
  for (int j = 0; j < f; ++j) zg += w[j] * (mu[j] * mi[j]);
#pragma omp simd reduction(+ : zm)
  for (int j = 0; j < m; ++j) zm += w[f + j] * mlp[j];
  return zg + (p.b[0] + zm);
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

void CpuBackend::head_forward_backward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp,
                                       const float* labels, const HeadParams& p, float grad_scale,
                                       const LossScaler* scaler, Mat d_mlp, const LayerBelow* below,
                                       const EmbedGrads& g_tables, float* grad_w, float* grad_b, double* loss_sum) {
  require_f32(mlp, "mlp");
  require_f32(d_mlp, "d_mlp");
  if (below && below->y.data != mlp.data)
    fail(ErrorCode::InvalidArgument, "head_forward_backward: the layer below's output must be the MLP input");
  // The last layer's dropout, in place (the contract allows it): then this is the unit on that
  // layer's output after dropout, and its gradient goes back through both as for any layer.
  if (below && below->dropout.active)
    pool_.parallel_for(
        mlp.rows, [&](int64_t b, int64_t e, int) { relu_dropout_range(mlp.f32(), b, e, p.mlp_width, nullptr, below->dropout, UnitMask{}); },
        16);
  const float scale = grad_scale * (scaler ? *scaler->scale : 1.0f);
  const int f = p.factors, w = p.mlp_width, width = f + w;
  const int64_t n = mlp.rows;
  const float* x = mlp.f32();
  float* dx = d_mlp.f32();
  // Pass 1, rows in parallel: logit, loss, the logit gradient (kept for pass 2), d_mlp and
  // per-thread partial sums of the weight gradients, added in thread order.
  std::vector<float> dlogit(static_cast<size_t>(n));
  ColumnSums partial(pool_.size(), width + 1);
  std::vector<double> loss(size_t(pool_.size()), 0.0);
  pool_.parallel_for(
      n,
      [&](int64_t b, int64_t e, int tid) {
        float* acc = partial.of(tid);
        double l = 0.0;
        for (int64_t i = b; i < e; ++i) {
          const float* mu = t.mf_user + size_t(users[i]) * f;
          const float* mi = t.mf_item + size_t(items[i]) * f;
          const float* xi = x + size_t(i) * w;
          const float z = head_logit(mu, mi, xi, p);
          const float y = labels[i];
          l += double(std::fmax(z, 0.0f) - z * y + std::log1p(std::exp(-std::fabs(z))));
          const float dz = (1.0f / (1.0f + std::exp(-z)) - y) * scale;
          dlogit[size_t(i)] = dz;
          float* dxi = dx + size_t(i) * w;
          for (int j = 0; j < f; ++j) acc[j] += dz * (mu[j] * mi[j]);
          for (int j = 0; j < w; ++j) {
            dxi[j] = dz * p.w[f + j];
            acc[f + j] += dz * xi[j];
          }
          acc[width] += dz;
        }
        loss[size_t(tid)] = l;
      },
      64);
  std::vector<float> sums(size_t(width) + 1);
  partial.total(sums.data());
  std::copy(sums.begin(), sums.end() - 1, grad_w);
  grad_b[0] = sums.back();
  for (double l : loss) *loss_sum += l;
  // Pass 2: the GMF product's gradient (g w_gmf) times the other table's row, into each table row.
  scatter_by_owner(
      pool_, users, items, n,
      [&](int64_t i, uint32_t u) {
        const float dz = dlogit[size_t(i)];
        const float* mi = t.mf_item + size_t(items[i]) * f;
        float* gu = g_tables.mf_user + size_t(u) * f;
        for (int j = 0; j < f; ++j) gu[j] += (dz * p.w[j]) * mi[j];
      },
      [&](int64_t i, uint32_t v) {
        const float dz = dlogit[size_t(i)];
        const float* mu = t.mf_user + size_t(users[i]) * f;
        float* gv = g_tables.mf_item + size_t(v) * f;
        for (int j = 0; j < f; ++j) gv[j] += (dz * p.w[j]) * mu[j];
      });
  if (below) relu_dropout_backward(d_mlp, below->y, below->mask, below->dropout, below->grad_b);
}

}  // namespace ncf
