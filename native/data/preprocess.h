// Turns raw interactions into the training set, as NVIDIA's NCF preprocessing does:
//  1. drop users with fewer than min_ratings rows (counted before de-duplication);
//  2. map user and item ids to dense indices in order of first appearance among the kept rows;
//  3. order each user's rows by timestamp (a stable sort, so equal times keep file order; without
//     timestamps, file order);
//  4. drop repeated (user, item) pairs, keeping the earliest;
//  5. hold out each user's latest remaining item as the test positive; the rest train;
//  6. draw test_negatives items per user uniformly among the items the user never interacted
//     with (verified against the training items and the test item; duplicates allowed).
// Deterministic for a given seed.
#pragma once
#include <cstdint>
#include <vector>

#include "raw_interactions.h"

namespace ncf {

struct PrepareOptions {
  int64_t min_ratings = 20;
  int test_negatives = 100;
  uint64_t seed = 0;
};

struct PreparedData {
  uint32_t n_users = 0, n_items = 0;
  std::vector<uint32_t> offsets;         // [n_users + 1] CSR into items
  std::vector<uint32_t> items;           // training items, ascending within each user
  std::vector<uint32_t> test_items;      // [n_users]
  std::vector<uint32_t> test_negatives;  // [n_users * test_negatives]
  std::vector<double> user_ids, item_ids;  // original ids of the dense indices
  // What happened, for meta.json and the user.
  int64_t rows = 0;             // interactions read
  int64_t dropped_users = 0;    // users under min_ratings
  int64_t dropped_rows = 0;     // their rows
  int64_t duplicates = 0;       // repeated (user, item) rows removed
};

class ThreadPool;
PreparedData preprocess(RawInteractions raw, const PrepareOptions& opt, ThreadPool& pool);

}  // namespace ncf
