#include "init_params.h"

#include <cmath>

#include "philox.h"

namespace ncf {

namespace {
constexpr int64_t kChunk = 1 << 20;  // elements per Philox sub-stream, so chunks fill in parallel
}

std::vector<float> init_params(const ModelConfig& cfg, const ParamLayout& layout, uint64_t seed, ThreadPool& pool) {
  std::vector<float> p(layout.total, 0.0f);
  const uint64_t key = stream_key(seed, Stream::Init);
  for (size_t t = 0; t < layout.tensors.size(); ++t) {
    const TensorSpec& spec = layout.tensors[t];
    enum { Normal, Uniform, Zero } kind = Zero;
    float scale = 0.0f;
    if (spec.offset < layout.embedding_end) {
      kind = Normal;
      scale = 0.01f;
    } else if (spec.shape.size() == 2) {
      const double fan_out = double(spec.shape[0]), fan_in = double(spec.shape[1]);
      kind = Uniform;
      scale = spec.name == "final.weight" ? float(std::sqrt(3.0 / fan_in)) : float(std::sqrt(6.0 / (fan_in + fan_out)));
    }
    if (kind == Zero) continue;
    float* out = p.data() + spec.offset;
    const int64_t n = int64_t(spec.count), chunks = (n + kChunk - 1) / kChunk;
    pool.parallel_for(chunks, [&](int64_t cb, int64_t ce, int) {
      for (int64_t c = cb; c < ce; ++c) {
        PhiloxSequence rng(key, (uint64_t(t) << 32) | uint64_t(c));
        const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
        for (int64_t i = begin; i < end; ++i) {
          if (kind == Uniform) {
            out[i] = float((2.0 * rng.next_double() - 1.0) * scale);
          } else {  // Box-Muller: one normal per pair of uniforms
            const double u1 = 1.0 - rng.next_double(), u2 = rng.next_double();
            out[i] = float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2) * scale);
          }
        }
      }
    });
  }
  return p;
}

}  // namespace ncf
