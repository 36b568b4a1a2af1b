// The CUDA backend: every op of core/backend.h as a kernel or a cuBLASLt GEMM on one stream of
// one GPU. The op families live in files named like their CPU twins (embed.cu, linear.cu,
// head.cu, adam.cu, sample.cu, eval.cu, parts.cu), and fused kernels with no CPU file: their
// CPU reference is the chain of ops they replace (split_forward.cu, train_pass.cu).
// drelu_check.cu decides whether linear_backward may use cuBLASLt's DRELU(_BGRAD) epilogue.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "../core/backend.h"
#include "../core/backend_array.h"
#include "cuda_common.cuh"
#include "form_tuner.cuh"
#include "gemm.cuh"
#include "op_times.cuh"
#include "step_graph.cuh"

namespace ncf::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  BackendInfo info() const override;
  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }

  void* alloc(size_t bytes) override;
  void release(void* p) override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void sync() override;
  // With NCF_CUDA_OP_TIMES=1, the table of each op's GPU time since the last phase (op_times.cuh).
  void phase_end(const char* phase) override;
  // Steps as CUDA Graphs when asked (--xla) or with NCF_CUDA_GRAPH=1 (step_graph.cuh).
  bool set_step_graphs(bool on) override;
  void run_step(uint64_t shape, const std::function<void()>& ops) override;
  void run_eval_batch(uint64_t shape, const std::function<void()>& ops) override;
  // Kernel forms timed on the run's steps and batches when asked (--autotune) or with
  // NCF_CUDA_AUTOTUNE=1 (form_tuner.cuh).
  bool set_autotune(bool on, int rank, int ranks) override;
  void agree_autotune(const std::function<void(double*, size_t)>& sum_over_ranks) override;
  std::string autotune_report() const override;
  size_t peak_memory() const override { return peak_; }
  size_t device_memory_peak() const override { return device_peak_; }
  void set_tf32(bool on) override { gemm_->set_tf32(on); }
  void set_fused(bool on) override { fused_ = on; }
  void set_max_blocks(int blocks) override { max_blocks_ = blocks; }
  // Live-unit masks feed the DRELU_BGRAD epilogue or the masking pass (1/16 of an fp16 layer's
  // bytes, where the pass would read the layer's output without them).
  bool wants_unit_masks() const override { return true; }

  void sample_batch(const TrainArrays& d, const SampleStream& s, uint64_t pos0, int n, uint32_t* users,
                    uint32_t* items, float* labels, uint32_t* positions) override;
  void embed_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp_in) override;
  void embed_backward(const uint32_t* users, const uint32_t* items, Mat d_mlp_in, const EmbedGrads& g) override;
  void linear_forward(Mat x, const LinearParams& p, const Dropout& d, Mat y, UnitMask mask) override;
  void relu_dropout_backward(Mat dy, Mat y, UnitMask mask, const Dropout& d, float* grad_b) override;
  void linear_backward(Mat dz, Mat x, const LinearParams& p, Mat dx, float* grad_w, const LayerBelow* below) override;
  // Whether linear_backward takes the layer below's mask in the GEMM's epilogue (DRELU_BGRAD, or
  // DRELU with NCF_CUDA_DRELU=mask) for activations of type t (checked once, see drelu_check.cu).
  bool drelu_epilogue_ok(DType t);
  void linear_weight_grad(Mat dz, Mat x, float* grad_w, int ld_grad) override;
  int hidden_forward(const std::vector<Mat>& act, const std::vector<LinearParams>& layers,
                     const std::vector<Dropout>& drop, const std::vector<UnitMask>& masks,
                     const FirstLayerParts* parts) override;
  HiddenBackwardRun hidden_backward(const std::vector<Mat>& dz, const std::vector<LinearParams>& layers,
                                    const std::vector<LayerBelow>& below, const UserRowSums* user_sums) override;
  bool train_pass(const TrainPass& p, int n) override;
  void head_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp, const HeadParams& p,
                    float* logits) override;
  void head_forward_backward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp,
                             const float* labels, const HeadParams& p, float grad_scale, const LossScaler* scaler,
                             Mat d_mlp, const LayerBelow* below, const EmbedGrads& g_tables, float* grad_w,
                             float* grad_b, double* loss_sum) override;
  void overflow_check(const float* grads, size_t n, const LossScaler& scaler) override;
  void adam_step(float* params, const float* grads, float* m, float* v, size_t n, const AdamScalars& s,
                 const float* loss_scale, const int32_t* skip_if, const HalfMirror& mirror) override;
  void update_loss_scale(const LossScaler& scaler) override;
  void to_half(const float* src, void* dst, size_t n) override;
  void from_half(const void* src, float* dst, size_t n) override;
  void eval_rank(const float* logits, const uint8_t* masked, int n_users, int list_len, int k,
                 EvalSums* sums) override;
  void matmul_nt(Mat a, const void* w, int ldw, Mat out) override;
  void matmul_nn(Mat a, const void* w, int ldw, Mat out) override;
  void add_row(Mat x, const float* row, Mat y, bool relu) override;
  void gather_add_relu(Mat a, const uint32_t* ia, Mat b, const uint32_t* ib, const Dropout& d, Mat out,
                       UnitMask mask) override;
  void pair_row_sums(Mat dz, const LayerBelow* layer, const uint32_t* users, bool users_ascending,
                     const uint32_t* items, Mat user_sums, Mat item_sums) override;
  bool split_forward(const SplitNet& net, const uint32_t* users, const uint32_t* items, int64_t n,
                     float* logits) override;
  void fill_u32(uint32_t* dst, uint32_t value, size_t n) override;
  void philox_fill(uint64_t key, const uint32_t* counters, uint32_t* out, size_t n_blocks) override;
  void parallel_tiles(int64_t n, int64_t tile, const std::function<void(int64_t, int64_t)>& fn) override {
    for (int64_t t0 = 0; t0 < n; t0 += tile) fn(t0, t0 + tile < n ? t0 + tile : n);
  }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
  OpTimes op_times_;  // NCF_CUDA_OP_TIMES=1: each op's GPU time, reported at phase_end
  StepGraph step_graph_;  // training steps as CUDA Graphs
  std::unique_ptr<GemmRunner> gemm_;
  std::string name_;
  size_t total_memory_ = 0;
  int cc_major_ = 0;              // compute capability
  size_t shared_optin_ = 0;       // the device's opt-in limit of dynamic shared memory per block
  bool fused_ = false;            // fused kernels where they apply (off unless NCF_CUDA_FUSED=1)
  int sm_count_ = 1;
  size_t shared_per_sm_ = 0;     // shared memory per multiprocessor
  bool split_opted_in_[2] = {false, false};  // split_forward's kernels (fp16, fp32) opted in to shared memory
  bool train_opted_in_[2] = {false, false};  // train_pass's kernels
  // hidden_forward's and hidden_backward's kernels: the forms the run asked for
  // (NCF_CUDA_HIDDEN_FORWARD=1 or =one-buffer, NCF_CUDA_HIDDEN_BACKWARD=1; off until a GPU run
  // measures them), the forms in effect (those, or a tuner's for the step or batch being
  // launched), whether each kernel launched (false for good after the GPU refused one), whether
  // each is opted in to shared memory, and how many times each op ran fused (reported at the end;
  // the forward one's also with one staging buffer).
  KernelForms forms_asked_, forms_;
  bool hidden_forward_ok_ = true, hidden_backward_ok_ = true;
  bool hidden_forward_opted_in_[2] = {false, false}, hidden_backward_opted_in_[2] = {false, false};  // [fp16, fp32]
  int64_t hidden_forward_runs_ = 0, hidden_backward_runs_ = 0, hidden_one_buffer_runs_ = 0;
  // With --autotune: the forms timed on training steps (all six) and on evaluation batches (the
  // three without hidden_backward: evaluation has no backward pass); null without.
  std::unique_ptr<FormTuner> step_tuner_, eval_tuner_;
  int tune_rank_ = 0, tune_ranks_ = 1;  // this process's rank and the ranks (decisions agreed across them)
  // Calls run(key) with the forms `tuner` gives for a run of `shape` rows in effect (the forms asked
  // for without one; key: shape, and the forms with a tuner), and tells the tuner whether they ran.
  void run_with_forms(FormTuner* tuner, uint64_t shape, const std::function<void(uint64_t key)>& run);
  // hidden_backward also takes dz[0]'s per-user sums (when it runs, for batches in user order);
  // NCF_CUDA_HIDDEN_SUMS=0: pair_row_sums does. How many runs took them; the blocks' edge slots.
  bool hidden_sums_ = true;
  int64_t hidden_sums_runs_ = 0;
  // hidden_forward also takes the first layer from its parts (FirstLayerParts) where it runs;
  // NCF_CUDA_HIDDEN_PARTS=0: gather_add_relu does. How many runs took it.
  bool hidden_parts_ = true;
  int64_t hidden_parts_runs_ = 0;
  BackendArray<unsigned char> edge_scratch_;
  // The most blocks of every grid-stride or persistent kernel (set_max_blocks, or
  // NCF_CUDA_MAX_BLOCKS; 0: no cap); capped(b) applies it to b blocks, grid(n) to blocks_for's
  // count for n items, and persistent_blocks() to one block per multiprocessor.
  int max_blocks_ = 0;
  bool graphs_asked_ = false, autotune_asked_ = false;  // NCF_CUDA_GRAPH=1, NCF_CUDA_AUTOTUNE=1 (besides the trainer's options)
  unsigned capped(int64_t blocks) const { return unsigned(max_blocks_ > 0 && blocks > max_blocks_ ? max_blocks_ : blocks); }
  unsigned grid(int64_t n, int per_block = kThreads) const { return capped(blocks_for(n, per_block)); }
  int persistent_blocks() const { return int(capped(sm_count_)); }
  // The layer below's masking in linear_backward's input-gradient GEMM: off (a masking pass, the
  // default), the DRELU_BGRAD epilogue (NCF_CUDA_DRELU=1), or the DRELU epilogue and a column-sum
  // pass for the bias gradient (NCF_CUDA_DRELU=mask).
  enum class DreluMode { Off, Bgrad, Mask };
  DreluMode drelu_mode_ = DreluMode::Off;
  int drelu_state_[2] = {-1, -1};  // the mode's epilogue (fp32, fp16): unchecked, off, on
  bool group_batches_ = true;      // sample_batch groups rows by user; false with NCF_CUDA_GROUPED=0
  bool sums_by_user_ = true;       // pair_row_sums' warp per user for sorted rows; NCF_CUDA_SUMS_BY_USER=0: atomics
  bool item_sort_ = true;          // with it, the per-item sums over the rows sorted by item;
                                   // NCF_CUDA_ITEM_SORT=0: atomics from the per-user kernel
  bool half_math_ = true;          // fp16 gather_add_relu and dropout pass in half2 arithmetic
                                   // (relu_dropout8_half); NCF_CUDA_HALF_MATH=0: through fp32
  // Whether those fp16 kernels take the half2 path for dropout d: half_math_ and a scale exact in
  // fp16 (half_dropout_ok). Decided here, once per launch, for both kernels.
  bool half_math(const Dropout& d) const;
  bool head_dropout_ = true;       // the output unit's kernel applies the last layer's dropout from keep
                                   // bits; NCF_CUDA_HEAD_DROPOUT=0: a dropout pass over that layer first
  BackendArray<unsigned char> bgrad_half_;  // the epilogue's fp16 bias gradient
  BackendArray<unsigned char> sample_scratch_;  // sample_batch's counting sort
  BackendArray<unsigned char> sums_scratch_;    // pair_row_sums: users' row ranges and the item sort, or fp32 sums
  BackendArray<unsigned char> keep_bits_;       // head_forward_backward: the last layer's dropout
  BackendArray<uint32_t> scan_sums_;            // exclusive_scan's tile sums
  // y = dropout(relu(y + bias)) in place (bias may be null: then dropout alone), with y's live
  // units into mask when it is not empty: linear_forward's pass after a GEMM without the bias
  // epilogue, and head_forward_backward's dropout for widths its kernel does not draw for.
  void bias_relu_dropout(Mat y, const float* bias, const Dropout& d, UnitMask mask);
  // start = the exclusive prefix sums of count[0..n) (a block per 4096 entries; sample.cu).
  void exclusive_scan(const uint32_t* count, uint32_t n, uint32_t* start);
  // A counting sort's placement of keys[0..n) in [0, n_keys): count[k] = key k's entries, start
  // = their exclusive scan, and order[start[k] + c] = i for the entries i of key k, c from an
  // atomic cursor (any order within a key); sorted_keys[slot] = the slot's key unless null.
  // count, cursor and start are [n_keys] scratch (zeroed here); order and sorted_keys [n].
  void counting_sort(const uint32_t* keys, int64_t n, uint32_t n_keys, uint32_t* count, uint32_t* cursor, uint32_t* start,
                     uint32_t* order, uint32_t* sorted_keys);
  GemmCall input_grad_gemm(Mat dz, const LinearParams& p, Mat dx) const;
  // dx = dz W through the layer below's mask in the DRELU_BGRAD epilogue (or the DRELU epilogue,
  // then dx's column sums), its bias gradient into below.grad_b; false (nothing done) where
  // cuBLASLt has no algorithm for it.
  bool input_grad_drelu(Mat dz, const LinearParams& p, Mat dx, const LayerBelow& below);
  // sums[j] += the sum of x's column j (fp32 sums of fp32 or fp16 rows).
  void add_column_sums(Mat x, float* sums);
  bool check_drelu_epilogue(DType t);
  std::mutex mem_mu_;
  std::unordered_map<void*, size_t> sizes_;  // live allocations, for the peak figure
  size_t in_use_ = 0;
  size_t peak_ = 0;
  std::atomic<size_t> device_peak_{0};
  void sample_device_memory();
  // Whether the fused kernels may run: on fp16 activations from sm_70, on fp32 ones with TF32 on
  // from sm_80, unless NCF_CUDA_FUSED=0 or a launch failed.
  bool fused_allowed(bool half) const { return fused_ && tensor_cores_allowed(half); }
  // Whether a WMMA kernel may take activations of this kind: fp16 from sm_70, fp32 as TF32 from
  // sm_80 when the GEMMs use TF32 (the same rounding as theirs).
  bool tensor_cores_allowed(bool half) const { return cc_major_ >= 7 && (half || (gemm_->tf32() && cc_major_ >= 8)); }
};

}  // namespace ncf::cuda
