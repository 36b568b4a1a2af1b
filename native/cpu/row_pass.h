// The CPU ops' elementwise passes over rows, shared between their files (linear.cc, parts.cc,
// head.cc): ReLU and dropout forward and backward, and per-thread column sums.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/backend.h"

namespace ncf {

// y[r] = dropout(relu(y[r] + bias)) for rows [r0, r1) of y (bias may be null: none), and their live
// units into mask when it is not empty, on the calling thread: linear_forward's and
// gather_add_relu's last pass.
void relu_dropout_range(float* y, int64_t r0, int64_t r1, int cols, const float* bias, const Dropout& d, UnitMask mask);

// Rows of a matrix of `cols` floats per block when a pass follows its computation in cache
// (about 256 KB).
int64_t rows_in_cache(int cols);

// One row of relu_dropout_backward: out[j] = dy[j] * scale where the unit is live (y[j] > 0), else
// 0, each also added to acc[j]. out may be dy (in place).
inline void relu_dropout_backward_row(const float* dy, const float* __restrict y, int64_t cols, float scale, float* out,
                                      float* __restrict acc) {
  for (int64_t j = 0; j < cols; ++j) {
    const float v = dy[j] * scale;  // both loads unconditional, so the select vectorises
    const float g = y[j] > 0.0f ? v : 0.0f;
    out[j] = g;
    acc[j] += g;
  }
}

// Column sums taken per thread (thread t's: of(t)) and added in thread order at the end, so that
// they are the same for the same rows and thread count.
class ColumnSums {
 public:
  ColumnSums(int threads, int cols) : cols_(cols), part_(size_t(threads) * size_t(cols), 0.0f) {}
  float* of(int t) { return part_.data() + size_t(t) * size_t(cols_); }
  void total(float* out) const {
    for (int j = 0; j < cols_; ++j) {
      float s = 0.0f;
      for (size_t q = size_t(j); q < part_.size(); q += size_t(cols_)) s += part_[q];
      out[j] = s;
    }
  }

 private:
  int cols_;
  std::vector<float> part_;
};

}  // namespace ncf
