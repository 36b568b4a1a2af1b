// NeuMF on a backend: the parameter buffer, the fp16 weight copies used under --amp, and the
// forward pass built from the ops. Training (core/trainer) and serving (core/recommender) both
// drive a Network.
#pragma once
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "backend.h"
#include "backend_array.h"
#include "model_config.h"

namespace ncf {

// A training step's first layer, for batches of a.rows rows:
// - Rows: per row, the MLP input [mlp_user[u] ; mlp_item[v]] (embed_forward) through the layer's
//   GEMM, and back (linear_backward, embed_backward): ~2.5 KB of activations and gradients per row
//   under --amp at ml-20m's shape.
// - Parts: W1 [u ; v] + b1 = W1u u + (W1i v + b1), so the layer's output is gathered from
//   per-user and per-item parts computed once per step (first_layer_parts; gather_add_relu with
//   the dropout); backwards, the output gradient dz is summed per user (D) and per item (E)
//   (pair_row_sums), and grad W1u = D^T mlp_user, grad mlp_user = D W1u (and so for items) are
//   GEMMs over the users and items instead of the batch's rows. The same gradients, summed in
//   another order; no MLP input or its gradient per row. Its GEMMs run over n_users + n_items
//   rows, so it pays when a batch has more rows than that (ml-20m: 165K against 1M).
enum class FirstLayer { Rows, Parts };

// Per-row working memory for up to `rows` rows: sample arrays, activations and their gradients.
// Activations are fp16 under --amp, fp32 otherwise (no GMF values are stored: the output unit
// forms them from the table rows). The matrices are
// allocated on first use (thread-safe), since the fused kernels need only some of them: training
// the MLP input, each layer's output and output gradient; evaluation and serving none. So a GPU
// that runs them never holds the rest.
class Activations {
 public:
  Activations(Backend& be, const ModelConfig& cfg, DType dtype, int rows);

  int rows = 0;
  BackendArray<uint32_t> users, items;
  BackendArray<uint32_t> positions;  // training: each row's epoch position minus the batch's first
  BackendArray<float> labels, logits;
  // How train_pass runs the first layer (Network::first_layer_for chooses).
  FirstLayer first_layer = FirstLayer::Rows;
  // Whether users[] is in ascending order (sample_batch's batches are; pair_row_sums uses it).
  bool users_ascending = false;

  DType dtype() const { return dtype_; }  // the activations' type
  Mat mlp_in();       // [rows, layers[0]]
  Mat act(int l);     // [rows, layers[l + 1]]: the output of hidden layer l
  UnitMask mask(int l);  // the live units of act(l) (training; empty where the backend reads y)
  Mat d_mlp_in();
  Mat d_act(int l);
  // The first layer by parts: its per-user and per-item parts and the sums of its output gradient
  // per user (all three in the activations' type) and per item (fp32), [n_users or n_items,
  // layers[1]]. (fp16 per-user sums: half the bytes of the largest of them at ml-20m's shape.)
  Mat user_part();
  Mat item_part();
  Mat user_sums();
  Mat item_sums();

 private:
  Mat get(BackendMat& m, int64_t cols, DType dtype);
  Mat get(BackendMat& m, int64_t rows, int64_t cols, DType dtype);
  Backend* be_;
  DType dtype_;
  std::vector<int> widths_;  // layers
  int64_t n_users_, n_items_;
  std::mutex mu_;
  BackendMat mlp_in_, d_mlp_in_;
  std::vector<BackendMat> act_, d_act_;
  std::vector<BackendArray<uint8_t>> mask_;
  BackendMat user_part_, item_part_, user_sums_, item_sums_;
};

class Network {
 public:
  Network(Backend& be, const ModelConfig& cfg, bool half_activations);

  Backend& backend() const { return *be_; }
  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  DType act_dtype() const { return half_ ? DType::F16 : DType::F32; }
  float* params() const { return params_.get(); }

  void upload_params(const std::vector<float>& host);
  std::vector<float> download_params() const;
  // Refreshes the fp16 copies of the hidden-layer weights and biases after the fp32 ones changed.
  void refresh_half();
  // With fp16 activations, the fp16 copy of the MLP tables that adam_step keeps current (the
  // embeddings' gather reads it); empty otherwise.
  HalfMirror table_mirror() const;

  EmbedTables tables() const;
  LinearParams layer(int l) const;
  HeadParams head() const;
  // Pointers into a buffer laid out like the parameters (the gradients).
  EmbedGrads embed_grads(float* grads) const;

  // Hidden layers and head without dropout for the first n rows of a.mlp_in() (already filled by
  // embed_forward), the GMF values formed by head_forward from the pairs (users[i], items[i]);
  // logits into a.logits.
  void forward_from_embeddings(Activations& a, const uint32_t* users, const uint32_t* items, int n) const;
  // Full forward pass for n (user, item) pairs given in backend memory.
  void forward(Activations& a, const uint32_t* users, const uint32_t* items, int n) const;

