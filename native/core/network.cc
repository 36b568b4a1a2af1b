#include "network.h"

#include <string>

#include "env_switch.h"
#include "errors.h"

namespace ncf {

Activations::Activations(Backend& be, const ModelConfig& cfg, DType dtype, int rows_)
    : rows(rows_),
      users(be, size_t(rows_)),
      items(be, size_t(rows_)),
      positions(be, size_t(rows_)),
      labels(be, size_t(rows_)),
      logits(be, size_t(rows_)),
      be_(&be),
      dtype_(dtype),
      widths_(cfg.layers),
      n_users_(cfg.n_users),
      n_items_(cfg.n_items),
      act_(size_t(cfg.hidden_layers())),
      d_act_(size_t(cfg.hidden_layers())),
      mask_(size_t(cfg.hidden_layers())) {}

Mat Activations::get(BackendMat& m, int64_t cols, DType dtype) { return get(m, rows, cols, dtype); }
Mat Activations::get(BackendMat& m, int64_t n, int64_t cols, DType dtype) {
  std::lock_guard<std::mutex> lock(mu_);
  if (m.mat.empty()) m = BackendMat(*be_, n, cols, dtype);
  return m.mat;
}
Mat Activations::mlp_in() { return get(mlp_in_, widths_[0], dtype_); }
Mat Activations::act(int l) { return get(act_[size_t(l)], widths_[size_t(l) + 1], dtype_); }
UnitMask Activations::mask(int l) {
  if (!be_->wants_unit_masks()) return UnitMask{};
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t cols = widths_[size_t(l) + 1];
  BackendArray<uint8_t>& m = mask_[size_t(l)];
  if (!m.get()) m = BackendArray<uint8_t>(*be_, UnitMask::bytes_for(rows, cols));
  return UnitMask{m.get(), UnitMask::ld_for(cols)};
}
Mat Activations::d_mlp_in() { return get(d_mlp_in_, widths_[0], dtype_); }
Mat Activations::d_act(int l) { return get(d_act_[size_t(l)], widths_[size_t(l) + 1], dtype_); }
Mat Activations::user_part() { return get(user_part_, n_users_, widths_[1], dtype_); }
Mat Activations::item_part() { return get(item_part_, n_items_, widths_[1], dtype_); }
Mat Activations::user_sums() { return get(user_sums_, n_users_, widths_[1], dtype_); }
Mat Activations::item_sums() { return get(item_sums_, n_items_, widths_[1], DType::F32); }

Network::Network(Backend& be, const ModelConfig& cfg, bool half_activations)
    : be_(&be), cfg_(cfg), layout_(ParamLayout::build(cfg)), half_(half_activations), params_(be, layout_.total) {
  cfg_.validate();
  if (half_ && !be.info().half)
    fail(ErrorCode::Unavailable, "the " + be.info().name + " backend has no fp16 path (--amp needs the CUDA backend)");
  if (half_) {
    for (int l = 0; l < cfg_.hidden_layers(); ++l) {
      w_half_.emplace_back(be, size_t(cfg_.layers[l + 1]) * size_t(cfg_.layers[l]));
      b_half_.emplace_back(be, size_t(cfg_.layers[l + 1]));
    }
    tables_half_ = BackendArray<uint16_t>(be, layout_.embedding_end - layout_.mlp_user);
  }
}

HalfMirror Network::table_mirror() const {
  if (!half_) return HalfMirror{};
  return HalfMirror{layout_.mlp_user, layout_.embedding_end, tables_half_.get()};
}

void Network::upload_params(const std::vector<float>& host) {
  if (host.size() != layout_.total)
    fail(ErrorCode::InvalidArgument, "expected " + std::to_string(layout_.total) + " parameters, got " +
                                         std::to_string(host.size()));
  be_->upload(params_.get(), host.data(), host.size() * sizeof(float));
  refresh_half();
  const HalfMirror m = table_mirror();
  if (m.dst) be_->to_half(params_.get() + m.begin, m.dst, m.end - m.begin);
}

std::vector<float> Network::download_params() const {
  std::vector<float> host(layout_.total);
  be_->download(host.data(), params_.get(), host.size() * sizeof(float));
  return host;
}

void Network::refresh_half() {
  for (size_t l = 0; l < w_half_.size(); ++l) {
    be_->to_half(params_.get() + layout_.weight[l], w_half_[l].get(), w_half_[l].size());
    be_->to_half(params_.get() + layout_.bias[l], b_half_[l].get(), b_half_[l].size());
  }
}

EmbedTables Network::tables() const {
  const float* p = params_.get();
  EmbedTables t{p + layout_.mf_user, p + layout_.mf_item, p + layout_.mlp_user, p + layout_.mlp_item,
                cfg_.factors, cfg_.mlp_embed_dim()};
  if (half_) {
    t.mlp_user_half = tables_half_.get();
    t.mlp_item_half = tables_half_.get() + (layout_.mlp_item - layout_.mlp_user);
  }
  return t;
}

LinearParams Network::layer(int l) const {
  const float* p = params_.get();
  return LinearParams{p + layout_.weight[size_t(l)], half_ ? w_half_[size_t(l)].get() : nullptr,
                      p + layout_.bias[size_t(l)], half_ ? b_half_[size_t(l)].get() : nullptr,
                      cfg_.layers[size_t(l)], cfg_.layers[size_t(l) + 1]};
}

HeadParams Network::head() const {
  const float* p = params_.get();
  return HeadParams{p + layout_.final_weight, p + layout_.final_bias, cfg_.factors, cfg_.layers.back()};
}

EmbedGrads Network::embed_grads(float* g) const {
  return EmbedGrads{g + layout_.mf_user, g + layout_.mf_item, g + layout_.mlp_user, g + layout_.mlp_item};
}

void Network::forward_from_embeddings(Activations& a, const uint32_t* users, const uint32_t* items, int n) const {
  const int L = cfg_.hidden_layers();
  be_->linear_forward(a.mlp_in().head(n), layer(0), Dropout{}, a.act(0).head(n), UnitMask{});
  std::vector<Mat> act;
  for (int l = 0; l < L; ++l) act.push_back(a.act(l).head(n));
  hidden_layers_forward(act, std::vector<Dropout>(size_t(L)), std::vector<UnitMask>(size_t(L)));
  be_->head_forward(tables(), users, items, act.back(), head(), a.logits.get());
}

void Network::hidden_layers_forward(const std::vector<Mat>& act, const std::vector<Dropout>& drop,
                                    const std::vector<UnitMask>& masks, const FirstLayerParts* parts) const {
  std::vector<LinearParams> params;
  for (size_t l = 0; l < act.size(); ++l) params.push_back(layer(int(l)));
  const bool hidden = act.size() > 1;
  int fused = hidden && parts ? be_->hidden_forward(act, params, drop, masks, parts) : 0;
  if (parts && !fused) be_->gather_add_relu(parts->a, parts->ia, parts->b, parts->ib, drop[0], act[0], masks[0]);
  if (hidden && !fused) fused = be_->hidden_forward(act, params, drop, masks, nullptr);
  for (size_t l = size_t(fused) + 1; l < act.size(); ++l) be_->linear_forward(act[l - 1], params[l], drop[l], act[l], masks[l]);
}

void Network::forward(Activations& a, const uint32_t* users, const uint32_t* items, int n) const {
  be_->embed_forward(tables(), users, items, a.mlp_in().head(n));
  forward_from_embeddings(a, users, items, n);
}

TrainPass Network::train_pass_args(Activations& a, int n, const std::vector<Dropout>& drop, float grad_scale,
                                   const LossScaler* scaler, float* grads, double* loss_sum, bool allocate) const {
  // Unallocated, a matrix is its shape alone (a null pointer passes the fused op's alignment
  // checks, as the allocator's 256-byte-aligned memory would).
  auto mat = [&](Mat (Activations::*get)(), int64_t cols) { return allocate ? (a.*get)().head(n) : Mat{nullptr, a.dtype(), n, cols}; };
  auto layer_mat = [&](Mat (Activations::*get)(int), int l) {
    return allocate ? (a.*get)(l).head(n) : Mat{nullptr, a.dtype(), n, cfg_.layers[size_t(l) + 1]};
  };
  TrainPass p;
  p.users = a.users.get();
  p.items = a.items.get();
  p.labels = a.labels.get();
  p.tables = tables();
  p.embed_grads = embed_grads(grads);
  for (int l = 0; l < cfg_.hidden_layers(); ++l) {
    p.layers.push_back(layer(l));
    p.grad_b.push_back(grads + layout_.bias[size_t(l)]);
    p.act.push_back(layer_mat(&Activations::act, l));
    p.d_act.push_back(layer_mat(&Activations::d_act, l));
  }
  p.dropout = drop;
  p.head = head();
  p.head_grad_w = grads + layout_.final_weight;
  p.head_grad_b = grads + layout_.final_bias;
  p.grad_scale = grad_scale;
  p.scaler = scaler;
  p.loss_sum = loss_sum;
  p.mlp_in = mat(&Activations::mlp_in, cfg_.layers[0]);
  return p;
}

bool Network::train_pass(Activations& a, int n, const std::vector<Dropout>& drop, float grad_scale,
                         const LossScaler* scaler, float* grads, double* loss_sum, bool fused) const {
  const int L = cfg_.hidden_layers();
  // The input of layer l: the MLP input, or the previous layer's output. (The first layer by parts
  // has no MLP input: it is not allocated then.)
  auto input = [&](int l) { return l > 0 ? a.act(l - 1).head(n) : a.mlp_in().head(n); };
  if (fused) {
    const TrainPass p = train_pass_args(a, n, drop, grad_scale, scaler, grads, loss_sum, true);
    if (be_->train_pass(p, n)) {
      for (int l = 0; l < L; ++l)
        be_->linear_weight_grad(p.d_act[size_t(l)], input(l), grads + layout_.weight[size_t(l)], p.layers[size_t(l)].in);
      return true;
    }
  }
  const uint32_t* users = a.users.get();
  const uint32_t* items = a.items.get();
  const bool by_parts = a.first_layer == FirstLayer::Parts;
  // The last hidden layer's dropout is the output unit's to apply (head_forward_backward): that
  // layer's output is stored before it, and needs no live-unit mask.
  const Dropout none;
  auto forward_dropout = [&](int l) -> const Dropout& { return l == L - 1 ? none : drop[size_t(l)]; };
  auto forward_mask = [&](int l) { return l == L - 1 ? UnitMask{} : a.mask(l); };
  // By parts, the first layer's gather_add_relu comes with the hidden layers (inside the backend's
  // hidden_forward where it takes it).
  FirstLayerParts parts;
  if (by_parts) {
    first_layer_parts(a.user_part(), a.item_part());
    parts = FirstLayerParts{a.user_part(), users, a.item_part(), items, true};
  } else {
    be_->embed_forward(tables(), users, items, input(0));
    be_->linear_forward(input(0), layer(0), forward_dropout(0), a.act(0).head(n), forward_mask(0));
  }
  std::vector<Mat> acts;
  std::vector<Dropout> forward_drop;
  std::vector<UnitMask> forward_masks;
  for (int l = 0; l < L; ++l) {
    acts.push_back(a.act(l).head(n));
    forward_drop.push_back(forward_dropout(l));
    forward_masks.push_back(forward_mask(l));
  }
  hidden_layers_forward(acts, forward_drop, forward_masks, by_parts ? &parts : nullptr);
  // Hidden layer l as the layer below the one taken back: whose ReLU and dropout the gradient
  // passes through on its way down.
  auto as_below = [&](int l) {
    return LayerBelow{a.act(l).head(n), forward_mask(l), drop[size_t(l)], grads + layout_.bias[size_t(l)]};
  };
  const LayerBelow top = as_below(L - 1);
  be_->head_forward_backward(tables(), users, items, top.y, a.labels.get(), head(), grad_scale, scaler,
                             a.d_act(L - 1).head(n), &top, embed_grads(grads), grads + layout_.final_weight,
                             grads + layout_.final_bias, loss_sum);
  // The input gradients of layers L - 1 .. 1 in one op where the backend has it (then each of
  // those layers takes only its weight gradient below).
  std::vector<Mat> dz;
  std::vector<LinearParams> params;
  std::vector<LayerBelow> belows;
  for (int l = 0; l < L; ++l) {
    dz.push_back(a.d_act(l).head(n));
    params.push_back(layer(l));
    if (l < L - 1) belows.push_back(as_below(l));
  }
  // By parts, with the batch in user order, the backend may take the per-user sums of the first
  // layer's gradient as it writes it (then pair_row_sums takes the items' alone).
  const UserRowSums user_side{users, by_parts ? a.user_sums() : Mat{}};
  const HiddenBackwardRun hidden =
      L > 1 ? be_->hidden_backward(dz, params, belows, by_parts && a.users_ascending ? &user_side : nullptr) : HiddenBackwardRun{};
  const bool inputs_fused = hidden.fused;
  for (int l = L - 1; l >= (by_parts ? 1 : 0); --l) {
    if (inputs_fused && l >= 1) {
      be_->linear_weight_grad(a.d_act(l).head(n), input(l), grads + layout_.weight[size_t(l)], cfg_.layers[size_t(l)]);
      continue;
    }
    // Layer l's input gradient is taken through layer l - 1's ReLU and dropout, except layer 0's
    // (it goes to the embeddings as it is) and, by parts, layer 1's: the first layer's ReLU and
    // dropout are pair_row_sums' to apply, as it reads the gradient.
    const bool through_below = l > 1 || (l == 1 && !by_parts);
    const LayerBelow below = through_below ? as_below(l - 1) : LayerBelow{};
    const Mat d_in = l > 0 ? a.d_act(l - 1).head(n) : a.d_mlp_in().head(n);
    be_->linear_backward(a.d_act(l).head(n), input(l), layer(l), d_in, grads + layout_.weight[size_t(l)],
                         through_below ? &below : nullptr);
  }
  if (by_parts) {
    // (With one hidden layer the output unit has taken the gradient through it already.)
    const LayerBelow first = as_below(0);
    first_layer_backward_by_parts(a, n, L > 1 && !inputs_fused ? &first : nullptr, hidden.user_sums, grads);
  } else {
    be_->embed_backward(users, items, a.d_mlp_in().head(n), embed_grads(grads));
  }
  return false;
}

void Network::first_layer_backward_by_parts(Activations& a, int n, const LayerBelow* first_layer, bool user_sums_taken,
                                            float* grads) const {
  const int h = cfg_.mlp_embed_dim(), in = cfg_.layers[0];
  const Mat user_sums = a.user_sums(), item_sums = a.item_sums();
  be_->pair_row_sums(a.d_act(0).head(n), first_layer, a.users.get(), a.users_ascending, a.items.get(),
                     user_sums_taken ? Mat{} : user_sums, item_sums);
  // grad W1 = dz^T [u ; v] = [D^T mlp_user, E^T mlp_item]: two column blocks of the gradient. The
  // user side's GEMMs take the tables and weights in D's type (fp16 copies under --amp).
  const EmbedTables t = tables();
  const LinearParams first = layer(0);
  const bool h16 = user_sums.dtype == DType::F16;
  const Mat users_table{const_cast<void*>(h16 ? t.mlp_user_half : t.mlp_user), user_sums.dtype, cfg_.n_users, h};
  const Mat items_table{const_cast<float*>(t.mlp_item), DType::F32, cfg_.n_items, h};
  float* grad_w = grads + layout_.weight[0];
  be_->linear_weight_grad(user_sums, users_table, grad_w, in);
  be_->linear_weight_grad(item_sums, items_table, grad_w + h, in);
  // The tables' gradients: row u of mlp_user gets D[u] W1u (users outside the batch: zero).
  const EmbedGrads g = embed_grads(grads);
  be_->matmul_nn(user_sums, h16 ? first.w_half : first.w, in, Mat{g.mlp_user, DType::F32, cfg_.n_users, h});
  be_->matmul_nn(item_sums, first.w + h, in, Mat{g.mlp_item, DType::F32, cfg_.n_items, h});
}

std::pair<size_t, size_t> Network::accumulated_grads(const Activations& a, bool fused) const {
  if (fused) return {0, layout_.total};
  return {layout_.mf_user, a.first_layer == FirstLayer::Parts ? layout_.mlp_user : layout_.embedding_end};
}

FirstLayer Network::first_layer_for(int64_t rows) const {
  const std::string v = env_switch("NCF_FIRST_LAYER", {"parts", "rows", "auto"});
  if (v == "parts") return FirstLayer::Parts;
  if (v == "rows") return FirstLayer::Rows;
  return rows >= int64_t(cfg_.n_users) + int64_t(cfg_.n_items) ? FirstLayer::Parts : FirstLayer::Rows;
}

bool Network::fused_training_runs(Activations& a, const LossScaler* scaler, float* grads, double* loss_sum) const {
  // Asked with the matrices' shapes only, so that the first layer by parts never holds the MLP input.
  const std::vector<Dropout> drop(size_t(cfg_.hidden_layers()));
  return be_->train_pass(train_pass_args(a, 0, drop, 1.0f, scaler, grads, loss_sum, false), 0);
}

bool Network::prepare_training(Activations& a, const LossScaler* scaler, float* grads, double* loss_sum) const {
  if (fused_training_runs(a, scaler, grads, loss_sum)) {
    const std::vector<Dropout> drop(size_t(cfg_.hidden_layers()));
    train_pass_args(a, 0, drop, 1.0f, scaler, grads, loss_sum, true);  // what the fused op will use
    return true;
  }
  a.first_layer = first_layer_for(a.rows);
  if (a.first_layer == FirstLayer::Parts) {
    a.user_part();
    a.item_part();
    a.user_sums();
    a.item_sums();
  } else {
    a.mlp_in();
    a.d_mlp_in();
  }
  for (int l = 0; l < cfg_.hidden_layers(); ++l) {
    a.act(l);
    a.d_act(l);
    if (l < cfg_.hidden_layers() - 1) a.mask(l);  // the last layer's dropout is the output unit's
  }
  return false;
}

bool Network::prepare_forward_split(Activations& a, const float* user_part, const float* item_part) const {
  if (forward_split_fused(user_part, item_part, a.users.get(), a.items.get(), 0, a.logits.get())) return true;
  for (int l = 0; l < cfg_.hidden_layers(); ++l) a.act(l);
  return false;
}

void Network::first_layer_parts(Mat user_part, Mat item_part) const {
  const int half = cfg_.mlp_embed_dim();
  const LinearParams first = layer(0);
  const EmbedTables t = tables();
  // fp16 parts from the fp16 tables and weights (half the bytes read, Tensor Cores in fp16).
  const bool h16 = (user_part.empty() ? item_part : user_part).dtype == DType::F16;
  if (h16 && !half_) fail(ErrorCode::InvalidArgument, "first_layer_parts: fp16 parts need fp16 activations");
  const DType type = h16 ? DType::F16 : DType::F32;
  const void* users = h16 ? t.mlp_user_half : t.mlp_user;
  const void* items = h16 ? t.mlp_item_half : t.mlp_item;
  const size_t elem = dtype_size(type);
  const char* w = static_cast<const char*>(h16 ? first.w_half : static_cast<const void*>(first.w));
  if (!user_part.empty())
    be_->matmul_nt(Mat{const_cast<void*>(users), type, cfg_.n_users, half}, w, cfg_.layers[0], user_part);
  if (!item_part.empty()) {
    be_->matmul_nt(Mat{const_cast<void*>(items), type, cfg_.n_items, half}, w + elem * size_t(half), cfg_.layers[0],
                   item_part);
    be_->add_row(item_part, first.b, item_part, false);
  }
}

bool Network::forward_split_fused(const float* user_part, const float* item_part, const uint32_t* users,
                                  const uint32_t* items, int64_t n, float* logits) const {
  SplitNet s;
  s.user_part = user_part;
  s.item_part = item_part;
  s.width = cfg_.layers[1];
  s.tables = tables();
  for (int l = 1; l < cfg_.hidden_layers(); ++l) s.layers.push_back(layer(l));
  s.head = head();
  s.act = act_dtype();
  return be_->split_forward(s, users, items, n, logits);
}

void Network::forward_split(Activations& a, Mat user_part, Mat item_part, const uint32_t* users, const uint32_t* items,
                            int n, bool fused) const {
  if (fused && user_part.dtype == DType::F32 && item_part.dtype == DType::F32 &&
      forward_split_fused(user_part.f32(), item_part.f32(), users, items, n, a.logits.get()))
    return;
  const FirstLayerParts parts{user_part, users, item_part, items};
  forward_after_first_layer(a, users, items, 0, n, &parts);
}

void Network::forward_after_first_layer(Activations& a, const uint32_t* users, const uint32_t* items, int64_t r0,
                                        int64_t n, const FirstLayerParts* parts) const {
  const int L = cfg_.hidden_layers();
  std::vector<Mat> act;
  for (int l = 0; l < L; ++l) act.push_back(a.act(l).rows_from(r0, n));
  hidden_layers_forward(act, std::vector<Dropout>(size_t(L)), std::vector<UnitMask>(size_t(L)), parts);
  be_->head_forward(tables(), users, items, act.back(), head(), a.logits.get() + r0);
}

}  // namespace ncf
