// Scatter-adds into table rows from many samples on the CPU without atomics or write races:
// thread t applies only the rows r with r % threads == t, scanning all samples in order, so each
// row sums its samples in sample order (the same result for any thread count).
#pragma once
#include <cstdint>

#include "../core/thread_pool.h"

namespace ncf {

// Calls on_user(i, users[i]) for the samples i < n whose user row this thread owns, and
// on_item(i, items[i]) for those whose item row it owns.
template <class UserFn, class ItemFn>
void scatter_by_owner(ThreadPool& pool, const uint32_t* users, const uint32_t* items, int64_t n, UserFn on_user,
                      ItemFn on_item) {
  const uint32_t T = uint32_t(pool.size());
  pool.run_on_all([&](int tid) {
    for (int64_t i = 0; i < n; ++i) {
      if (users[i] % T == uint32_t(tid)) on_user(i, users[i]);
      if (items[i] % T == uint32_t(tid)) on_item(i, items[i]);
    }
  });
}

}  // namespace ncf