  // A training step's data path for the n sampled rows in a.users / a.items / a.labels: forward
  // with the given dropout per layer, sigmoid-BCE loss (added to *loss_sum) and every parameter's
  // gradient into `grads` (laid out like the parameters; the caller zeroes the range
  // accumulated_grads names, the rest is overwritten). Runs the
  // backend's fused train_pass and the weight-gradient GEMMs where it has one (and `fused`),
  // else the chain of ops. Returns whether the fused form ran.
  bool train_pass(Activations& a, int n, const std::vector<Dropout>& dropout, float grad_scale,
                  const LossScaler* scaler, float* grads, double* loss_sum, bool fused = true) const;
  // The parameters [first, second) whose gradients train_pass adds up by atomics (n > 0): the
  // caller zeroes only them; the rest it writes. The GMF tables' (the output unit's), and per row
  // the MLP tables' too; the fused op's, all.
  std::pair<size_t, size_t> accumulated_grads(const Activations& a, bool fused) const;
  // Allocates in `a` what train_pass will use (the fused kernel's matrices, or the chain's as
  // well), so that the memory is taken, and counted, before the first step. Returns whether the
  // fused kernel will run. Also sets a.first_layer (first_layer_for).
  bool prepare_training(Activations& a, const LossScaler* scaler, float* grads, double* loss_sum) const;
  // Whether the backend's fused train_pass would run for `a` (allocates nothing).
  bool fused_training_runs(Activations& a, const LossScaler* scaler, float* grads, double* loss_sum) const;
  // The first layer for training batches of `rows` rows: Parts when rows >= n_users + n_items, else
  // Rows; NCF_FIRST_LAYER=parts or =rows in the environment forces one (to compare them).
  FirstLayer first_layer_for(int64_t rows) const;
  // The same for forward_split with these parts.
  bool prepare_forward_split(Activations& a, const float* user_part, const float* item_part) const;

  // The first layer split by its input, W1 [u ; i] + b1 = W1u u + (W1i i + b1), precomputed for
  // every user and item: user_part [n_users, layers[1]] = mlp_user W1u^T, item_part [n_items,
  // layers[1]] = mlp_item W1i^T + b1. Either may be empty (not computed). fp32 parts come from
  // the fp32 weights; fp16 parts (fp16 activations only) from the fp16 copies of the tables and
  // weights, as the training step's forward uses them.
  void first_layer_parts(Mat user_part, Mat item_part) const;
  // The forward pass (no dropout) for n pairs with the first layer taken from those parts: no
  // first-layer GEMM and no MLP input per pair (evaluation scores 101 items per user this way).
  // Runs the backend's fused split_forward when it has one for this network (and `fused`, and
  // the parts are fp32), else the chain of ops through a's activations. The parts are fp32, or
  // fp16 copies (to_half) when the activations are fp16.
  void forward_split(Activations& a, Mat user_part, Mat item_part, const uint32_t* users, const uint32_t* items, int n,
                     bool fused = true) const;
  // Only the fused form: false (nothing done) where the backend has none for this network.
  bool forward_split_fused(const float* user_part, const float* item_part, const uint32_t* users,
                           const uint32_t* items, int64_t n, float* logits) const;
  // With the first layer's output in rows [r0, r0 + n) of a.act[0] (or, with parts, from them):
  // the remaining layers and the output unit (GMF values from the pairs (users[i], items[i]),
  // i < n), into a.logits[r0 ..].
  void forward_after_first_layer(Activations& a, const uint32_t* users, const uint32_t* items, int64_t r0, int64_t n,
                                 const FirstLayerParts* parts = nullptr) const;

 private:
  Backend* be_;
  ModelConfig cfg_;
  ParamLayout layout_;
  bool half_;
  BackendArray<float> params_;
  std::vector<BackendArray<uint16_t>> w_half_, b_half_;
  BackendArray<uint16_t> tables_half_;  // fp16 mlp_user then mlp_item (with fp16 activations)

  // Hidden layers 1 .. L - 1 forward from act[0] (act: each layer's output rows), each with its
  // dropout and live-unit mask (entry 0 unused): the backend's hidden_forward for the leading
  // layers it takes, linear_forward for the rest. With parts, act[0] is first gather_add_relu's
  // from them (with drop[0] and masks[0]), unless the backend's hidden_forward takes them as it
  // reads act[0].
  void hidden_layers_forward(const std::vector<Mat>& act, const std::vector<Dropout>& drop, const std::vector<UnitMask>& masks,
                             const FirstLayerParts* parts = nullptr) const;
  // The first layer's backward by parts from the gradient at its output a.d_act(0) (Parts above),
  // taken through its ReLU and dropout (first_layer) by pair_row_sums, unless null (then
  // d_act(0) is past them already: one hidden layer, whose dropout is the output unit's, or
  // the backend's hidden_backward took it through); user_sums_taken: hidden_backward also wrote
  // the per-user sums.
  void first_layer_backward_by_parts(Activations& a, int n, const LayerBelow* first_layer, bool user_sums_taken,
                                     float* grads) const;
  TrainPass train_pass_args(Activations& a, int n, const std::vector<Dropout>& dropout, float grad_scale,
                            const LossScaler* scaler, float* grads, double* loss_sum, bool allocate) const;
};

}  // namespace ncf
