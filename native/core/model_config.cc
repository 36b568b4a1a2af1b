#include "model_config.h"

#include "errors.h"

namespace ncf {

void ModelConfig::validate() const {
  auto bad = [](const std::string& m) { fail(ErrorCode::InvalidArgument, m); };
  if (n_users == 0) bad("the model needs at least one user");
  if (n_items == 0) bad("the model needs at least one item");
  if (factors <= 0 || factors > 4096) bad("factors must be in 1..4096, got " + std::to_string(factors));
  if (layers.size() < 2) bad("layers needs at least two sizes (the MLP input and one hidden layer)");
  for (int l : layers)
    if (l <= 0 || l > 16384) bad("each layer size must be in 1..16384, got " + std::to_string(l));
  if (layers[0] % 2 != 0) bad("the first layer size (the MLP input) must be even, got " + std::to_string(layers[0]));
  if (!(dropout >= 0.0f && dropout < 1.0f)) bad("dropout must be in [0, 1), got " + std::to_string(dropout));
}

ParamLayout ParamLayout::build(const ModelConfig& cfg) {
  ParamLayout L;
  auto add = [&L](const std::string& name, std::vector<int64_t> shape) {
    size_t count = 1;
    for (int64_t d : shape) count *= size_t(d);
    L.tensors.push_back(TensorSpec{name, std::move(shape), L.total, count});
    L.total += count;
    return L.tensors.back().offset;
  };
  const int64_t half = cfg.mlp_embed_dim();
  L.mf_user = add("mf_user_embed.weight", {cfg.n_users, cfg.factors});
  L.mf_item = add("mf_item_embed.weight", {cfg.n_items, cfg.factors});
  L.mlp_user = add("mlp_user_embed.weight", {cfg.n_users, half});
  L.mlp_item = add("mlp_item_embed.weight", {cfg.n_items, half});
  L.embedding_end = L.total;
  for (int i = 0; i < cfg.hidden_layers(); ++i) {
    L.weight.push_back(add("mlp." + std::to_string(i) + ".weight", {cfg.layers[i + 1], cfg.layers[i]}));
    L.bias.push_back(add("mlp." + std::to_string(i) + ".bias", {cfg.layers[i + 1]}));
  }
  L.final_weight = add("final.weight", {1, cfg.head_inputs()});
  L.final_bias = add("final.bias", {1});
  return L;
}

}  // namespace ncf
