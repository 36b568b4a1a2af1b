// Dropout masks as a pure function of (layer key, epoch, sample position, feature), shared by
// both backends. One Philox block gives 16-bit uniforms for 8 consecutive features; feature j of
// sample `pos` is kept when its 16-bit draw is >= threshold = round(p * 65536), so the drop
// probability is p to within 2^-17. Kept values are scaled by 1 / (1 - p) (inverted dropout).
#pragma once
#include <cmath>
#include <cstdint>

#include "hd.h"
#include "philox.h"

namespace ncf {

struct Dropout {
  bool active = false;   // false at evaluation and serving time, or when p == 0
  float p = 0.0f;
  float scale = 1.0f;    // 1 / (1 - p)
  uint32_t threshold = 0;
  uint64_t key = 0;      // per-layer key
  uint32_t epoch = 0;
  uint64_t pos0 = 0;     // epoch position of row 0 of the batch
  // The epoch position of row r is pos0 + row_pos[r] (a batch grouped by user, sample_batch), or
  // pos0 + r when null. Backend memory.
  const uint32_t* row_pos = nullptr;
};

inline Dropout make_dropout(float p, uint64_t seed, int layer, uint32_t epoch, uint64_t pos0) {
  Dropout d;
  d.active = p > 0.0f;
  d.p = p;
  d.scale = d.active ? 1.0f / (1.0f - p) : 1.0f;
  d.threshold = uint32_t(std::lround(double(p) * 65536.0));
  d.key = stream_key(seed, Stream::Dropout, uint64_t(layer));
  d.epoch = epoch;
  d.pos0 = pos0;
  return d;
}

// The 16-bit draws of features [8 * g, 8 * g + 8) of row `row` of the batch: a sample's mask
// belongs to its epoch position, whichever row holds it.
NCF_HD uint64_t dropout_position(const Dropout& d, uint64_t row) {
  return d.pos0 + (d.row_pos ? uint64_t(d.row_pos[row]) : row);
}
// The same block from the sample's epoch position (so a loop over g can keep it hoisted).
NCF_HD U32x4 dropout_block_at(const Dropout& d, uint64_t pos, uint32_t g) {
  return philox4x32_10(U32x4{g, d.epoch, uint32_t(pos), uint32_t(pos >> 32)}, d.key);
}
NCF_HD U32x4 dropout_block(const Dropout& d, uint64_t row, uint32_t g) {
  return dropout_block_at(d, dropout_position(d, row), g);
}

// Whether feature 8 * g + lane (lane in 0..7) is kept, given its block.
NCF_HD bool dropout_keep(const Dropout& d, const U32x4& block, int lane) {
  const uint32_t w = philox_word(block, lane >> 1);
  const uint32_t u16 = (lane & 1) ? (w >> 16) : (w & 0xFFFFu);
  return u16 >= d.threshold;
}

}  // namespace ncf
