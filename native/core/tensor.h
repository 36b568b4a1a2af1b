// Views of backend memory passed to the ops. A Mat is a row-major matrix of `rows` x `cols`
// elements with leading dimension `cols`; its dtype says how to read `data`.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ncf {

enum class DType : int { F32 = 0, F16 = 1 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::F32 ? "fp32" : "fp16"; }

struct Mat {
  void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;

  float* f32() const { return static_cast<float*>(data); }
  size_t bytes() const { return size_t(rows) * size_t(cols) * dtype_size(dtype); }
  // The first n rows of this matrix.
  Mat head(int64_t n) const { return Mat{data, dtype, n, cols}; }
  // Rows [begin, begin + n) of this matrix.
  Mat rows_from(int64_t begin, int64_t n) const {
    return Mat{static_cast<char*>(data) + size_t(begin) * size_t(cols) * dtype_size(dtype), dtype, n, cols};
  }
  bool empty() const { return data == nullptr; }
};

}  // namespace ncf
