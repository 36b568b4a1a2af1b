// The evaluation lists: for each user, the held-out positive followed by its first
// `negatives` test negatives, and which entries are duplicates to mask (core/rank_rule.h).
#pragma once
#include <cstdint>
#include <vector>

namespace ncf {

struct EvalLists {
  int list_len = 0;               // 1 + negatives
  uint32_t first_user = 0;        // lists cover users [first_user, first_user + n_users)
  uint32_t n_users = 0;
  std::vector<uint32_t> users;    // [n_users * list_len]
  std::vector<uint32_t> items;    // [n_users * list_len], positive first
  std::vector<uint8_t> masked;    // [n_users * list_len]
};

// test_negatives holds `stored` negatives per user; the first `negatives` of them are used.
EvalLists build_eval_lists(const uint32_t* test_items, const uint32_t* test_negatives, int stored, int negatives,
                           uint32_t first_user, uint32_t n_users);

}  // namespace ncf
