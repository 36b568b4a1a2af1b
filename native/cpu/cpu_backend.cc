// CPU backend: memory, description and the factory. The ops are in the files named after them.
#include "cpu_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "../core/errors.h"
#include "gemm.h"

namespace ncf {

namespace {
constexpr size_t kAlign = 64;  // header size too, so the payload stays aligned

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "cpu";
}
}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads > 0 ? threads : ThreadPool::default_threads()) {}

BackendInfo CpuBackend::info() const {
  BackendInfo i;
  i.name = "cpu";
  i.device = cpu_model_name();
  i.threads = pool_.size();
  i.blas = blas_name();
  return i;
}

void* CpuBackend::alloc(size_t bytes) {
  void* raw = nullptr;
  if (posix_memalign(&raw, kAlign, bytes + kAlign) != 0 || raw == nullptr)
    fail(ErrorCode::Backend, "out of host memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(raw, 0, bytes + kAlign);
  *static_cast<size_t*>(raw) = bytes;
  const size_t now = in_use_ += bytes;
  if (now > peak_) peak_ = now;
  return static_cast<char*>(raw) + kAlign;
}

void CpuBackend::release(void* p) {
  if (!p) return;
  void* raw = static_cast<char*>(p) - kAlign;
  in_use_ -= *static_cast<size_t*>(raw);
  std::free(raw);
}

void CpuBackend::upload(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::download(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::zero(void* dst, size_t bytes) {
  char* d = static_cast<char*>(dst);
  pool_.parallel_for(int64_t(bytes), [&](int64_t b, int64_t e, int) { std::memset(d + b, 0, size_t(e - b)); },
                     1 << 16);
}

void CpuBackend::fill_u32(uint32_t* dst, uint32_t value, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = value;
}

void CpuBackend::parallel_tiles(int64_t n, int64_t tile, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t tiles = (n + tile - 1) / tile;
  // Ops called from inside a pool thread run on that thread alone (ThreadPool::parallel_for).
  pool_.parallel_for(tiles, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) fn(t * tile, std::min(n, (t + 1) * tile));
  });
}

void require_f32(const Mat& m, const char* what) {
  if (!m.empty() && m.dtype != DType::F32)
    fail(ErrorCode::InvalidArgument, std::string("the CPU backend computes in fp32 only; ") + what + " is " +
                                         dtype_name(m.dtype));
}

std::unique_ptr<Backend> create_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace ncf
