// The ops of the first layer by parts on the CPU (training with large batches, evaluation and
// full-catalog scoring; Network::first_layer_parts): matmul_nt multiplies by a column block of a
// weight (the layer's user or item part) and matmul_nn by a column block untransposed (the
// tables' gradients from the summed output gradients), add_row adds one row to every row of a
// matrix, gather_add_relu adds a row of each of two tables per output row then applies ReLU and
// dropout as linear_forward does (relu_dropout_range, on each block of rows while in cache),
// pair_row_sums sums gradient rows per user and per item (taken through the first layer's ReLU
// and dropout as it reads them, when asked): each thread owns a block of columns and adds the
// rows in order, so the sums are the same whatever the thread count.
#include <algorithm>
#include <vector>

#include "../core/errors.h"
#include "cpu_backend.h"
#include "gemm.h"
#include "row_pass.h"

namespace ncf {

void CpuBackend::matmul_nt(Mat a, const void* w, int ldw, Mat out) {
  require_f32(a, "a");
  require_f32(out, "out");
  sgemm(pool_, false, true, int(a.rows), int(out.cols), int(a.cols), 1.0f, a.f32(), int(a.cols),
        static_cast<const float*>(w), ldw, 0.0f, out.f32(), int(out.cols));
}

void CpuBackend::matmul_nn(Mat a, const void* w, int ldw, Mat out) {
  require_f32(a, "a");
  require_f32(out, "out");
  if (a.rows != out.rows) fail(ErrorCode::InvalidArgument, "matmul_nn: a and out differ in rows");
  sgemm(pool_, false, false, int(a.rows), int(out.cols), int(a.cols), 1.0f, a.f32(), int(a.cols),
        static_cast<const float*>(w), ldw, 0.0f, out.f32(), int(out.cols));
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

void CpuBackend::gather_add_relu(Mat at, const uint32_t* ia, Mat bt, const uint32_t* ib, const Dropout& d, Mat out,
                                 UnitMask mask) {
  require_f32(at, "a");
  require_f32(bt, "b");
  require_f32(out, "out");
  if (at.cols != out.cols || bt.cols != out.cols) fail(ErrorCode::InvalidArgument, "gather_add_relu: tables of the output's width");
  const int64_t c = out.cols;
  const float* a = at.f32();
  const float* b = bt.f32();
  float* op = out.f32();
  // Each block of rows gathered, then passed through ReLU and dropout while in cache.
  const int64_t block = rows_in_cache(int(c));
  pool_.parallel_for(
      out.rows,
      [&](int64_t begin, int64_t end, int) {
        for (int64_t r0 = begin; r0 < end; r0 += block) {
          const int64_t r1 = std::min(end, r0 + block);
          for (int64_t r = r0; r < r1; ++r) {
            const float* __restrict x = a + int64_t(ia[r]) * c;
            const float* __restrict y = b + int64_t(ib[r]) * c;
            float* __restrict o = op + r * c;
            for (int64_t j = 0; j < c; ++j) o[j] = x[j] + y[j];
          }
          relu_dropout_range(op, r0, r1, int(c), nullptr, d, mask);
        }
      },
      16);
}

void CpuBackend::pair_row_sums(Mat dz, const LayerBelow* layer, const uint32_t* users, bool, const uint32_t* items,
                               Mat user_sums, Mat item_sums) {
  require_f32(dz, "dz");
  if (layer) require_f32(layer->y, "layer y");
  const bool user_side = user_sums.data != nullptr;  // empty: taken already (hidden_backward)
  if (user_side) require_f32(user_sums, "user_sums");
  require_f32(item_sums, "item_sums");
  if ((user_side && user_sums.cols != dz.cols) || item_sums.cols != dz.cols)
    fail(ErrorCode::InvalidArgument, "pair_row_sums: sums of dz's width");
  const int64_t n = dz.rows, c = dz.cols;
  const float* g = dz.f32();
  const float* y = layer ? layer->y.f32() : nullptr;
  const float sc = layer && layer->dropout.active ? layer->dropout.scale : 1.0f;
  float* su = user_side ? user_sums.f32() : nullptr;
  float* si = item_sums.f32();
  if (user_side) std::fill(su, su + user_sums.rows * c, 0.0f);
  std::fill(si, si + item_sums.rows * c, 0.0f);
  // Each thread owns columns [c0, c1) and adds the rows in order. With the layer, a row is taken
  // through its ReLU and dropout as it is read (relu_dropout_backward's dy * live * scale, live as
  // y > 0), and b's gradient is the column sums of those rows: dz is left as it was.
  pool_.parallel_for(
      c,
      [&](int64_t c0, int64_t c1, int) {
        const int64_t w = c1 - c0;
        std::vector<float> masked(static_cast<size_t>(y ? w : 0)), bias_sums(static_cast<size_t>(y ? w : 0), 0.0f);
        for (int64_t r = 0; r < n; ++r) {
          const float* src = g + r * c + c0;  // the row's columns as summed: masked first with the layer
          if (y) {
            relu_dropout_backward_row(src, y + r * c + c0, w, sc, masked.data(), bias_sums.data());
            src = masked.data();
          }
          float* __restrict di = si + int64_t(items[r]) * c + c0;
          for (int64_t j = 0; j < w; ++j) di[j] += src[j];
          if (!su) continue;
          float* __restrict du = su + int64_t(users[r]) * c + c0;
          for (int64_t j = 0; j < w; ++j) du[j] += src[j];
        }
        if (y) std::copy(bias_sums.begin(), bias_sums.end(), layer->grad_b + c0);
      },
      16);
}

}  // namespace ncf
