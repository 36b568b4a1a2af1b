// eval_rank on the GPU: one warp per user list (1 positive + negatives). Lanes test strided
// entries with the shared rule (core/rank_rule.h: unmasked negatives scoring >= the positive
// count against it), a shuffle reduction gives the rank, and per-block sums of hits and DCG go to
// the device totals with one atomic add each.
#include "../core/rank_rule.h"
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

__global__ void eval_rank_kernel(const float* logits, const uint8_t* masked, int n_users, int len, int k, EvalSums* sums) {
  __shared__ double dcg_block;
  __shared__ unsigned long long hits_block;
  if (threadIdx.x == 0) {
    dcg_block = 0.0;
    hits_block = 0;
    if (blockIdx.x == 0) atomicAdd(reinterpret_cast<unsigned long long*>(&sums->users), (unsigned long long)n_users);
  }
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t u = warp; u < n_users; u += warps) {
    const float* s = logits + u * len;
    const uint8_t* m = masked + u * len;
    const float pos = s[0];
    int ahead = 0;
    for (int i = 1 + lane; i < len; i += 32) ahead += ranks_ahead(s[i], pos, m[i]) ? 1 : 0;
    ahead = warp_sum(ahead);
    if (lane == 0 && ahead < k) {
      atomicAdd(&hits_block, 1ull);
      atomicAdd(&dcg_block, rank_dcg(ahead, k));
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    atomicAdd(reinterpret_cast<unsigned long long*>(&sums->hits), hits_block);
    atomicAdd(&sums->dcg, dcg_block);
  }
}

}  // namespace

void CudaBackend::eval_rank(const float* logits, const uint8_t* masked, int n_users, int list_len, int k,
                            EvalSums* sums) {
  const OpSpan span(&op_times_, "eval_rank", stream_);
  if (n_users <= 0) return;
  use_device(device_);
  const unsigned blocks = capped(std::min<int64_t>(4096, (int64_t(n_users) + 7) / 8));
  eval_rank_kernel<<<blocks, kThreads, 0, stream_>>>(logits, masked, n_users, list_len, k, sums);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
