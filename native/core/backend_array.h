// An owning handle to an array in backend memory (host or device), released on destruction.
#pragma once
#include <cstddef>
#include <utility>

#include "backend.h"

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

}  // namespace ncf
