// sample_batch on the CPU: the n samples at epoch positions [pos0, pos0 + n), one sample_at()
// per position (see core/sample_stream.h for the shuffle and negative draws), then a stable
// counting sort by user; and philox_fill, raw Philox blocks for the self-test.
#include <vector>

#include "../core/sample_stream.h"
#include "cpu_backend.h"

namespace ncf {

void CpuBackend::sample_batch(const TrainArrays& d, const SampleStream& s, uint64_t pos0, int n, uint32_t* users,
                              uint32_t* items, float* labels, uint32_t* positions) {
  if (n <= 0) return;
  std::vector<uint32_t> u(static_cast<size_t>(n)), it(static_cast<size_t>(n));
  std::vector<float> lb(static_cast<size_t>(n));
  pool_.parallel_for(
      n,
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) sample_at(s, d, pos0 + uint64_t(i), &u[size_t(i)], &it[size_t(i)], &lb[size_t(i)]);
      },
      256);
  // A stable counting sort by user.
  std::vector<uint32_t> next(size_t(d.n_users) + 1, 0);
  for (int i = 0; i < n; ++i) ++next[size_t(u[size_t(i)]) + 1];
  for (size_t k = 1; k < next.size(); ++k) next[k] += next[k - 1];
  for (int i = 0; i < n; ++i) {
    const uint32_t r = next[u[size_t(i)]]++;
    users[r] = u[size_t(i)];
    items[r] = it[size_t(i)];
    labels[r] = lb[size_t(i)];
    positions[r] = uint32_t(i);
  }
}

void CpuBackend::philox_fill(uint64_t key, const uint32_t* c, uint32_t* out, size_t n_blocks) {
  for (size_t i = 0; i < n_blocks; ++i) {
    const U32x4 b = philox4x32_10(U32x4{c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]}, key);
    out[4 * i] = b.x;
    out[4 * i + 1] = b.y;
    out[4 * i + 2] = b.z;
    out[4 * i + 3] = b.w;
  }
}

}  // namespace ncf
