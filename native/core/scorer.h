// Serving a trained NeuMF: scoring (user, item) pairs in batches, and top-K recommendation.
//
// Nothing that does not depend on the pair is recomputed per pair: the first MLP layer is
// W1 [u ; i] + b1 = W1u u + (W1i i + b1), and the item part W1i i + b1 of every item is computed
// when the scorer is built, and so is the user part W1u u of every user unless that table would
// pass ScorerOptions::user_parts_max_bytes. Pair scoring then starts from a gather-add of the two parts (no
// first-layer GEMM); full-catalog recommendation adds the user's part to every item's, runs the
// remaining layers and the GMF dot products, and selects the K best on the host, skipping the
// user's seen items when asked.
#pragma once
#include <memory>
#include <mutex>
#include <vector>

#include "backend.h"
#include "backend_array.h"
#include "model_config.h"
#include "network.h"

namespace ncf {

struct ScorerOptions {
  bool half = false;   // fp16 GEMMs for pair scoring (CUDA)
  bool tf32 = true;    // TF32 for fp32 GEMMs (CUDA)
  int max_rows = 1 << 16;  // pairs per forward pass
  // Largest table of precomputed per-user first-layer parts (n_users x layers[1] fp32); with a
  // larger one (or 0), pairs go through the full first layer instead.
  size_t user_parts_max_bytes = size_t(1) << 30;
  // Items per tile of full-catalog scoring; 0 picks one tile on a GPU and 512 on the CPU, where
  // each thread takes whole tiles through every layer, so a tile stays in that core's cache.
  int catalog_tile = 0;
};

class Scorer {
 public:
  Scorer(std::unique_ptr<Backend> backend, const ModelConfig& cfg, const std::vector<float>& params,
         const ScorerOptions& opt);
  ~Scorer();

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() { return *be_; }
  int max_rows() const { return opt_.max_rows; }

  // Probabilities sigmoid(logit) of n pairs given in host memory.
  void score(const uint32_t* users, const uint32_t* items, size_t n, float* out);
  // Pairs already in backend memory (for benchmarks without transfers); logits stay there.
  void score_resident(const uint32_t* users, const uint32_t* items, int n);
  // The seen items of each user (CSR, any order within a user), excluded on request.
  void set_seen(std::vector<uint32_t> offsets, std::vector<uint32_t> items);
  bool has_seen() const { return !seen_offsets_.empty(); }
  // Top-k items per user: out_items/out_scores are [n_users * k]; slots beyond the eligible
  // items hold UINT32_MAX and NaN. With candidates, only those items are ranked.
  void recommend(const uint32_t* users, size_t n_users, int k, bool exclude_seen, const uint32_t* candidates,
                 size_t n_candidates, uint32_t* out_items, float* out_scores);

  // Backend memory for resident scoring: room for max_rows pairs.
  uint32_t* resident_users() const { return act_->users.get(); }
  uint32_t* resident_items() const { return act_->items.get(); }

 private:
  void pair_logits(const uint32_t* users, const uint32_t* items, size_t n, float* out);  // mu_ held
  void forward_pairs(const uint32_t* users, const uint32_t* items, int n);  // logits into act_; mu_ held
  void catalog_logits(uint32_t user);  // into catalog_->logits; mu_ held
  void select_top_k(uint32_t user, const float* logits, const uint32_t* items, size_t n, int k, bool exclude_seen,
                    uint32_t* out_items, float* out_scores);

  std::unique_ptr<Backend> be_;
  ModelConfig cfg_;
  ScorerOptions opt_;
  std::mutex mu_;
  std::unique_ptr<Network> net_;       // fp16 activations when opt.half
  std::unique_ptr<Network> net_f32_;   // fp32 copy for the full-catalog path (only when half)
  std::unique_ptr<Activations> act_;   // pair scoring
  std::unique_ptr<Activations> catalog_;  // full catalog, fp32
  BackendMat item_part_;               // [n_items, layers[1]] = W1i i + b1
  BackendMat user_parts_;              // [n_users, layers[1]] = W1u u, or empty when too large
  BackendArray<float> user_part_;      // [layers[1]]: one user's, when user_parts_ is empty
  BackendArray<uint32_t> all_items_;   // 0 .. n_items - 1
  std::vector<uint32_t> seen_offsets_, seen_items_;
  std::vector<float> host_logits_;
};

}  // namespace ncf
