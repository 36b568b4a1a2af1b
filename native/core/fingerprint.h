// A 64-bit fingerprint of arrays (a word-wise multiply-xor hash), used to check that every rank
// of a distributed job loaded the same dataset.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ncf {

class Fingerprint {
 public:
  void add(const void* data, size_t bytes) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      mix(w);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, bytes - i);
    mix(tail ^ (uint64_t(bytes) << 56));
  }
  void add_u64(uint64_t v) { mix(v); }
  uint64_t value() const { return h_ ^ (h_ >> 29); }

 private:
  void mix(uint64_t w) {
    h_ ^= w * 0x9E3779B97F4A7C15ull;
    h_ = (h_ << 27 | h_ >> 37) * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
  }
  uint64_t h_ = 0x6A09E667F3BCC909ull;
};

}  // namespace ncf
