#include "scorer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "errors.h"

namespace ncf {

namespace {
inline float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }
}  // namespace

Scorer::Scorer(std::unique_ptr<Backend> backend, const ModelConfig& cfg, const std::vector<float>& params,
               const ScorerOptions& opt)
    : be_(std::move(backend)), cfg_(cfg), opt_(opt) {
  cfg_.validate();
  if (opt_.max_rows < 1) fail(ErrorCode::InvalidArgument, "max rows must be positive");
  be_->set_tf32(opt_.tf32);
  net_ = std::make_unique<Network>(*be_, cfg_, opt_.half);
  net_->upload_params(params);
  const Network* f32 = net_.get();
  if (opt_.half) {
    net_f32_ = std::make_unique<Network>(*be_, cfg_, false);
    net_f32_->upload_params(params);
    f32 = net_f32_.get();
  }
  act_ = std::make_unique<Activations>(*be_, cfg_, net_->act_dtype(), opt_.max_rows);

  // The item part of the first layer, once: W1[:, half:] applied to every item's MLP embedding, plus b1.
  const int l1 = cfg_.layers[1];
  const uint32_t I = cfg_.n_items;
  catalog_ = std::make_unique<Activations>(*be_, cfg_, DType::F32, int(I));
  item_part_ = BackendMat(*be_, I, l1, DType::F32);
  if (size_t(cfg_.n_users) * size_t(l1) * sizeof(float) <= opt_.user_parts_max_bytes)
    user_parts_ = BackendMat(*be_, cfg_.n_users, l1, DType::F32);
  else
    user_part_ = BackendArray<float>(*be_, size_t(l1));
  f32->first_layer_parts(user_parts_.mat, item_part_.mat);
  std::vector<uint32_t> iota(I);
  std::iota(iota.begin(), iota.end(), 0u);
  all_items_ = BackendArray<uint32_t>(*be_, iota.data(), I);
  host_logits_.resize(std::max<size_t>(I, size_t(opt_.max_rows)));
  if (opt_.catalog_tile <= 0) opt_.catalog_tile = be_->info().name == "cpu" ? 512 : int(I);
  be_->sync();
}

Scorer::~Scorer() = default;

void Scorer::score(const uint32_t* users, const uint32_t* items, size_t n, float* out) {
  std::lock_guard<std::mutex> lock(mu_);
  pair_logits(users, items, n, out);
  for (size_t i = 0; i < n; ++i) out[i] = sigmoid(out[i]);
}

void Scorer::pair_logits(const uint32_t* users, const uint32_t* items, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i)
    if (users[i] >= cfg_.n_users || items[i] >= cfg_.n_items)
      fail(ErrorCode::InvalidArgument, "pair " + std::to_string(i) + " (" + std::to_string(users[i]) + ", " +
                                           std::to_string(items[i]) + ") is outside the model's " +
                                           std::to_string(cfg_.n_users) + " users and " +
                                           std::to_string(cfg_.n_items) + " items");
  const size_t chunk = size_t(opt_.max_rows);
  for (size_t off = 0; off < n; off += chunk) {
    const int m = int(std::min(chunk, n - off));
    be_->upload(act_->users.get(), users + off, sizeof(uint32_t) * size_t(m));
    be_->upload(act_->items.get(), items + off, sizeof(uint32_t) * size_t(m));
    forward_pairs(act_->users.get(), act_->items.get(), m);
    be_->download(out + off, act_->logits.get(), sizeof(float) * size_t(m));
  }
}

void Scorer::score_resident(const uint32_t* users, const uint32_t* items, int n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n > opt_.max_rows) fail(ErrorCode::InvalidArgument, "batch larger than the scorer's max rows");
  forward_pairs(users, items, n);
}

void Scorer::forward_pairs(const uint32_t* users, const uint32_t* items, int n) {
  if (user_parts_.mat.empty()) net_->forward(*act_, users, items, n);
  else net_->forward_split(*act_, user_parts_.mat, item_part_.mat, users, items, n);
}

void Scorer::set_seen(std::vector<uint32_t> offsets, std::vector<uint32_t> items) {
  std::lock_guard<std::mutex> lock(mu_);
  if (offsets.size() != size_t(cfg_.n_users) + 1 || offsets.back() != items.size())
    fail(ErrorCode::InvalidArgument, "seen items must be a CSR over the model's users");
  for (uint32_t u = 0; u < cfg_.n_users; ++u) std::sort(items.begin() + offsets[u], items.begin() + offsets[u + 1]);
  seen_offsets_ = std::move(offsets);
  seen_items_ = std::move(items);
}

