#include "id_indexer.h"

#include "../core/errors.h"

namespace ncf {

namespace {
inline uint64_t hash_id(int64_t id) {
  uint64_t z = uint64_t(id) * 0x9E3779B97F4A7C15ull;
  return z ^ (z >> 31);
}
}  // namespace

IdIndexer::IdIndexer(int64_t min_id, int64_t max_id, size_t expected) : min_id_(min_id) {
  const uint64_t range = max_id >= min_id ? uint64_t(max_id - min_id) + 1 : 0;
  direct_ = range > 0 && range <= (uint64_t(1) << 27) && range <= 16 * uint64_t(expected) + (1 << 20);
  if (direct_) {
    table_.assign(size_t(range), 0);
  } else {
    uint64_t cap = 1024;
    while (cap < 2 * uint64_t(expected)) cap <<= 1;
    keys_.assign(size_t(cap), 0);
    slots_.assign(size_t(cap), 0);
    mask_ = cap - 1;
  }
}

void IdIndexer::grow() {
  std::vector<int64_t> keys(keys_.size() * 2, 0);
  std::vector<uint32_t> slots(slots_.size() * 2, 0);
  const uint64_t mask = keys.size() - 1;
  for (size_t s = 0; s < keys_.size(); ++s) {
    if (!slots_[s]) continue;
    uint64_t h = hash_id(keys_[s]) & mask;
    while (slots[h]) h = (h + 1) & mask;
    keys[h] = keys_[s];
    slots[h] = slots_[s];
  }
  keys_.swap(keys);
  slots_.swap(slots);
  mask_ = mask;
}

uint32_t IdIndexer::index(int64_t id) {
  if (direct_) {
    uint32_t& slot = table_[size_t(id - min_id_)];
    if (!slot) {
      ids_.push_back(id);
      slot = uint32_t(ids_.size());
    }
    return slot - 1;
  }
  uint64_t h = hash_id(id) & mask_;
  while (slots_[h]) {
    if (keys_[h] == id) return slots_[h] - 1;
    h = (h + 1) & mask_;
  }
  if (ids_.size() >= 0xFFFFFFF0u) fail(ErrorCode::InvalidArgument, "more than 4 billion distinct ids");
  ids_.push_back(id);
  keys_[h] = id;
  slots_[h] = uint32_t(ids_.size());
  if (2 * ids_.size() > keys_.size()) grow();
  return uint32_t(ids_.size() - 1);
}

uint32_t IdIndexer::find(int64_t id) const {
  if (direct_) {
    if (id < min_id_ || uint64_t(id - min_id_) >= table_.size()) return UINT32_MAX;
    const uint32_t s = table_[size_t(id - min_id_)];
    return s ? s - 1 : UINT32_MAX;
  }
  uint64_t h = hash_id(id) & mask_;
  while (slots_[h]) {
    if (keys_[h] == id) return slots_[h] - 1;
    h = (h + 1) & mask_;
  }
  return UINT32_MAX;
}

}  // namespace ncf
