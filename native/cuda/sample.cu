// sample_batch on the GPU, as a counting sort of the batch by user:
// 1. sample_kernel: one thread per sample evaluates sample_at() (the epoch's Feistel shuffle and,
//    for negatives, cuRAND Philox draws; core/sample_stream.h) in position order, into scratch.
// 2-4. counting_sort by user: each user's rows (key_count_kernel: atomic adds into a zeroed
//    counter per user), the users' first rows (exclusive_scan of the counts: a block per 4096
//    users, two launches), and a slot for each sample in its user's range (key_slot_kernel: an
//    atomic cursor, any order). pair_row_sums sorts a batch's rows by item with the same op.
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

// count[keys[i]] += 1 for i < n (count zeroed first).
__global__ void key_count_kernel(const uint32_t* keys, int64_t n, uint32_t* count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    atomicAdd(&count[keys[i]], 1u);
}

// Entry i takes the next slot of its key's range: order[slot] = i (and sorted_keys[slot] = its
// key when not null); cursor zeroed first.
__global__ void key_slot_kernel(const uint32_t* keys, int64_t n, const uint32_t* start, uint32_t* cursor, uint32_t* order,
                                uint32_t* sorted_keys) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t k = keys[i];
    const uint32_t slot = start[k] + atomicAdd(&cursor[k], 1u);
    order[slot] = uint32_t(i);
    if (sorted_keys) sorted_keys[slot] = k;
  }
}

constexpr int kScanThreads = 1024;
constexpr int kScanTile = 4 * kScanThreads;  // entries per block: 4 consecutive ones per thread

// The inclusive prefix sum of v over the warp's lanes 0..lane.
__device__ __forceinline__ uint32_t warp_inclusive_scan(uint32_t v, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t up = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += up;
  }
  return v;
}

// The exclusive scan of count [n] in two launches of one block per kScanTile entries:
// tile_sums_kernel sums each tile (coalesced reads); tile_scan_kernel adds up the tiles before
// its own (one warp over at most n / 4096 sums), stages its tile in shared memory (coalesced),
// scans it (4 consecutive entries per thread, then the warps' totals by shuffles) and writes it
// back coalesced.
__global__ void __launch_bounds__(kScanThreads) tile_sums_kernel(const uint32_t* count, uint32_t n, uint32_t* sums) {
  __shared__ uint32_t warp_total[kScanThreads / 32];
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const uint32_t base = blockIdx.x * uint32_t(kScanTile);
  uint32_t s = 0;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const uint32_t i = base + uint32_t(q * kScanThreads) + threadIdx.x;
    if (i < n) s += count[i];
  }
  s = warp_sum(s);
  if (lane == 0) warp_total[warp] = s;
  __syncthreads();
  if (warp == 0) {
    const uint32_t t = warp_sum(warp_total[lane]);
    if (lane == 0) sums[blockIdx.x] = t;
  }
}

__global__ void __launch_bounds__(kScanThreads) tile_scan_kernel(const uint32_t* count, uint32_t n, const uint32_t* sums,
                                                                 uint32_t* start) {
  __shared__ uint32_t tile[kScanTile];
  __shared__ uint32_t warp_start[kScanThreads / 32];
  __shared__ uint32_t tile_start;
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const uint32_t base = blockIdx.x * uint32_t(kScanTile);
  for (int i = threadIdx.x; i < kScanTile; i += kScanThreads) tile[i] = base + i < n ? count[base + i] : 0u;
  if (warp == 0) {
    uint32_t before = 0;
    for (uint32_t b = lane; b < blockIdx.x; b += 32) before += sums[b];
    before = warp_sum(before);
    if (lane == 0) tile_start = before;
  }
  __syncthreads();
  uint32_t v[4], own = 0;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    v[q] = own;  // the exclusive prefix within the thread's four
    own += tile[4 * threadIdx.x + q];
  }
  const uint32_t upto = warp_inclusive_scan(own, lane);
  if (lane == 31) warp_start[warp] = upto;
  __syncthreads();
  if (warp == 0) {
    const uint32_t total = warp_start[lane];
    const uint32_t incl = warp_inclusive_scan(total, lane);
    __syncwarp();
    warp_start[lane] = incl - total;
  }
  __syncthreads();
  const uint32_t first = tile_start + warp_start[warp] + upto - own;
