// The embedding ops on the CPU.
// embed_forward: per sample, gather the two MLP table rows into the concatenated MLP input (rows
// in parallel).
// embed_backward: scatter-add of the MLP input's gradient into the dense table gradients, each
// row summing its samples in order (owned_scatter.h).
#include "../core/errors.h"
#include "cpu_backend.h"
#include "owned_scatter.h"

namespace ncf {

void CpuBackend::embed_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp_in) {
  require_f32(mlp_in, "mlp_in");
  const int h = t.half;
  if (mlp_in.cols != 2 * h) fail(ErrorCode::InvalidArgument, "embed_forward: mlp_in must have 2 x half columns");
  float* x = mlp_in.f32();
  pool_.parallel_for(
      mlp_in.rows,
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) {
          const float* pu = t.mlp_user + size_t(users[i]) * h;
          const float* pi = t.mlp_item + size_t(items[i]) * h;
          float* xi = x + size_t(i) * 2 * h;
          for (int j = 0; j < h; ++j) xi[j] = pu[j];
          for (int j = 0; j < h; ++j) xi[h + j] = pi[j];
        }
      },
      64);
}

void CpuBackend::embed_backward(const uint32_t* users, const uint32_t* items, Mat d_mlp_in, const EmbedGrads& g) {
  require_f32(d_mlp_in, "d_mlp_in");
  const int64_t h = d_mlp_in.cols / 2;
  const float* dx = d_mlp_in.f32();
  scatter_by_owner(
      pool_, users, items, d_mlp_in.rows,
      [&](int64_t i, uint32_t u) {
        const float* d = dx + i * 2 * h;
        float* gu = g.mlp_user + int64_t(u) * h;
        for (int64_t j = 0; j < h; ++j) gu[j] += d[j];
      },
      [&](int64_t i, uint32_t v) {
        const float* d = dx + i * 2 * h + h;
        float* gv = g.mlp_item + int64_t(v) * h;
        for (int64_t j = 0; j < h; ++j) gv[j] += d[j];
      });
}

}  // namespace ncf
