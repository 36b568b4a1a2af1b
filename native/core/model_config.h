// NeuMF's shape and the layout of its parameters in one flat fp32 buffer.
//
// The buffer holds, in this order, the tensors of NVIDIA's PyTorch NeuMF state_dict:
//   mf_user_embed.weight [n_users, factors]     mf_item_embed.weight [n_items, factors]
//   mlp_user_embed.weight [n_users, layers0/2]  mlp_item_embed.weight [n_items, layers0/2]
//   mlp.{i}.weight [layers[i+1], layers[i]]     mlp.{i}.bias [layers[i+1]]
//   final.weight [1, factors + layers.back()]   final.bias [1]
// One buffer means one gradient buffer, one fused Adam pass and one all-reduce per step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ncf {

struct ModelConfig {
  uint32_t n_users = 0;
  uint32_t n_items = 0;
  int factors = 64;
  std::vector<int> layers{256, 256, 128, 64};  // layers[0] is the MLP input width
  float dropout = 0.5f;

  int mlp_embed_dim() const { return layers[0] / 2; }
  int hidden_layers() const { return int(layers.size()) - 1; }
  int head_inputs() const { return factors + layers.back(); }
  // Throws InvalidArgument naming the first bad field.
  void validate() const;
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0;  // in floats from the start of the buffer
  size_t count = 0;
};

struct ParamLayout {
  std::vector<TensorSpec> tensors;
  size_t total = 0;
  // Offsets of the pieces the ops use.
  size_t mf_user = 0, mf_item = 0, mlp_user = 0, mlp_item = 0;
  std::vector<size_t> weight, bias;  // per hidden layer
  size_t final_weight = 0, final_bias = 0;
  size_t embedding_end = 0;          // the embeddings occupy [0, embedding_end)

  static ParamLayout build(const ModelConfig& cfg);
};

}  // namespace ncf