#pragma unroll
  for (int q = 0; q < 4; ++q) tile[4 * threadIdx.x + q] = first + v[q];
  __syncthreads();
  for (int i = threadIdx.x; i < kScanTile; i += kScanThreads)
    if (base + i < n) start[base + i] = tile[i];
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
  const OpSpan span(&op_times_, "sample_batch", stream_);
  if (n <= 0) return;
  use_device(device_);
  if (!group_batches_) {  // NCF_CUDA_GROUPED=0: position order, for measuring what grouping gains
    SampleScratch direct{users, items, labels, nullptr, nullptr, nullptr, nullptr};
    sample_kernel<<<grid(n), kThreads, 0, stream_>>>(d, s, pos0, n, direct);
    iota_kernel<<<grid(n), kThreads, 0, stream_>>>(n, positions);
    NCF_LAUNCHED();
    return;
  }
  const size_t rows = size_t(n), per_user = size_t(d.n_users);
  const size_t bytes = 4 * (4 * rows + 3 * per_user);
  if (sample_scratch_.size() < bytes) sample_scratch_ = BackendArray<unsigned char>(*this, bytes);
  uint32_t* base = reinterpret_cast<uint32_t*>(sample_scratch_.get());
  SampleScratch w{base, base + rows, reinterpret_cast<float*>(base + 2 * rows), base + 3 * rows, base + 4 * rows,
                  base + 4 * rows + per_user, base + 4 * rows + 2 * per_user};
  {
    const OpSpan draw(&op_times_, "draw", stream_);
    sample_kernel<<<grid(n), kThreads, 0, stream_>>>(d, s, pos0, n, w);
  }
  counting_sort(w.users, n, d.n_users, w.count, w.cursor, w.start, w.slot_pos, nullptr);
  const OpSpan place(&op_times_, "place", stream_);
  place_kernel<<<grid(n), kThreads, 0, stream_>>>(n, w, users, items, labels, positions);
  NCF_LAUNCHED();
}

void CudaBackend::counting_sort(const uint32_t* keys, int64_t n, uint32_t n_keys, uint32_t* count, uint32_t* cursor,
                                uint32_t* start, uint32_t* order, uint32_t* sorted_keys) {
  const OpSpan span(&op_times_, "counting_sort", stream_);
  NCF_CUDA(cudaMemsetAsync(count, 0, sizeof(uint32_t) * n_keys, stream_));
  NCF_CUDA(cudaMemsetAsync(cursor, 0, sizeof(uint32_t) * n_keys, stream_));
  if (n <= 0) return;
  key_count_kernel<<<grid(n), kThreads, 0, stream_>>>(keys, n, count);
  exclusive_scan(count, n_keys, start);
  key_slot_kernel<<<grid(n), kThreads, 0, stream_>>>(keys, n, start, cursor, order, sorted_keys);
  NCF_LAUNCHED();
}

void CudaBackend::exclusive_scan(const uint32_t* count, uint32_t n, uint32_t* start) {
  const OpSpan span(&op_times_, "exclusive_scan", stream_);
  if (n == 0) return;
  const uint32_t tiles = (n + kScanTile - 1) / kScanTile;
  if (scan_sums_.size() < tiles) scan_sums_ = BackendArray<uint32_t>(*this, tiles);
  tile_sums_kernel<<<tiles, kScanThreads, 0, stream_>>>(count, n, scan_sums_.get());
  tile_scan_kernel<<<tiles, kScanThreads, 0, stream_>>>(count, n, scan_sums_.get(), start);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
