// sample_batch on the GPU, as a counting sort of the batch by user:
// 1. sample_kernel: one thread per sample evaluates sample_at() (the epoch's Feistel shuffle and,
//    for negatives, cuRAND Philox draws; core/sample_stream.h) in position order, into scratch.
// 2. count_kernel: each user's rows (atomic adds into a zeroed counter per user).
// 3. scan_kernel: the users' first rows, an exclusive scan of the counts by one block of 1024
//    threads, each over a contiguous chunk.
// 4. slot_kernel: each sample takes a slot in its user's range (an atomic cursor: any order).
// 5. place_kernel: each slot's sample moves to its user's range at its rank by position among
//    the range (a scan of the range, which is short: a user's share of one batch), so the result
//    is the CPU's stable order, bit for bit, whatever order the atomics ran in. A user with more
//    than kRankedRows rows in the batch (no MovieLens user comes close at the default batch)
//    keeps the slot order instead: the same rows, not in position order, so that the scan stays
//    linear in the batch.
// About 60 bytes per sample of scratch traffic and 12 bytes per user, against the table and
// gradient rows that consecutive rows of one user then share in cache. NCF_CUDA_GROUPED=0 leaves
// the batch in position order (positions[r] = r), to measure what the grouping gains; the CPU
// twin then differs in row order only, so the self-test's sample_batch check fails by design.
#include "../core/sample_stream.h"
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

struct SampleScratch {
  uint32_t* users;      // [n] in position order
  uint32_t* items;      // [n]
  float* labels;        // [n]
  uint32_t* slot_pos;   // [n] the position (minus pos0) of the sample in each slot
  uint32_t* count;      // [n_users] rows per user
  uint32_t* start;      // [n_users] the user's first row
  uint32_t* cursor;     // [n_users] slots taken
};

__global__ void sample_kernel(TrainArrays d, SampleStream s, uint64_t pos0, int n, SampleScratch w) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    sample_at(s, d, pos0 + uint64_t(i), &w.users[i], &w.items[i], &w.labels[i]);
}

__global__ void iota_kernel(int n, uint32_t* positions) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    positions[i] = uint32_t(i);
}

__global__ void count_kernel(int n, SampleScratch w) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    atomicAdd(&w.count[w.users[i]], 1u);
}

constexpr int kScanThreads = 1024;

// start = exclusive scan of count over n_users, by one block: thread t sums its chunk, the block
// scans the chunk sums in shared memory, then thread t writes its chunk's prefixes.
__global__ void __launch_bounds__(kScanThreads) scan_kernel(uint32_t n_users, SampleScratch w) {
  __shared__ uint32_t sums[kScanThreads];
  const uint32_t chunk = (n_users + kScanThreads - 1) / kScanThreads;
  const uint32_t b = threadIdx.x * chunk, e = min(n_users, b + chunk);
  uint32_t total = 0;
  for (uint32_t u = b; u < e; ++u) total += w.count[u];
  sums[threadIdx.x] = total;
  __syncthreads();
  for (int o = 1; o < kScanThreads; o <<= 1) {  // Hillis-Steele inclusive scan
    const uint32_t add = int(threadIdx.x) >= o ? sums[threadIdx.x - o] : 0u;
    __syncthreads();
    sums[threadIdx.x] += add;
    __syncthreads();
  }
  uint32_t run = sums[threadIdx.x] - total;
  for (uint32_t u = b; u < e; ++u) {
    w.start[u] = run;
    run += w.count[u];
  }
}

__global__ void slot_kernel(int n, SampleScratch w) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t u = w.users[i];
    w.slot_pos[w.start[u] + atomicAdd(&w.cursor[u], 1u)] = uint32_t(i);
  }
}

constexpr uint32_t kRankedRows = 4096;

__global__ void place_kernel(int n, SampleScratch w, uint32_t* users, uint32_t* items, float* labels,
                             uint32_t* positions) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t i = w.slot_pos[k], u = w.users[i];
    const uint32_t b = w.start[u], e = b + w.count[u];
    uint32_t r = uint32_t(k);
    if (e - b <= kRankedRows) {
      r = b;
      for (uint32_t j = b; j < e; ++j) r += w.slot_pos[j] < i;
    }
    users[r] = u;
    items[r] = w.items[i];
    labels[r] = w.labels[i];
    positions[r] = i;
  }
}

}  // namespace

void CudaBackend::sample_batch(const TrainArrays& d, const SampleStream& s, uint64_t pos0, int n, uint32_t* users,
                               uint32_t* items, float* labels, uint32_t* positions) {
  if (n <= 0) return;
  use_device(device_);
  if (!group_batches_) {  // NCF_CUDA_GROUPED=0: position order, for measuring what grouping gains
    SampleScratch direct{users, items, labels, nullptr, nullptr, nullptr, nullptr};
    sample_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(d, s, pos0, n, direct);
    iota_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(n, positions);
    NCF_LAUNCHED();
    return;
  }
  const size_t rows = size_t(n), per_user = size_t(d.n_users);
  const size_t bytes = 4 * (4 * rows + 3 * per_user);
  if (sample_scratch_.size() < bytes) sample_scratch_ = BackendArray<unsigned char>(*this, bytes);
  uint32_t* base = reinterpret_cast<uint32_t*>(sample_scratch_.get());
  SampleScratch w{base, base + rows, reinterpret_cast<float*>(base + 2 * rows), base + 3 * rows, base + 4 * rows,
                  base + 4 * rows + per_user, base + 4 * rows + 2 * per_user};
  NCF_CUDA(cudaMemsetAsync(w.count, 0, 4 * per_user, stream_));
  NCF_CUDA(cudaMemsetAsync(w.cursor, 0, 4 * per_user, stream_));
  sample_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(d, s, pos0, n, w);
  count_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(n, w);
  scan_kernel<<<1, kScanThreads, 0, stream_>>>(d.n_users, w);
  slot_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(n, w);
  place_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(n, w, users, items, labels, positions);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
