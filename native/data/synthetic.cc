#include "synthetic.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "../core/errors.h"
#include "../core/philox.h"
#include "../core/thread_pool.h"

namespace ncf {

const std::vector<SyntheticShape>& synthetic_shapes() {
  static const std::vector<SyntheticShape> shapes = {
      {"ml-20m", 138493, 26744, 20000263},
      {"ml-1m", 6040, 3706, 1000209},
      {"ml-100k", 943, 1682, 100000},
      {"small", 2000, 1000, 120000},
      {"tiny", 300, 200, 12000},
  };
  return shapes;
}

const SyntheticShape* find_synthetic_shape(const std::string& name) {
  for (const auto& s : synthetic_shapes())
    if (s.name == name) return &s;
  return nullptr;
}

namespace {

constexpr uint32_t kMinPerUser = 20;
constexpr double kClusterShare = 0.75;

// Sampling by inverse CDF over a list of items.
struct Sampler {
  std::vector<uint32_t> items;
  std::vector<double> cdf;  // inclusive prefix sums, last = total
  uint32_t draw(double u) const {
    const double x = u * cdf.back();
    const size_t k = size_t(std::upper_bound(cdf.begin(), cdf.end(), x) - cdf.begin());
    return items[std::min(k, items.size() - 1)];
  }
};

}  // namespace

RawInteractions generate_synthetic(const SyntheticShape& shape, uint64_t seed, ThreadPool& pool) {
  const uint32_t U = shape.users, I = shape.items;
  if (uint64_t(U) * kMinPerUser > shape.interactions || shape.interactions > uint64_t(U) * (I / 2))
    fail(ErrorCode::InvalidArgument, "synthetic shape " + shape.name + " is inconsistent");
  const uint32_t clusters = std::max(4u, std::min(32u, I / 40));
  PhiloxSequence rng(stream_key(seed, Stream::Synthetic, 0), 0);

  // Items: popularity by a random rank, and a home cluster.
  std::vector<uint32_t> rank(I);
  std::iota(rank.begin(), rank.end(), 0u);
  for (uint32_t i = I; i > 1; --i) std::swap(rank[i - 1], rank[rng.next_below(i)]);
  std::vector<double> weight(I);
  std::vector<uint32_t> home(I);
  for (uint32_t i = 0; i < I; ++i) {
    weight[i] = 1.0 / (double(rank[i]) + 10.0);
    home[i] = rng.next_below(clusters);
  }
  Sampler global;
  std::vector<Sampler> by_cluster(clusters);
  for (uint32_t i = 0; i < I; ++i) {
    global.items.push_back(i);
    global.cdf.push_back((global.cdf.empty() ? 0.0 : global.cdf.back()) + weight[i]);
    Sampler& c = by_cluster[home[i]];
    c.items.push_back(i);
    c.cdf.push_back((c.cdf.empty() ? 0.0 : c.cdf.back()) + weight[i]);
  }
  for (auto& c : by_cluster)
    if (c.items.empty()) c = global;

  // Users: a cluster and a count, 20 + a log-normal tail scaled to the exact total.
  std::vector<uint32_t> cluster(U), count(U);
  std::vector<double> tail(U);
  double tail_sum = 0.0;
  for (uint32_t u = 0; u < U; ++u) {
    cluster[u] = rng.next_below(clusters);
    const double g = std::sqrt(-2.0 * std::log(1.0 - rng.next_double())) * std::cos(6.283185307179586 * rng.next_double());
    tail[u] = std::exp(1.3 * g);
    tail_sum += tail[u];
  }
  const uint32_t cap = I / 2;
  const double extra = double(shape.interactions - uint64_t(U) * kMinPerUser);
  uint64_t assigned = 0;
  for (uint32_t u = 0; u < U; ++u) {
    count[u] = std::min<uint32_t>(cap, kMinPerUser + uint32_t(std::floor(tail[u] / tail_sum * extra)));
    assigned += count[u];
  }
  for (uint32_t u = rng.next_below(U); assigned < shape.interactions; u = (u + 1) % U)
    if (count[u] < cap) ++count[u], ++assigned;
  for (uint32_t u = 0; assigned > shape.interactions; u = (u + 1) % U)
    if (count[u] > kMinPerUser) --count[u], --assigned;

  // Every item goes to one user (chosen in proportion to the users' counts) before the rest is drawn.
  std::vector<double> user_cdf(U);
  double acc = 0.0;
  for (uint32_t u = 0; u < U; ++u) user_cdf[u] = acc += count[u];
  std::vector<std::vector<uint32_t>> seeded(U);
  for (uint32_t i = 0; i < I; ++i) {
    uint32_t u = uint32_t(std::upper_bound(user_cdf.begin(), user_cdf.end(), rng.next_double() * acc) - user_cdf.begin());
    u = std::min(u, U - 1);
    while (seeded[u].size() >= count[u]) u = (u + 1) % U;
    seeded[u].push_back(i);
  }

  std::vector<uint64_t> first(size_t(U) + 1, 0);
  for (uint32_t u = 0; u < U; ++u) first[size_t(u) + 1] = first[u] + count[u];
  RawInteractions raw;
  raw.users.resize(shape.interactions);
  raw.items.resize(shape.interactions);
  raw.times.resize(shape.interactions);
  const uint64_t key = stream_key(seed, Stream::Synthetic, 1);
  pool.parallel_for(
      U,
      [&](int64_t ub, int64_t ue, int) {
        std::vector<uint32_t> stamp(I, UINT32_MAX);
        std::vector<uint32_t> mine;
        for (int64_t uu = ub; uu < ue; ++uu) {
          const uint32_t u = uint32_t(uu);
          PhiloxSequence r(key, u);
          mine.assign(seeded[u].begin(), seeded[u].end());
          for (uint32_t i : mine) stamp[i] = u;
          const Sampler& own = by_cluster[cluster[u]];
          uint64_t misses = 0;
          while (mine.size() < count[u]) {
            const bool from_cluster = r.next_double() < kClusterShare && misses < 64ull * count[u];
            uint32_t item = (from_cluster ? own : global).draw(r.next_double());
            if (stamp[item] == u) {
              if (++misses < 128ull * count[u]) continue;
              // Dense user: walk to the next unused item (count <= items / 2, so one exists).
              while (stamp[item] == u) item = (item + 1) % I;
            }
            stamp[item] = u;
            mine.push_back(item);
          }
          for (size_t k = mine.size(); k > 1; --k) std::swap(mine[k - 1], mine[r.next_below(uint32_t(k))]);
          // Timestamps: a start between 1995 and 2014, then gaps of up to about a week.
          double t = 788918400.0 + r.next_double() * 600000000.0;
          for (size_t k = 0; k < mine.size(); ++k) {
            const uint64_t row = first[u] + k;
            raw.users[row] = int64_t(u) + 1;
            raw.items[row] = int64_t(mine[k]) + 1;
            raw.times[row] = std::floor(t);
            t += 1.0 + r.next_double() * 600000.0;
          }
        }
      },
      16);
  raw.lines = int64_t(shape.interactions);
  return raw;
}

}  // namespace ncf
