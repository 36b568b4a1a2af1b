// The reference's initialisation: embeddings N(0, 0.01), hidden layers Glorot uniform
// (limit sqrt(6 / (fan_in + fan_out))), the output unit LeCun uniform (limit sqrt(3 / fan_in)),
// biases zero (TensorFlow's Dense default, as in NVIDIA's TensorFlow NCF). Drawn on the host from
// Philox, so every backend and every rank starts from the same weights for a given seed.
#pragma once
#include <cstdint>
#include <vector>

#include "model_config.h"
#include "thread_pool.h"

namespace ncf {

std::vector<float> init_params(const ModelConfig& cfg, const ParamLayout& layout, uint64_t seed, ThreadPool& pool);

}  // namespace ncf
