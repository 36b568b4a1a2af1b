// Maps original integer ids to dense indices 0..n-1 in order of first appearance (what pandas'
// factorize does). Ids in a compact range use a direct lookup table; others an open-addressing
// hash table.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ncf {

class IdIndexer {
 public:
  // min_id/max_id bound the ids that will be seen; expected is about how many distinct ids.
  IdIndexer(int64_t min_id, int64_t max_id, size_t expected);
  // The dense index of id, assigning the next one if id is new.
  uint32_t index(int64_t id);
  // The dense index of id, or UINT32_MAX if it was never assigned.
  uint32_t find(int64_t id) const;
  uint32_t size() const { return uint32_t(ids_.size()); }
  // ids()[k] is the original id of dense index k.
  const std::vector<int64_t>& ids() const { return ids_; }

 private:
  bool direct_;
  int64_t min_id_;
  std::vector<uint32_t> table_;      // direct: id - min_id -> index + 1 (0 = unassigned)
  std::vector<int64_t> keys_;        // hash: slot -> id
  std::vector<uint32_t> slots_;      // hash: slot -> index + 1
  uint64_t mask_ = 0;
  std::vector<int64_t> ids_;
  void grow();
};

}  // namespace ncf
