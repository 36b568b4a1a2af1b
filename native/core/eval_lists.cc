#include "eval_lists.h"

#include <algorithm>

namespace ncf {

EvalLists build_eval_lists(const uint32_t* test_items, const uint32_t* test_negatives, int stored, int negatives,
                           uint32_t first_user, uint32_t n_users) {
  EvalLists e;
  e.list_len = 1 + negatives;
  e.first_user = first_user;
  e.n_users = n_users;
  const size_t L = size_t(e.list_len);
  e.users.resize(n_users * L);
  e.items.resize(n_users * L);
  e.masked.assign(n_users * L, 0);
  std::vector<uint64_t> keyed(L);
  for (uint32_t k = 0; k < n_users; ++k) {
    const uint32_t u = first_user + k;
    uint32_t* items = &e.items[k * L];
    items[0] = test_items[u];
    for (int j = 0; j < negatives; ++j) items[1 + j] = test_negatives[size_t(u) * size_t(stored) + size_t(j)];
    std::fill(&e.users[k * L], &e.users[k * L] + L, u);
    // An entry is a duplicate when an earlier entry (the positive included) holds the same item:
    // sort (item, index) pairs; within a run of equal items all but the first index are masked.
    for (size_t j = 0; j < L; ++j) keyed[j] = (uint64_t(items[j]) << 32) | j;
    std::sort(keyed.begin(), keyed.end());
    for (size_t j = 1; j < L; ++j)
      if ((keyed[j] >> 32) == (keyed[j - 1] >> 32)) e.masked[k * L + (keyed[j] & 0xFFFFFFFFu)] = 1;
  }
  return e;
}

}  // namespace ncf
