// A generator of implicit-feedback data with MovieLens' shapes, for benchmarks and tests.
//
// Items have Zipf-distributed popularity (exponent 1, in a random order of ids) and a home
// "taste" cluster; each user belongs to a cluster and picks 75% of its items from that cluster's
// items (popularity-weighted) and the rest from all items by popularity, so a model that learns
// the clusters ranks a user's held-out item well (HR@10 rises during training) while popularity
// alone does less well. Per-user counts are 20 (the reference's minimum) plus a log-normal tail,
// scaled to the exact total of the shape; every item is used at least once; each user's items
// get increasing timestamps in a random order. Deterministic for a seed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "raw_interactions.h"

namespace ncf {

struct SyntheticShape {
  std::string name;
  uint32_t users;
  uint32_t items;
  uint64_t interactions;
};

// ml-20m (138,493 x 26,744, 20,000,263), ml-1m, ml-100k and the small test shapes.
const std::vector<SyntheticShape>& synthetic_shapes();
const SyntheticShape* find_synthetic_shape(const std::string& name);

class ThreadPool;
RawInteractions generate_synthetic(const SyntheticShape& shape, uint64_t seed, ThreadPool& pool);

}  // namespace ncf
