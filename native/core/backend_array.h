// An owning handle to an array in backend memory (host or device), released on destruction.
#pragma once
#include <cstddef>
#include <utility>

#include "backend.h"
#include "errors.h"

namespace ncf {

template <typename T>
class BackendArray {
 public:
  BackendArray() = default;
  BackendArray(Backend& be, size_t n) : be_(&be), n_(n) { ptr_ = static_cast<T*>(be.alloc(sizeof(T) * (n ? n : 1))); }
  BackendArray(Backend& be, const T* host, size_t n) : BackendArray(be, n) { be.upload(ptr_, host, sizeof(T) * n); }
  ~BackendArray() { reset(); }
  BackendArray(BackendArray&& o) noexcept { *this = std::move(o); }
  BackendArray& operator=(BackendArray&& o) noexcept {
    if (this != &o) {
      reset();
      std::swap(be_, o.be_);
      std::swap(ptr_, o.ptr_);
      std::swap(n_, o.n_);
    }
    return *this;
  }
  BackendArray(const BackendArray&) = delete;
  BackendArray& operator=(const BackendArray&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return sizeof(T) * n_; }
  void reset() {
    if (ptr_ && be_) be_->release(ptr_);
    ptr_ = nullptr;
    n_ = 0;
  }

 private:
  Backend* be_ = nullptr;
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// A matrix in backend memory: storage plus its Mat view.
struct BackendMat {
  BackendArray<unsigned char> storage;
  Mat mat;
  BackendMat() = default;
  BackendMat(Backend& be, int64_t rows, int64_t cols, DType t)
      : storage(be, size_t(rows) * size_t(cols) * dtype_size(t)), mat{storage.get(), t, rows, cols} {}
};

// dst = src rounded to fp16 (Backend::to_half over a whole matrix): src fp32, dst fp16, one shape.
inline void to_half(Backend& be, Mat src, Mat dst) {
  if (src.dtype != DType::F32 || dst.dtype != DType::F16 || src.rows != dst.rows || src.cols != dst.cols)
    fail(ErrorCode::InvalidArgument, "to_half: an fp32 matrix into an fp16 one of its shape");
  be.to_half(src.f32(), dst.data, size_t(src.rows) * size_t(src.cols));
}
// A new fp16 copy of the fp32 matrix src.
inline BackendMat half_copy(Backend& be, Mat src) {
  BackendMat h(be, src.rows, src.cols, DType::F16);
  to_half(be, src, h.mat);
  return h;
}

}  // namespace ncf
