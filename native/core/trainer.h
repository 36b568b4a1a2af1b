// Data-parallel NeuMF training on one backend: the epoch loop over the op vocabulary, Adam,
// loss scaling under --amp, and the HR@K / NDCG evaluation. Ranks of a distributed job each run
// a Trainer; the global batch is split evenly across them, gradients are summed over the
// communicator, and every rank applies the same Adam step. Without a communicator it is the
// single-process case of the same algorithm.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "backend.h"
#include "backend_array.h"
#include "communicator.h"
#include "eval_lists.h"
#include "model_config.h"
#include "network.h"
#include "thread_pool.h"

namespace ncf {

struct TrainOptions {
  int batch_size = 1048576;  // global, split across ranks
  int negatives = 4;
  bool verify_negatives = false;
  double lr = 0.0045, beta1 = 0.25, beta2 = 0.5, eps = 1e-8;
  uint64_t seed = 0;
  bool amp = false;
  float static_loss_scale = 0.0f;  // 0: dynamic loss scaling
  bool tf32 = true;
  int valid_users_per_batch = 5000;
  int topk = 10;
  int valid_negatives = 100;
  bool step_graphs = false;  // each step as one CUDA Graph (the reference's --xla; CUDA, one process)
  bool autotune = false;     // kernel forms timed on the first steps, the fastest kept (CUDA)
};

// The prepared dataset in host memory (see lib/data/cache.ts for the files).
struct HostDataset {
  const uint32_t* offsets = nullptr;         // [n_users + 1]
  const uint32_t* items = nullptr;           // [n_pos], sorted within each user
  const uint32_t* test_items = nullptr;      // [n_users]
  const uint32_t* test_negatives = nullptr;  // [n_users * stored_negatives]
  int stored_negatives = 0;
  uint32_t n_users = 0, n_items = 0;
  uint64_t n_pos = 0;
};

struct EpochStats {
  uint64_t samples = 0;  // global samples trained
  uint64_t steps = 0;
  double loss = 0.0;     // mean BCE over the epoch's samples
  double seconds = 0.0;
  float loss_scale = 1.0f;
};

struct EvalStats {
  double hr = 0.0, ndcg = 0.0;
  uint64_t users = 0;
  double seconds = 0.0;
};

// Called after each step with (steps done, steps in epoch); returning false stops the epoch.
using ProgressFn = std::function<bool(uint64_t, uint64_t)>;

class Trainer {
 public:
  Trainer(std::unique_ptr<Backend> backend, const ModelConfig& cfg, const TrainOptions& opt, const HostDataset& data,
          std::unique_ptr<Communicator> comm);
  ~Trainer();

  EpochStats run_epoch(uint32_t epoch, const ProgressFn& progress);
  EvalStats evaluate();

  std::vector<float> params() const { return net_->download_params(); }
  void set_params(const std::vector<float>& p) { net_->upload_params(p); }
  // Adam moments and step count, for --resume.
  void optimizer_state(std::vector<float>* m, std::vector<float>* v, uint64_t* step) const;
  void set_optimizer_state(const std::vector<float>& m, const std::vector<float>& v, uint64_t step);

  const ParamLayout& layout() const { return net_->layout(); }
  Backend& backend() { return *be_; }
  uint64_t seed() const { return opt_.seed; }
  uint64_t samples_per_epoch() const { return data_.n_pos * uint64_t(1 + opt_.negatives); }
  uint64_t steps_per_epoch() const;
  uint64_t fingerprint() const { return fingerprint_; }
  // Whether steps and evaluations run the backend's fused kernels (else the chains of ops); a GPU
  // that cannot launch one falls back to the chain and says so on stderr.
  bool fused_training() const { return fused_training_; }
  // How the op chain's steps run the first layer (Network::first_layer_for).
  FirstLayer first_layer() const { return train_act_->first_layer; }
  bool fused_evaluation() const { return fused_evaluation_; }
  // Whether each step after the first of its shape runs as one CUDA Graph (Backend::run_step).
  bool step_graphs() const { return step_graphs_; }
  // Whether the backend times its kernel forms on the first steps and batches (Backend::set_autotune).
  bool autotune() const { return autotune_; }
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int world_size() const { return comm_ ? comm_->size() : 1; }
  std::string comm_description() const { return comm_ ? comm_->describe() : "none"; }

 private:
  void step(const SampleStream& s, uint64_t start, int n, uint64_t global_len);
  void check_same_data_on_all_ranks();

  std::unique_ptr<Backend> be_;
  std::unique_ptr<Communicator> comm_;
  ModelConfig cfg_;
  TrainOptions opt_;
  ThreadPool host_pool_;
  std::unique_ptr<Network> net_;
  HostDataset data_;  // counts only; the arrays live in backend memory below
  uint64_t fingerprint_ = 0;
  bool fused_training_ = false, fused_evaluation_ = false;
  bool step_graphs_ = false;
  bool autotune_ = false;
  // Across ranks, after an epoch or an evaluation: the same kernel forms on every rank (Backend::agree_autotune).
  void agree_autotune();

  BackendArray<uint32_t> d_offsets_, d_items_, d_users_;
  TrainArrays train_;
  EvalLists eval_host_;
  BackendArray<uint32_t> eval_users_, eval_items_;
  BackendArray<uint8_t> eval_masked_;
  BackendMat eval_user_part_, eval_item_part_;  // the first layer's parts (Network::first_layer_parts)
  BackendMat eval_user_half_, eval_item_half_;  // their fp16 copies, for the op chain under --amp

  BackendArray<float> grads_, m_, v_;
  uint64_t adam_step_ = 0;
  BackendArray<float> scale_;
  BackendArray<int32_t> found_inf_, good_steps_;
  LossScaler scaler_;
  BackendArray<double> loss_sum_;
  BackendArray<EvalSums> eval_sums_;

  std::unique_ptr<Activations> train_act_, eval_act_;
};

}  // namespace ncf
