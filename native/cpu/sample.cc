// sample_batch on the CPU: the n samples at epoch positions [pos0, pos0 + n), one sample_at()
// per position (see core/sample_stream.h for the shuffle and negative draws); and philox_fill,
// raw Philox blocks for the self-test.
#include "../core/sample_stream.h"
#include "cpu_backend.h"

namespace ncf {

void CpuBackend::sample_batch(const TrainArrays& d, const SampleStream& s, uint64_t pos0, int n, uint32_t* users,
                              uint32_t* items, float* labels) {
  pool_.parallel_for(
      n,
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) sample_at(s, d, pos0 + uint64_t(i), &users[i], &items[i], &labels[i]);
      },
      256);
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
