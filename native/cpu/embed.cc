// The embedding ops on the CPU.
// embed_forward: per sample, gather the table rows, write the GMF product (unless gmf is empty)
// and the concatenated MLP input (rows in parallel).
// embed_backward: scatter-add into the dense table gradients. To avoid write races without
// atomics, thread t applies only the rows r with r % threads == t, scanning all samples in order;
// each gradient row thus sums its samples in sample order.
#include "cpu_backend.h"

namespace ncf {

void CpuBackend::embed_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, int n, Mat gmf,
                               Mat mlp_in) {
  require_f32(gmf, "gmf");
  require_f32(mlp_in, "mlp_in");
  const int f = t.factors, h = t.half;
  float* g = gmf.empty() ? nullptr : gmf.f32();
  float* x = mlp_in.f32();
  pool_.parallel_for(
      n,
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) {
          if (g) {
            const float* mu = t.mf_user + size_t(users[i]) * f;
            const float* mi = t.mf_item + size_t(items[i]) * f;
            float* gi = g + size_t(i) * f;
            for (int j = 0; j < f; ++j) gi[j] = mu[j] * mi[j];
          }
          const float* pu = t.mlp_user + size_t(users[i]) * h;
          const float* pi = t.mlp_item + size_t(items[i]) * h;
          float* xi = x + size_t(i) * 2 * h;
          for (int j = 0; j < h; ++j) xi[j] = pu[j];
          for (int j = 0; j < h; ++j) xi[h + j] = pi[j];
        }
      },
      64);
}

void CpuBackend::embed_backward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, int n,
                                Mat d_gmf, Mat d_mlp_in, const EmbedGrads& g) {
  require_f32(d_gmf, "d_gmf");
  require_f32(d_mlp_in, "d_mlp_in");
  const int f = t.factors, h = t.half;
  const float* dg = d_gmf.f32();
  const float* dx = d_mlp_in.f32();
  const uint32_t T = uint32_t(pool_.size());
  pool_.run_on_all([&](int tid) {
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = users[i], v = items[i];
      const float* dgi = dg + size_t(i) * f;
      if (u % T == uint32_t(tid)) {
        const float* mi = t.mf_item + size_t(v) * f;
        float* gu = g.mf_user + size_t(u) * f;
        for (int j = 0; j < f; ++j) gu[j] += dgi[j] * mi[j];
        const float* dxi = dx + size_t(i) * 2 * h;
        float* pu = g.mlp_user + size_t(u) * h;
        for (int j = 0; j < h; ++j) pu[j] += dxi[j];
      }
      if (v % T == uint32_t(tid)) {
        const float* mu = t.mf_user + size_t(u) * f;
        float* gv = g.mf_item + size_t(v) * f;
        for (int j = 0; j < f; ++j) gv[j] += dgi[j] * mu[j];
        const float* dxi = dx + size_t(i) * 2 * h + h;
        float* pv = g.mlp_item + size_t(v) * h;
        for (int j = 0; j < h; ++j) pv[j] += dxi[j];
      }
    }
  });
}

}  // namespace ncf
