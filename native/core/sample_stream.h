// The training samples of one epoch, as a pure function of their position in the epoch.
//
// An epoch holds P positives and P * negatives negatives (negative j belongs to positive j mod P,
// as the reference's np.tile does), shuffled. Instead of materialising and shuffling those arrays,
// position `pos` of the epoch maps through a keyed bijection of [0, N) (a Feistel network with
// cycle walking) to a sample index, and a negative's item is drawn from Philox keyed by the
// sample index. Both backends call sample_at(), so a sample is the same whichever backend,
// thread or rank produces it, and an epoch needs no memory beyond the positives themselves.
#pragma once
#include <cstdint>

#include "hd.h"
#include "philox.h"

namespace ncf {

// The positives, grouped by user: CSR offsets into `items` (sorted ascending within each user),
// and the user of each positive. Pointers are backend memory (device memory for CUDA).
struct TrainArrays {
  const uint32_t* offsets = nullptr;  // [n_users + 1]
  const uint32_t* items = nullptr;    // [n_pos]
  const uint32_t* users = nullptr;    // [n_pos]
  uint64_t n_pos = 0;
  uint32_t n_users = 0;
  uint32_t n_items = 0;
};

struct SampleStream {
  uint64_t n_pos = 0;      // P
  uint64_t n_samples = 0;  // P * (1 + negatives)
  uint32_t n_items = 0;
  uint32_t epoch = 0;
  uint32_t bits_lo = 1, bits_hi = 1;  // the Feistel domain is 2^(bits_lo + bits_hi) >= n_samples
  uint64_t perm_key = 0;
  uint64_t neg_key = 0;
  bool verify_negatives = false;  // --no-neg-trick: redraw negatives the user has interacted with
};

inline SampleStream make_sample_stream(uint64_t seed, uint32_t epoch, uint64_t n_pos, int negatives,
                                       uint32_t n_items, bool verify) {
  SampleStream s;
  s.n_pos = n_pos;
  s.n_samples = n_pos * uint64_t(1 + negatives);
  s.n_items = n_items;
  s.epoch = epoch;
  uint32_t bits = 2;
  while (bits < 64 && (uint64_t(1) << bits) < s.n_samples) ++bits;
  s.bits_lo = bits / 2;
  s.bits_hi = bits - s.bits_lo;
  s.perm_key = stream_key(seed, Stream::Permutation, epoch);
  s.neg_key = stream_key(seed, Stream::TrainNegative);
  s.verify_negatives = verify;
  return s;
}

// A 32-bit integer hash (Wellons' lowbias32), the Feistel round function.
NCF_HD uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Keyed bijection of [0, 2^(bits_lo+bits_hi)): six alternating Feistel rounds over the low and
// high parts; each round is invertible, so the whole map is. Cycle walking (re-applying it until
// the value falls below n_samples) restricts it to a bijection of [0, n_samples); the domain is
// less than 2 * n_samples, so fewer than two applications are needed on average.
NCF_HD uint64_t permute_position(const SampleStream& s, uint64_t pos) {
  const uint64_t mask_lo = (uint64_t(1) << s.bits_lo) - 1, mask_hi = (uint64_t(1) << s.bits_hi) - 1;
  uint64_t x = pos;
  do {
    uint64_t lo = x & mask_lo, hi = x >> s.bits_lo;
    for (uint32_t r = 0; r < 6; ++r) {
      const uint32_t k = uint32_t(s.perm_key >> (r & 1 ? 32 : 0)) + r * 0x9E3779B9u;
      if (r & 1)
        lo ^= (uint64_t(hash32(uint32_t(hi) ^ k)) | (uint64_t(hash32(uint32_t(hi >> 32) ^ ~k)) << 32)) & mask_lo;
      else
        hi ^= (uint64_t(hash32(uint32_t(lo) ^ k)) | (uint64_t(hash32(uint32_t(lo >> 32) ^ ~k)) << 32)) & mask_hi;
    }
    x = (hi << s.bits_lo) | lo;
  } while (x >= s.n_samples);
  return x;
}

// Whether `user` has `item` among its positives (binary search in its sorted CSR row).
NCF_HD bool user_has_item(const TrainArrays& d, uint32_t user, uint32_t item) {
  uint32_t lo = d.offsets[user], hi = d.offsets[user + 1];
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    const uint32_t v = d.items[mid];
    if (v == item) return true;
    if (v < item) lo = mid + 1; else hi = mid;
  }
  return false;
}

// Attempts before a verified negative gives up and keeps its last draw (only a user who has
// interacted with nearly every item can get there).
constexpr uint32_t kMaxNegativeDraws = 1024;

// The item of negative sample j (j in [0, P * negatives)) for `user`: uniform over all items
// (the reference's shortcut), or, when verifying, the first draw not among the user's positives.
// Draws are Philox words at counter (attempt / 4, epoch, j).
NCF_HD uint32_t negative_item(const SampleStream& s, const TrainArrays& d, uint32_t user, uint64_t j) {
  uint32_t item = 0;
  for (uint32_t a = 0; a < kMaxNegativeDraws; a += 4) {
    const U32x4 b = philox4x32_10(U32x4{a / 4, s.epoch, uint32_t(j), uint32_t(j >> 32)}, s.neg_key);
    for (int w = 0; w < 4; ++w) {
      item = scale_u32(philox_word(b, w), s.n_items);
      if (!s.verify_negatives || !user_has_item(d, user, item)) return item;
    }
  }
  return item;
}

// The sample at position `pos` of the epoch.
NCF_HD void sample_at(const SampleStream& s, const TrainArrays& d, uint64_t pos, uint32_t* user, uint32_t* item,
                      float* label) {
  const uint64_t idx = permute_position(s, pos);
  if (idx < s.n_pos) {
    *user = d.users[idx];
    *item = d.items[idx];
    *label = 1.0f;
  } else {
    const uint64_t j = idx - s.n_pos;
    const uint32_t u = d.users[j % s.n_pos];
    *user = u;
    *item = negative_item(s, d, u, j);
    *label = 0.0f;
  }
}

}  // namespace ncf
