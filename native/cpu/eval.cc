// eval_rank on the CPU: each user's positive rank under the shared rule (core/rank_rule.h),
// users in parallel, per-thread sums added in thread order.
#include <vector>

#include "../core/rank_rule.h"
#include "cpu_backend.h"

namespace ncf {

void CpuBackend::eval_rank(const float* logits, const uint8_t* masked, int n_users, int list_len, int k,
                           EvalSums* sums) {
  const int T = pool_.size();
  std::vector<double> dcg(size_t(T), 0.0);
  std::vector<uint64_t> hits(size_t(T), 0);
  pool_.parallel_for(
      n_users,
      [&](int64_t b, int64_t e, int t) {
        for (int64_t u = b; u < e; ++u) {
          const int r = positive_rank(logits + size_t(u) * list_len, masked + size_t(u) * list_len, list_len);
          if (r < k) ++hits[size_t(t)];
          dcg[size_t(t)] += rank_dcg(r, k);
        }
      },
      64);
  for (int t = 0; t < T; ++t) {
    sums->dcg += dcg[size_t(t)];
    sums->hits += hits[size_t(t)];
  }
  sums->users += uint64_t(n_users);
}

}  // namespace ncf
