#include "preprocess.h"

#include <algorithm>
#include <numeric>

#include "../core/errors.h"
#include "../core/philox.h"
#include "../core/thread_pool.h"
#include "id_indexer.h"

namespace ncf {

namespace {

std::pair<int64_t, int64_t> min_max(const std::vector<int64_t>& v) {
  const auto mm = std::minmax_element(v.begin(), v.end());
  return {*mm.first, *mm.second};
}

}  // namespace

PreparedData preprocess(RawInteractions raw, const PrepareOptions& opt, ThreadPool& pool) {
  PreparedData out;
  const size_t n = raw.users.size();
  out.rows = int64_t(n);
  if (n == 0) fail(ErrorCode::EmptyData, "the source holds no interactions");
  if (raw.items.size() != n || (!raw.times.empty() && raw.times.size() != n))
    fail(ErrorCode::InvalidArgument, "user, item and timestamp columns differ in length");
  if (opt.min_ratings < 1) fail(ErrorCode::InvalidArgument, "min ratings must be at least 1");
  if (opt.test_negatives < 1 || opt.test_negatives > 100000)
    fail(ErrorCode::InvalidArgument, "test negatives must be in 1..100000");
  const bool timed = !raw.times.empty();

  // 1. Rows per user, in order of first appearance.
  const auto urange = min_max(raw.users);
  IdIndexer first_seen(urange.first, urange.second, n / 16 + 16);
  std::vector<uint32_t> row_user(n);
  std::vector<uint32_t> counts;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t k = first_seen.index(raw.users[i]);
    if (k == counts.size()) counts.push_back(0);
    ++counts[k];
    row_user[i] = k;
  }
  std::vector<uint32_t> dense_user(counts.size(), UINT32_MAX);
  uint32_t n_users = 0;
  uint32_t most = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    most = std::max(most, counts[k]);
    if (counts[k] >= uint64_t(opt.min_ratings)) {
      dense_user[k] = n_users++;
      out.user_ids.push_back(double(first_seen.ids()[k]));
    } else {
      ++out.dropped_users;
      out.dropped_rows += counts[k];
    }
  }
  if (n_users == 0)
    fail(ErrorCode::EmptyData, "no user has at least " + std::to_string(opt.min_ratings) +
                                   " interactions (the most any user has is " + std::to_string(most) +
                                   "); lower --min-ratings");
  std::vector<int64_t>().swap(raw.users);

  // 2. Items of the kept rows, in order of first appearance among them; kept rows in file order.
  const auto irange = min_max(raw.items);
  IdIndexer item_index(irange.first, irange.second, n / 64 + 16);
  const size_t kept = n - size_t(out.dropped_rows);
  std::vector<uint32_t> ku(kept), ki(kept);
  std::vector<double> kt(timed ? kept : 0);
  for (size_t i = 0, j = 0; i < n; ++i) {
    const uint32_t u = dense_user[row_user[i]];
    if (u == UINT32_MAX) continue;
    ku[j] = u;
    ki[j] = item_index.index(raw.items[i]);
    if (timed) kt[j] = raw.times[i];
    ++j;
  }
  std::vector<uint32_t>().swap(row_user);
  RawInteractions().items.swap(raw.items);
  RawInteractions().times.swap(raw.times);
  const uint32_t n_items = item_index.size();
  for (int64_t id : item_index.ids()) out.item_ids.push_back(double(id));

  // 3. Rows grouped by user (a stable counting sort keeps file order), then each user's rows
  //    stably sorted by time.
  std::vector<uint32_t> start(size_t(n_users) + 1, 0);
  for (uint32_t u : ku) ++start[size_t(u) + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<uint32_t> order(kept);
  {
    std::vector<uint32_t> fill(start.begin(), start.end() - 1);
    for (size_t j = 0; j < kept; ++j) order[fill[ku[j]]++] = uint32_t(j);
  }
  std::vector<uint32_t>().swap(ku);

  // 4-5. Per user: chronological order, first occurrence of each item kept, the last one held
  //      out. `uniq` holds each user's unique items in its own segment; `n_uniq` their count.
  std::vector<uint32_t> uniq(kept), n_uniq(n_users);
  std::vector<int64_t> dup_counts(size_t(pool.size()), 0);
  pool.parallel_for(
      n_users,
      [&](int64_t ub, int64_t ue, int t) {
        std::vector<uint32_t> stamp(n_items, UINT32_MAX);
        for (int64_t u = ub; u < ue; ++u) {
          uint32_t* seg = &order[start[size_t(u)]];
          const size_t len = start[size_t(u) + 1] - start[size_t(u)];
          if (timed) std::stable_sort(seg, seg + len, [&](uint32_t a, uint32_t b) { return kt[a] < kt[b]; });
          uint32_t* dst = &uniq[start[size_t(u)]];
          uint32_t c = 0;
          for (size_t r = 0; r < len; ++r) {
            const uint32_t item = ki[seg[r]];
            if (stamp[item] == uint32_t(u)) {
              ++dup_counts[size_t(t)];
              continue;
            }
            stamp[item] = uint32_t(u);
            dst[c++] = item;
          }
          n_uniq[size_t(u)] = c;
        }
      },
      64);
  for (int64_t d : dup_counts) out.duplicates += d;
  std::vector<uint32_t>().swap(order);
  std::vector<uint32_t>().swap(ki);

  out.n_users = n_users;
  out.n_items = n_items;
  out.offsets.assign(size_t(n_users) + 1, 0);
  out.test_items.resize(n_users);
  for (uint32_t u = 0; u < n_users; ++u) out.offsets[size_t(u) + 1] = out.offsets[u] + (n_uniq[u] - 1);
  out.items.resize(out.offsets[n_users]);
  pool.parallel_for(
      n_users,
      [&](int64_t ub, int64_t ue, int) {
        for (int64_t u = ub; u < ue; ++u) {
          const uint32_t* src = &uniq[start[size_t(u)]];
          const uint32_t c = n_uniq[size_t(u)];
          out.test_items[size_t(u)] = src[c - 1];
          uint32_t* dst = &out.items[out.offsets[size_t(u)]];
          std::copy(src, src + c - 1, dst);
          std::sort(dst, dst + c - 1);
        }
      },
      64);
  std::vector<uint32_t>().swap(uniq);

  // 6. Test negatives, drawn per user from its own Philox sub-stream.
  const int K = opt.test_negatives;
  out.test_negatives.resize(size_t(n_users) * size_t(K));
  const uint64_t key = stream_key(opt.seed, Stream::TestNegative);
  std::vector<int64_t> saturated(size_t(pool.size()), -1);
  pool.parallel_for(
      n_users,
      [&](int64_t ub, int64_t ue, int t) {
        std::vector<uint32_t> stamp(n_items, UINT32_MAX);
        for (int64_t u = ub; u < ue; ++u) {
          const uint32_t b = out.offsets[size_t(u)], e = out.offsets[size_t(u) + 1];
          for (uint32_t j = b; j < e; ++j) stamp[out.items[j]] = uint32_t(u);
          stamp[out.test_items[size_t(u)]] = uint32_t(u);
          if (uint64_t(e - b) + 1 >= n_items) {
            saturated[size_t(t)] = u;
            return;
          }
          PhiloxSequence rng(key, uint64_t(u));
          uint32_t* dst = &out.test_negatives[size_t(u) * size_t(K)];
          for (int k = 0; k < K;) {
            const uint32_t item = rng.next_below(n_items);
            if (stamp[item] != uint32_t(u)) dst[k++] = item;
          }
        }
      },
      64);
  for (int64_t u : saturated)
    if (u >= 0)
      fail(ErrorCode::EmptyData, "user " + std::to_string(int64_t(out.user_ids[size_t(u)])) +
                                     " has interacted with every item, so no test negatives can be drawn");
  return out;
}

}  // namespace ncf
