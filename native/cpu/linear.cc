// The hidden layers on the CPU.
// linear_forward: y = x W^T by sgemm, then one pass per row (relu_dropout_range, which
// gather_add_relu shares) adds the bias, applies ReLU and the dropout mask (8 features per Philox
// block, see core/dropout.h) and the 1/(1-p) scale, and writes the row's live-unit bits when asked;
// the pass follows each block of rows' product while it is in cache (sgemm_rows_then).
// relu_dropout_backward: dz = dy * live * scale in place, live read as y > 0 (exactly where ReLU
// passed and dropout kept: the mask, when given, holds the same bits), and grad_b as per-thread
// column sums added in thread order.
// linear_backward: grad_w = dz^T x and dx = dz W by sgemm, with relu_dropout_backward of dx for the
// layer below following each block of dx in cache.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/errors.h"
#include "cpu_backend.h"
#include "gemm.h"
#include "row_pass.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the dropout fast path reads Philox words as uint16 pairs");

namespace ncf {

namespace {

constexpr int64_t kRowBlock = 32;  // rows whose dropout draws are generated together

// The Philox blocks of `rows` consecutive rows from `row0`, `groups` per row. A plain loop over
// inlined philox4x32_10 calls, which the compiler vectorises (about 8x faster than drawing each
// block beside its use).
void dropout_blocks(const Dropout& d, int64_t row0, int64_t rows, int groups, U32x4* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t pos = dropout_position(d, uint64_t(row0 + r));
    for (int g = 0; g < groups; ++g) out[r * groups + g] = dropout_block_at(d, pos, uint32_t(g));
  }
}

// dz = dy * live * scale in place on rows [b, e) (live: y > 0), adding each column's values to acc.
void relu_dropout_backward_range(float* dz, const float* yp, int64_t b, int64_t e, int out, const Dropout& d, float* acc) {
  const float sc = d.active ? d.scale : 1.0f;
  for (int64_t i = b; i < e; ++i) {
    float* row = dz + size_t(i) * out;
    relu_dropout_backward_row(row, yp + size_t(i) * out, out, sc, row, acc);
  }
}

}  // namespace

// Rows of a GEMM's output per block when a pass follows it in cache (sgemm_rows_then): about 256 KB.
int64_t rows_in_cache(int cols) { return std::max<int64_t>(16, (int64_t(64) << 10) / std::max(cols, 1)); }

void relu_dropout_range(float* yp, int64_t b, int64_t e, int out, const float* bias, const Dropout& d, UnitMask mask) {
  const int groups = (out + 7) / 8;
  std::vector<U32x4> blocks(d.active ? size_t(kRowBlock * groups) : 0);
  std::vector<uint16_t> draws(size_t(groups) * 8);
  const float* __restrict bs = bias;  // locals, so the compiler can vectorise the row loops
  const float sc = d.scale;
  const uint32_t thr = d.threshold;
  for (int64_t r0 = b; r0 < e; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, e - r0);
    if (d.active) dropout_blocks(d, r0, rows, groups, blocks.data());
    for (int64_t r = 0; r < rows; ++r) {
      float* __restrict row = yp + size_t(r0 + r) * out;
      if (bs)
        for (int j = 0; j < out; ++j) row[j] = std::max(row[j] + bs[j], 0.0f);
      else
        for (int j = 0; j < out; ++j) row[j] = std::max(row[j], 0.0f);
      if (d.active) {
        // On a little-endian host the 16-bit draw of feature j (dropout_keep: word j/2 of its
        // block, low half for even j) is simply the j-th uint16 of the row's blocks.
        std::memcpy(draws.data(), &blocks[size_t(r * groups)], draws.size() * sizeof(uint16_t));
        const uint16_t* __restrict u = draws.data();
        for (int j = 0; j < out; ++j) row[j] = uint32_t(u[j]) >= thr ? row[j] * sc : 0.0f;
      }
      if (!mask.empty()) {
        uint8_t* bits = mask.bits + (r0 + r) * mask.ld / 8;
        std::memset(bits, 0, size_t(mask.ld / 8));
        for (int j = 0; j < out; ++j) bits[j >> 3] |= uint8_t((row[j] > 0.0f) << (j & 7));
      }
    }
  }
}

void CpuBackend::linear_forward(Mat x, const LinearParams& p, const Dropout& d, Mat y, UnitMask mask) {
  require_f32(x, "x");
  require_f32(y, "y");
  const int n = int(x.rows), in = p.in, out = p.out;
  float* yp = y.f32();
  sgemm_rows_then(pool_, false, true, n, out, in, 1.0f, x.f32(), in, p.w, in, 0.0f, yp, out, rows_in_cache(out),
                  [&](int64_t r0, int64_t r1, int) { relu_dropout_range(yp, r0, r1, out, p.b, d, mask); });
}

void CpuBackend::relu_dropout_backward(Mat dy, Mat y, UnitMask, const Dropout& d, float* grad_b) {
  require_f32(dy, "dy");
  require_f32(y, "y");
  ColumnSums sums(pool_.size(), int(dy.cols));
  pool_.parallel_for(
      dy.rows, [&](int64_t b, int64_t e, int t) { relu_dropout_backward_range(dy.f32(), y.f32(), b, e, int(dy.cols), d, sums.of(t)); },
      16);
  sums.total(grad_b);
}

void CpuBackend::linear_backward(Mat dz, Mat x, const LinearParams& p, Mat dx, float* grad_w, const LayerBelow* below) {
  require_f32(dz, "dz");
  require_f32(x, "x");
  linear_weight_grad(dz, x, grad_w, int(x.cols));
  if (dx.empty()) return;
  require_f32(dx, "dx");
  const int n = int(dz.rows);
  if (!below) return sgemm(pool_, false, false, n, p.in, p.out, 1.0f, dz.f32(), p.out, p.w, p.in, 0.0f, dx.f32(), p.in);
  // dx, then taken through the layer below's ReLU and dropout block by block while in cache.
  require_f32(below->y, "y");
  float* dxp = dx.f32();
  const float* yp = below->y.f32();
  ColumnSums sums(pool_.size(), p.in);
  sgemm_rows_then(pool_, false, false, n, p.in, p.out, 1.0f, dz.f32(), p.out, p.w, p.in, 0.0f, dxp, p.in, rows_in_cache(p.in),
                  [&](int64_t r0, int64_t r1, int t) { relu_dropout_backward_range(dxp, yp, r0, r1, p.in, below->dropout, sums.of(t)); });
  sums.total(below->grad_b);
}

void CpuBackend::linear_weight_grad(Mat dz, Mat x, float* grad_w, int ld_grad) {
  require_f32(dz, "dz");
  require_f32(x, "x");
  const int n = int(dz.rows), out = int(dz.cols), in = int(x.cols);
  if (ld_grad < in) fail(ErrorCode::InvalidArgument, "linear_weight_grad: ld_grad below x's columns");
  sgemm(pool_, true, false, out, in, n, 1.0f, dz.f32(), out, x.f32(), in, 0.0f, grad_w, ld_grad);
}

}  // namespace ncf
