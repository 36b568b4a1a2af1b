// sample_batch on the GPU: one thread per sample, each evaluating sample_at() (the epoch's
// Feistel shuffle and, for negatives, cuRAND Philox draws; core/sample_stream.h). Reads the
// positive's user and item (and, with --no-neg-trick, binary-searches the user's CSR row); writes
// 12 bytes per sample, coalesced.
#include "../core/sample_stream.h"
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {
__global__ void sample_kernel(TrainArrays d, SampleStream s, uint64_t pos0, int n, uint32_t* users, uint32_t* items,
                              float* labels) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    sample_at(s, d, pos0 + uint64_t(i), &users[i], &items[i], &labels[i]);
}
}  // namespace

void CudaBackend::sample_batch(const TrainArrays& d, const SampleStream& s, uint64_t pos0, int n, uint32_t* users,
                               uint32_t* items, float* labels) {
  if (n <= 0) return;
  use_device(device_);
  sample_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(d, s, pos0, n, users, items, labels);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