void Scorer::catalog_logits(uint32_t user) {
  const Network& net = net_f32_ ? *net_f32_ : *net_;
  const int half = cfg_.mlp_embed_dim();
  const int64_t I = cfg_.n_items;
  Activations& a = *catalog_;
  // User part of layer 1: precomputed, or computed once for this user.
  const float* user_part = user_parts_.mat.empty() ? user_part_.get() : user_parts_.mat.f32() + size_t(user) * size_t(cfg_.layers[1]);
  if (user_parts_.mat.empty()) {
    const Mat user_row{const_cast<float*>(net.tables().mlp_user + size_t(user) * size_t(half)), DType::F32, 1, half};
    be_->matmul_nt(user_row, net.layer(0).w, cfg_.layers[0], Mat{user_part_.get(), DType::F32, 1, cfg_.layers[1]});
  }
  be_->fill_u32(a.users.get(), user, size_t(I));
  if (!user_parts_.mat.empty() &&
      net.forward_split_fused(user_parts_.mat.f32(), item_part_.mat.f32(), a.users.get(), all_items_.get(), I, a.logits.get()))
    return;
  be_->parallel_tiles(I, opt_.catalog_tile, [&](int64_t t0, int64_t t1) {
    const int64_t n = t1 - t0;
    // z1 = relu(item part + user part) for this tile of items, then the rest of the network.
    be_->add_row(item_part_.mat.rows_from(t0, n), user_part, a.act(0).rows_from(t0, n), true);
    net.forward_after_first_layer(a, a.users.get(), all_items_.get() + t0, t0, n);
  });
}

void Scorer::select_top_k(uint32_t user, const float* logits, const uint32_t* items, size_t n, int k,
                          bool exclude_seen, uint32_t* out_items, float* out_scores) {
  std::vector<uint32_t> idx;
  idx.reserve(n);
  const uint32_t* sb = nullptr;
  const uint32_t* se = nullptr;
  if (exclude_seen) {
    sb = seen_items_.data() + seen_offsets_[user];
    se = seen_items_.data() + seen_offsets_[user + 1];
  }
  for (uint32_t i = 0; i < n; ++i) {
    if (exclude_seen && std::binary_search(sb, se, items ? items[i] : i)) continue;
    if (std::isnan(logits[i])) continue;
    idx.push_back(i);
  }
  const size_t take = std::min(idx.size(), size_t(k));
  // Highest logit first; equal logits by lower item index.
  auto better = [&](uint32_t a, uint32_t b) {
    if (logits[a] != logits[b]) return logits[a] > logits[b];
    return (items ? items[a] : a) < (items ? items[b] : b);
  };
  std::partial_sort(idx.begin(), idx.begin() + long(take), idx.end(), better);
  for (int j = 0; j < k; ++j) {
    if (size_t(j) < take) {
      out_items[j] = items ? items[idx[size_t(j)]] : idx[size_t(j)];
      out_scores[j] = sigmoid(logits[idx[size_t(j)]]);
    } else {
      out_items[j] = UINT32_MAX;
      out_scores[j] = NAN;
    }
  }
}

void Scorer::recommend(const uint32_t* users, size_t n_users, int k, bool exclude_seen, const uint32_t* candidates,
                       size_t n_candidates, uint32_t* out_items, float* out_scores) {
  if (k < 1) fail(ErrorCode::InvalidArgument, "k must be at least 1");
  if (exclude_seen && !has_seen())
    fail(ErrorCode::InvalidArgument, "excluding seen items needs the dataset's interactions (load the model with its data)");
  for (size_t c = 0; c < n_candidates; ++c)
    if (candidates[c] >= cfg_.n_items)
      fail(ErrorCode::InvalidArgument, "candidate item " + std::to_string(candidates[c]) + " is outside the model's " +
                                           std::to_string(cfg_.n_items) + " items");
  for (size_t q = 0; q < n_users; ++q) {
    const uint32_t u = users[q];
    if (u >= cfg_.n_users)
      fail(ErrorCode::InvalidArgument, "user " + std::to_string(u) + " is outside the model's " +
                                           std::to_string(cfg_.n_users) + " users");
    std::lock_guard<std::mutex> lock(mu_);
    if (candidates) {
      std::vector<uint32_t> us(n_candidates, u);
      std::vector<float> logit(n_candidates);
      pair_logits(us.data(), candidates, n_candidates, logit.data());
      select_top_k(u, logit.data(), candidates, n_candidates, k, exclude_seen, out_items + q * size_t(k),
                   out_scores + q * size_t(k));
      continue;
    }
    catalog_logits(u);
    be_->download(host_logits_.data(), catalog_->logits.get(), sizeof(float) * cfg_.n_items);
    select_top_k(u, host_logits_.data(), nullptr, cfg_.n_items, k, exclude_seen, out_items + q * size_t(k),
                 out_scores + q * size_t(k));
  }
}

}  // namespace ncf
