// Philox4x32-10 counter-based generator (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3"). Every random number in the project is a pure function of (key, counter), so the CPU
// and CUDA backends draw identical dropout masks, negatives and shuffles, and a sample's draws do
// not depend on which rank or thread handles it.
//
// In device code this calls cuRAND's own curand_Philox4x32_10 (the device API); the host version
// below is the same published algorithm with cuRAND's constants and word order, so a counter
// {c0, c1, c2, c3} and key k give the block that curand_init(k, c2 | c3 << 32, 4 * (c0 | c1 << 32))
// followed by curand4() would return. `ncf-native selftest --device cuda` checks the two agree.
#pragma once
#include <cstdint>

#include "hd.h"

#if defined(__CUDACC__)
#include <curand_kernel.h>
#elif defined(NCF_CUDA_EMULATION)
#include <curand_philox4x32_x.h>  // cuRAND's own Philox, compiled for the host by the emulator
#endif

namespace ncf {

struct U32x4 {
  uint32_t x, y, z, w;
};

NCF_HD U32x4 philox_round(U32x4 c, uint32_t k0, uint32_t k1) {
  const uint64_t p0 = uint64_t(0xD2511F53u) * c.x;
  const uint64_t p1 = uint64_t(0xCD9E8D57u) * c.z;
  const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
  const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
  return U32x4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
}

NCF_HD U32x4 philox4x32_10(U32x4 ctr, uint64_t key) {
#if defined(__CUDA_ARCH__) || defined(NCF_CUDA_EMULATION)
  const uint4 r = curand_Philox4x32_10(make_uint4(ctr.x, ctr.y, ctr.z, ctr.w),
                                       make_uint2(uint32_t(key), uint32_t(key >> 32)));
  return U32x4{r.x, r.y, r.z, r.w};
#else
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (int round = 0; round < 9; ++round) {
    ctr = philox_round(ctr, k0, k1);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return philox_round(ctr, k0, k1);
#endif
}

// Word i (0..3) of a block.
NCF_HD uint32_t philox_word(const U32x4& b, int i) { return i == 0 ? b.x : i == 1 ? b.y : i == 2 ? b.z : b.w; }

// Uniform float in (0, 1], the same mapping as cuRAND's curand_uniform.
NCF_HD float uniform_from_u32(uint32_t x) { return float(x) * 2.3283064e-10f + (2.3283064e-10f / 2.0f); }

// Unbiased-enough map of a 32-bit draw onto [0, n): the high word of x * n (Lemire's method
// without the rejection step; the bias is below n / 2^32).
NCF_HD uint32_t scale_u32(uint32_t x, uint32_t n) { return uint32_t((uint64_t(x) * n) >> 32); }

// SplitMix64 finaliser: derives independent keys from one user seed.
NCF_HD uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One key per purpose, so streams never overlap.
enum class Stream : uint64_t {
  Init = 1,           // parameter initialisation
  Permutation = 2,    // the epoch's shuffle
  TrainNegative = 3,  // training negatives
  TestNegative = 4,   // the 100 evaluation negatives per user
  Dropout = 16,       // + layer index
  Synthetic = 64,     // synthetic data generator (+ sub-stream)
};

NCF_HD uint64_t stream_key(uint64_t seed, Stream s, uint64_t sub = 0) {
  return mix64(seed ^ mix64((uint64_t(s) + sub) * 0xD1B54A32D192ED03ull));
}

// A host-side sequential reader over one Philox stream: used where numbers are drawn in order
// (initialisation, data generation), never in the training hot loop.
class PhiloxSequence {
 public:
  PhiloxSequence(uint64_t key, uint64_t subsequence) : key_(key), sub_(subsequence) {}
  uint32_t next_u32() {
    if (used_ == 4) refill();
    return philox_word(block_, used_++);
  }
  float next_uniform() { return uniform_from_u32(next_u32()); }
  uint32_t next_below(uint32_t n) { return scale_u32(next_u32(), n); }
  double next_double() {  // uniform in [0, 1) with 53 random bits
    const uint64_t hi = next_u32(), lo = next_u32();
    return double(((hi << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
  }

 private:
  void refill() {
    block_ = philox4x32_10(U32x4{uint32_t(counter_), uint32_t(counter_ >> 32), uint32_t(sub_), uint32_t(sub_ >> 32)}, key_);
    ++counter_;
    used_ = 0;
  }
  uint64_t key_, sub_;
  uint64_t counter_ = 0;
  U32x4 block_{0, 0, 0, 0};
  int used_ = 4;
};

}  // namespace ncf
