// Evaluation semantics shared by both backends. Each user's list holds the held-out positive at
// index 0 and its sampled negatives after it. A negative equal to the positive or to an earlier
// negative is a duplicate and is masked out (the positive never is). The positive's rank is the
// number of unmasked negatives scoring at least as high as it: ties count against the positive,
// as in the reference, where top_k puts the positive (last index) behind equal scores. A rank
// below K is a hit, and contributes 1 / log2(rank + 2) to DCG.
#pragma once
#include <cmath>
#include <cstdint>

#include "hd.h"

namespace ncf {

// Whether entry i (a negative) ranks ahead of the positive scoring `pos`. NaN scores rank ahead.
NCF_HD bool ranks_ahead(float score, float pos, uint8_t masked) { return !masked && !(score < pos); }

NCF_HD int positive_rank(const float* scores, const uint8_t* masked, int list_len) {
  const float pos = scores[0];
  int rank = 0;
  for (int i = 1; i < list_len; ++i) rank += ranks_ahead(scores[i], pos, masked[i]) ? 1 : 0;
  return rank;
}

NCF_HD double rank_dcg(int rank, int k) { return rank < k ? 1.0 / log2(double(rank) + 2.0) : 0.0; }

}  // namespace ncf
