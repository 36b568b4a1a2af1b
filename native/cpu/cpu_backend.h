// The CPU backend: the reference implementation of every op (plain loops over a thread pool,
// GEMMs through BLAS). Each op family lives in its own file, named like its CUDA twin.
#pragma once
#include <atomic>
#include <memory>

#include "../core/backend.h"
#include "../core/thread_pool.h"

namespace ncf {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);
  BackendInfo info() const override;

  void* alloc(size_t bytes) override;
  void release(void* p) override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void sync() override {}
  size_t peak_memory() const override { return peak_; }
  void set_tf32(bool) override {}

  void sample_batch(const TrainArrays& d, const SampleStream& s, uint64_t pos0, int n, uint32_t* users,
                    uint32_t* items, float* labels, uint32_t* positions) override;
  void embed_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp_in) override;
  void embed_backward(const uint32_t* users, const uint32_t* items, Mat d_mlp_in, const EmbedGrads& g) override;
  void linear_forward(Mat x, const LinearParams& p, const Dropout& d, Mat y, UnitMask mask) override;
  void relu_dropout_backward(Mat dy, Mat y, UnitMask mask, const Dropout& d, float* grad_b) override;
  void linear_backward(Mat dz, Mat x, const LinearParams& p, Mat dx, float* grad_w, const LayerBelow* below) override;
  void linear_weight_grad(Mat dz, Mat x, float* grad_w, int ld_grad) override;
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
  void fill_u32(uint32_t* dst, uint32_t value, size_t n) override;
  void philox_fill(uint64_t key, const uint32_t* counters, uint32_t* out, size_t n_blocks) override;
  void parallel_tiles(int64_t n, int64_t tile, const std::function<void(int64_t, int64_t)>& fn) override;

  ThreadPool& pool() { return pool_; }

 private:
  ThreadPool pool_;
  std::atomic<size_t> in_use_{0};
  size_t peak_ = 0;
};

// Throws InvalidArgument unless m is fp32 (the CPU backend computes in fp32 only).
void require_f32(const Mat& m, const char* what);

}  // namespace ncf
