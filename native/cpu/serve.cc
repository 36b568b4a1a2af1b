// The serving ops on the CPU, used by full-catalog scoring: matmul_nt multiplies by a column
// block of a weight (the first layer split into its user and item parts), add_row adds one row to
// every row of a matrix, with an optional ReLU.
#include <algorithm>

#include "cpu_backend.h"
#include "gemm.h"

namespace ncf {

void CpuBackend::matmul_nt(Mat a, const float* w, int ldw, Mat out) {
  require_f32(a, "a");
  require_f32(out, "out");
  sgemm(pool_, false, true, int(a.rows), int(out.cols), int(a.cols), 1.0f, a.f32(), int(a.cols), w, ldw, 0.0f,
        out.f32(), int(out.cols));
}

void CpuBackend::add_row(Mat x, const float* row, Mat y, bool relu) {
  require_f32(x, "x");
  require_f32(y, "y");
  const int64_t c = x.cols;
  const float* xp = x.f32();
  float* yp = y.f32();
  pool_.parallel_for(
      x.rows,
      [&](int64_t b, int64_t e, int) {
        const float* __restrict r = row;  // locals: lets the compiler vectorise the row loop
        const bool rl = relu;
        for (int64_t i = b; i < e; ++i) {
          const float* __restrict xi = xp + i * c;
          float* __restrict yi = yp + i * c;
          if (rl)
            for (int64_t j = 0; j < c; ++j) yi[j] = std::max(xi[j] + r[j], 0.0f);
          else
            for (int64_t j = 0; j < c; ++j) yi[j] = xi[j] + r[j];
        }
      },
      64);
}

}  // namespace ncf
