// The hidden layers on the CPU.
// linear_forward: y = x W^T by sgemm, then one pass per row (relu_dropout_rows, which
// gather_add_relu shares) adds the bias, applies ReLU and the dropout mask (8 features per Philox
// block, see core/dropout.h) and the 1/(1-p) scale, and writes the row's live-unit bits when asked.
// relu_dropout_backward: dz = dy * live * scale in place, live read as y > 0 (exactly where ReLU
// passed and dropout kept: the mask, when given, holds the same bits), and grad_b as per-thread
// column sums added in thread order.
// linear_backward: grad_w = dz^T x and dx = dz W by sgemm, then relu_dropout_backward of dx for the
// layer below.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/errors.h"
#include "cpu_backend.h"
#include "gemm.h"

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

}  // namespace

void relu_dropout_rows(ThreadPool& pool, float* yp, int64_t n, int out, const float* bias, const Dropout& d,
                       UnitMask mask) {
  const int groups = (out + 7) / 8;
  pool.parallel_for(
      n,
      [&](int64_t b, int64_t e, int) {
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
      },
      16);
}

void CpuBackend::linear_forward(Mat x, const LinearParams& p, const Dropout& d, Mat y, UnitMask mask) {
  require_f32(x, "x");
  require_f32(y, "y");
  const int n = int(x.rows), in = p.in, out = p.out;
  sgemm(pool_, false, true, n, out, in, 1.0f, x.f32(), in, p.w, in, 0.0f, y.f32(), out);
  relu_dropout_rows(pool_, y.f32(), n, out, p.b, d, mask);
}

void CpuBackend::relu_dropout_backward(Mat dy, Mat y, UnitMask, const Dropout& d, float* grad_b) {
  require_f32(dy, "dy");
  require_f32(y, "y");
  const int n = int(dy.rows), out = int(dy.cols);
  float* dz = dy.f32();
  const float* yp = y.f32();
  const float scale = d.active ? d.scale : 1.0f;
  std::vector<std::vector<float>> partial(size_t(pool_.size()), std::vector<float>(size_t(out), 0.0f));
  pool_.parallel_for(
      n,
      [&](int64_t b, int64_t e, int t) {
        float* __restrict acc = partial[size_t(t)].data();
        const float sc = scale;  // a local copy, so the compiler keeps it in a register and vectorises
        for (int64_t i = b; i < e; ++i) {
          float* __restrict row = dz + size_t(i) * out;
          const float* __restrict yr = yp + size_t(i) * out;
          for (int j = 0; j < out; ++j) {
            const float v = row[j] * sc;  // both loads unconditional, so the select vectorises
            const float g = yr[j] > 0.0f ? v : 0.0f;
            row[j] = g;
            acc[j] += g;
          }
        }
      },
      16);
  for (int j = 0; j < out; ++j) {
    float s = 0.0f;
    for (auto& part : partial) s += part[size_t(j)];
    grad_b[j] = s;
  }
}

void CpuBackend::linear_backward(Mat dz, Mat x, const LinearParams& p, Mat dx, float* grad_w, const LayerBelow* below) {
  require_f32(dz, "dz");
  require_f32(x, "x");
  linear_weight_grad(dz, x, grad_w, int(x.cols));
  if (dx.empty()) return;
  require_f32(dx, "dx");
  const int n = int(dz.rows);
  sgemm(pool_, false, false, n, p.in, p.out, 1.0f, dz.f32(), p.out, p.w, p.in, 0.0f, dx.f32(), p.in);
  if (below) relu_dropout_backward(dx, below->y, below->mask, below->dropout, below->grad_b);
}

void CpuBackend::linear_weight_grad(Mat dz, Mat x, float* grad_w, int ld_grad) {
  require_f32(dz, "dz");
  require_f32(x, "x");
  const int n = int(dz.rows), out = int(dz.cols), in = int(x.cols);
  if (ld_grad < in) fail(ErrorCode::InvalidArgument, "linear_weight_grad: ld_grad below x's columns");
  sgemm(pool_, true, false, out, in, n, 1.0f, dz.f32(), out, x.f32(), in, 0.0f, grad_w, ld_grad);
}

}  // namespace ncf
