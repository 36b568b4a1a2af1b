// The op vocabulary shared by the CPU and CUDA backends. Each op has one CPU implementation
// (native/cpu/<family>.cc) and one CUDA implementation (native/cuda/<family>.cu) with the same
// name and arguments; `ncf-native selftest` runs both on the same inputs and compares them.
//
// All pointers are backend memory: host memory for the CPU backend, device memory for CUDA.
// Ops are asynchronous on CUDA (one stream); download() and sync() wait.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adam_rule.h"
#include "dropout.h"
#include "hd.h"
#include "sample_stream.h"
#include "tensor.h"

namespace ncf {

struct EmbedTables {
  const float* mf_user = nullptr;   // [n_users, factors]
  const float* mf_item = nullptr;   // [n_items, factors]
  const float* mlp_user = nullptr;  // [n_users, half]
  const float* mlp_item = nullptr;  // [n_items, half]
  int factors = 0;
  int half = 0;
  // fp16 copies of mlp_user and mlp_item (kept with fp16 activations, see HalfMirror), or null.
  // An fp16 MLP input may be gathered from them: the same values, half the bytes.
  const void* mlp_user_half = nullptr;
  const void* mlp_item_half = nullptr;
};

// An fp16 copy of the parameters [begin, end) that adam_step keeps current: after each update it
// also writes fp16(params[i]) to dst[i - begin]. Empty (dst null) where none is kept.
struct HalfMirror {
  size_t begin = 0, end = 0;
  void* dst = nullptr;
};

struct EmbedGrads {
  float* mf_user = nullptr;
  float* mf_item = nullptr;
  float* mlp_user = nullptr;
  float* mlp_item = nullptr;
};

// One hidden layer: y = dropout(relu(x W^T + b)), W is [out, in] row-major (PyTorch layout).
struct LinearParams {
  const float* w = nullptr;       // fp32 master weights
  const void* w_half = nullptr;   // fp16 copies of w and b, used when the activations are fp16
  const float* b = nullptr;
  const void* b_half = nullptr;
  int in = 0;
  int out = 0;
};

// Which units of a hidden layer's output are live (passed ReLU and were kept by dropout, i.e.
// y > 0), one bit each: unit j of row r is bit (r * ld + j) % 8 of byte (r * ld + j) / 8. ld, the
// bits per row, is the row's width rounded up to a multiple of 128: this is the column-major
// bit-mask layout of cuBLASLt's ReLU epilogues, so the CUDA backend can hand the mask to the
// DRELU_BGRAD epilogue. Empty (bits null) where not kept.
struct UnitMask {
  uint8_t* bits = nullptr;
  int64_t ld = 0;
  bool empty() const { return bits == nullptr; }
  static int64_t ld_for(int64_t cols) { return (cols + 127) / 128 * 128; }
  static size_t bytes_for(int64_t rows, int64_t cols) { return size_t(rows) * size_t(ld_for(cols)) / 8; }
};

// Whether unit j of row r of a UnitMask (bits, ld) is live.
NCF_HD bool unit_live(const uint8_t* bits, int64_t ld, int64_t r, int64_t j) {
  const int64_t b = r * ld + j;
  return (bits[b >> 3] >> (b & 7)) & 1;
}

// The hidden layer below the one being taken back (linear_backward): its output, its live units
// (the mask may be empty: then y > 0), its dropout and its bias gradient.
struct LayerBelow {
  Mat y;
  UnitMask mask;
  Dropout dropout;
  float* grad_b = nullptr;
};

// A batch's users in ascending order (sample_batch's grouping) and the per-user sums of the first
// layer's output gradient that pair_row_sums would take ([n_users x width]: fp32, or fp16 on
// CUDA), for hidden_backward to take as it writes that gradient.
struct UserRowSums {
  const uint32_t* users = nullptr;
  Mat sums;
};

// The first layer's output from its two parts, as gather_add_relu takes them: relu(a[ia[r]] +
// b[ib[r]]) for row r (a and b of the activations' type), then hidden_forward's drop[0], with its
// live units in masks[0]. training: every layer's output is kept (what the backward pass reads);
// else (evaluation and serving) only the last is needed.
struct FirstLayerParts {
  Mat a;
  const uint32_t* ia = nullptr;
  Mat b;
  const uint32_t* ib = nullptr;
  bool training = false;
};

// What hidden_backward did: whether it ran (fused), and whether it also wrote the per-user sums.
struct HiddenBackwardRun {
  bool fused = false;
  bool user_sums = false;
};

// The output unit: logit = w . [gmf ; mlp] + b.
struct HeadParams {
  const float* w = nullptr;  // [factors + mlp_width]
  const float* b = nullptr;  // [1]
  int factors = 0;
  int mlp_width = 0;
};

// The network after its first layer, as the fused split_forward op takes it: the first layer's
// per-user and per-item parts (Network::first_layer_parts), the hidden layers after the first,
// the GMF tables and the output unit.
struct SplitNet {
  const float* user_part = nullptr;  // [*, width]: W1u u per user
  const float* item_part = nullptr;  // [*, width]: W1i i + b1 per item
  int width = 0;                     // the first layer's output width
  EmbedTables tables;                // mf_user and mf_item are used
  std::vector<LinearParams> layers;  // hidden layers 2..L (w_half / b_half set for fp16 activations)
  HeadParams head;
  DType act = DType::F32;            // the activations' type between layers
};

// Dynamic or static loss scaling state for fp16 training, in backend memory.
struct LossScaler {
  float* scale = nullptr;       // current scale (the loss is multiplied by it)
  int32_t* found_inf = nullptr; // set by overflow_check when a gradient is not finite
  int32_t* good_steps = nullptr;// finite steps since the last change of scale
  bool dynamic = true;
  int growth_interval = 2000;   // double the scale after this many finite steps
};

// One training step's data path, as the fused train_pass op takes it. Gradients are added into
// buffers the caller zeroed; mlp_in, act and d_act receive what the weight gradients need.
struct TrainPass {
  const uint32_t* users = nullptr;   // the batch's n sampled rows
  const uint32_t* items = nullptr;
  const float* labels = nullptr;
  EmbedTables tables;
  EmbedGrads embed_grads;
  std::vector<LinearParams> layers;  // every hidden layer (w_half / b_half set for fp16 activations)
  std::vector<Dropout> dropout;      // per layer
  std::vector<float*> grad_b;        // per layer
  HeadParams head;
  float* head_grad_w = nullptr;
  float* head_grad_b = nullptr;
  float grad_scale = 1.0f;           // as in head_forward_backward
  const LossScaler* scaler = nullptr;
  double* loss_sum = nullptr;
  Mat mlp_in;                        // out: each row's MLP input
  std::vector<Mat> act;              // out: each layer's output, after ReLU and dropout
  std::vector<Mat> d_act;            // out: each layer's output gradient, masked (relu_dropout_backward's dz)
};

// Running sums of the evaluation, in backend memory.
struct EvalSums {
  double dcg = 0.0;
  uint64_t hits = 0;
  uint64_t users = 0;
};

struct BackendInfo {
  std::string name;          // "cpu" or "cuda"
  std::string device;        // CPU model / GPU name
  int threads = 1;           // CPU threads
  bool half = false;         // supports fp16 activations (--amp)
  bool tf32 = false;         // fp32 GEMMs use TF32 Tensor Cores
  size_t memory_total = 0;   // device memory, bytes (0 for the CPU)
  std::string blas;          // the GEMM library
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendInfo info() const = 0;

  // ---- memory -----------------------------------------------------------------------------
  virtual void* alloc(size_t bytes) = 0;  // zero-filled
  virtual void release(void* p) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;
  virtual void sync() = 0;
  // The end of a phase of work, named for reports ("training epoch 2", "evaluation"): a backend
  // that times its ops (CUDA with NCF_CUDA_OP_TIMES=1) writes their table; others ignore it.
  virtual void phase_end(const char* /*phase*/) {}
  // Asks for training steps as graphs (run_step); returns whether run_step will capture them: the
  // CUDA backend does when asked or with NCF_CUDA_GRAPH=1 (not while NCF_CUDA_OP_TIMES=1 times
  // each op); others never.
  virtual bool set_step_graphs(bool /*on*/) { return false; }
  // Runs ops: one training step's calls of this backend, which must neither wait for the device
  // nor allocate, and whose host-side effects may happen twice. With step graphs on, the CUDA
  // backend captures them as a CUDA Graph and launches that (after running them once as they are
  // for each new `shape`: the step's row count); otherwise they just run. With set_autotune on, the
  // CUDA backend also sets the kernel forms the step runs with.
  virtual void run_step(uint64_t /*shape*/, const std::function<void()>& ops) { ops(); }
  // Runs ops: one evaluation batch's calls of this backend (its forward pass and ranking) for
  // `shape` rows; the same contract as run_step's, without graphs.
  virtual void run_eval_batch(uint64_t /*shape*/, const std::function<void()>& ops) { ops(); }
  // Asks for the backend's kernel forms chosen on the run's own work (train --autotune): each form
  // the backend has timed on run_step's first training steps and on run_eval_batch's first
  // batches, the fastest kept; this process is rank `rank` of `ranks`. Returns whether it will:
  // the CUDA backend does when asked or with NCF_CUDA_AUTOTUNE=1; others never.
  virtual bool set_autotune(bool /*on*/, int /*rank*/, int /*ranks*/) { return false; }
  // Across ranks, at a point every rank reaches at once (the end of a training epoch or an
  // evaluation): sum_over_ranks sums numbers over the ranks, and once every rank has timed its
  // forms, every rank takes the forms fastest by the ranks' mean (alone, each rank's step times
  // include its waits for the others, and close forms could split the ranks).
  virtual void agree_autotune(const std::function<void(double*, size_t)>& /*sum_over_ranks*/) {}
  // After the forms were chosen, a line per kind of run: which forms and their times; else "".
  virtual std::string autotune_report() const { return std::string(); }
  virtual size_t peak_memory() const = 0;  // high-water mark of alloc(), bytes
  // Bytes in use on the whole device at the highest point this backend saw (CUDA: total minus
  // free, sampled at each allocation and sync(), so the context, library workspaces and other
  // processes count too); 0 on the CPU.
  virtual size_t device_memory_peak() const { return 0; }
  virtual void set_tf32(bool on) = 0;
  // Whether the fused ops (train_pass, split_forward) run where they apply; a backend without
  // them ignores it.
  virtual void set_fused(bool) {}
  // The most blocks that a kernel whose threads, warps or blocks loop over their work with the
  // grid's stride launches (0: its own number): a small cap makes each loop on the self-test's
  // small inputs as it does only at full size (the output unit's warps take ~8 turns at a 1M batch,
  // summing across them; each tile kernel's block ~60 tiles). A backend without such kernels
  // ignores it.
  virtual void set_max_blocks(int) {}
  // Whether training should keep each hidden layer's UnitMask (linear_forward writes it and the
  // backward ops read it): the CUDA backend's DRELU_BGRAD epilogue and masking kernel use it; the
  // CPU reads y > 0 instead, so writing masks would only cost it time.
  virtual bool wants_unit_masks() const { return false; }

  // ---- ops --------------------------------------------------------------------------------
  // The n samples at epoch positions [pos0, pos0 + n) (users, items, labels), grouped by user:
  // rows ordered by user, a user's rows in position order (CUDA: for users with up to 4096 rows
  // in the batch; beyond, in any order); positions[r] = row r's epoch position minus pos0. Consecutive rows then share their user's table rows and gradient rows (cache
  // hits instead of device-memory traffic); dropout follows the positions (Dropout::row_pos).
  virtual void sample_batch(const TrainArrays& d, const SampleStream& s, uint64_t pos0, int n, uint32_t* users,
                            uint32_t* items, float* labels, uint32_t* positions) = 0;
  // mlp_in[i] = [mlp_user[u_i] ; mlp_item[v_i]] for i < mlp_in.rows. The GMF product is not
  // formed here: the output unit (head_forward, head_forward_backward) forms it from the table
  // rows, so no GMF values or gradients are ever written per sample.
  virtual void embed_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp_in) = 0;
  // Scatters the gradient of mlp_in back into the (dense, zeroed) MLP table gradients
  // g.mlp_user and g.mlp_item (the GMF ones come from head_forward_backward).
  virtual void embed_backward(const uint32_t* users, const uint32_t* items, Mat d_mlp_in, const EmbedGrads& g) = 0;
  // y = dropout(relu(x W^T + b)); and, when mask is not empty, its live units (y > 0).
  virtual void linear_forward(Mat x, const LinearParams& p, const Dropout& d, Mat y, UnitMask mask) = 0;
  // dy (the gradient at a layer's output y) is turned in place into the gradient at its
  // pre-activation, dz = dy * live * dropout scale (live: y > 0, read from mask when it is not
  // empty), and grad_b = the column sums of dz.
  virtual void relu_dropout_backward(Mat dy, Mat y, UnitMask mask, const Dropout& d, float* grad_b) = 0;
  // A hidden layer backwards from dz (its relu_dropout_backward'ed output gradient):
  // grad_w = dz^T x and, if dx is not empty, dx = dz W; with `below`, dx is then taken through the
  // layer below's ReLU and dropout as relu_dropout_backward(dx, below) does (the CUDA backend
  // applies the mask in the GEMM's DRELU_BGRAD epilogue where it checked it gives the same).
  virtual void linear_backward(Mat dz, Mat x, const LinearParams& p, Mat dx, float* grad_w,
                               const LayerBelow* below) = 0;
  // logits[i] = w . [mf_user[users[i]] * mf_item[items[i]] ; mlp_i] + b for i < mlp.rows: the
  // GMF product is formed here, not read (evaluation and serving need it nowhere else).
  virtual void head_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp,
                            const HeadParams& p, float* logits) = 0;
  // The training form of head_forward, in one pass: the logit z of each row (the GMF product
  // formed from the table rows), the sigmoid-BCE loss against labels added to *loss_sum, and the
  // logit gradient g = (sigmoid(z) - y) * grad_scale (times the loss scale when a scaler is given)
  // taken back through the unit: d_mlp = g w_mlp, grad_w = sum g [gmf ; mlp] and grad_b = sum g
  // (both overwritten), and the GMF product's table gradients added into the (dense, zeroed)
  // g_tables.mf_user[u] += (g w_gmf) * mf_item[v] and g_tables.mf_item[v] += (g w_gmf) * mf_user[u].
  // With `below` (the last hidden layer, below->y is mlp), mlp is that layer's output before its
  // dropout, relu(z + b): the op applies below->dropout to it as linear_forward would (the same
  // draws, by row), uses the dropped values in the logit and the weight gradient, and takes d_mlp
  // back through the dropout and the ReLU (d_mlp = dz of that layer, live where mlp > 0 and kept;
  // below->grad_b = its column sums); mlp may be left holding the values after dropout. On CUDA
  // (widths up to 64) the dropout is applied in the unit's kernel, so the last layer's dropout
  // costs no pass over memory and no live-unit mask; below->mask is not read.
  virtual void head_forward_backward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp,
                                     const float* labels, const HeadParams& p, float grad_scale,
                                     const LossScaler* scaler, Mat d_mlp, const LayerBelow* below,
                                     const EmbedGrads& g_tables, float* grad_w, float* grad_b, double* loss_sum) = 0;
  // Sets *found_inf if any gradient times 1 / scale is not finite. The gradients stay scaled:
  // adam_step unscales each as it reads it, so no pass writes them back.
  virtual void overflow_check(const float* grads, size_t n, const LossScaler& scaler) = 0;
  // Adam over all n parameters, each gradient first multiplied by 1 / *loss_scale when loss_scale
  // (backend memory, may be null) is given; then the mirror's fp16 copies of the updated values.
  // Skipped entirely when skip_if (may be null) is non-zero.
  virtual void adam_step(float* params, const float* grads, float* m, float* v, size_t n, const AdamScalars& s,
                         const float* loss_scale, const int32_t* skip_if, const HalfMirror& mirror) = 0;
  // Halves the scale after an overflow, doubles it after growth_interval finite steps.
  virtual void update_loss_scale(const LossScaler& scaler) = 0;
  // dst (fp16) = src (fp32), rounding to nearest even; and back.
  virtual void to_half(const float* src, void* dst, size_t n) = 0;
  virtual void from_half(const void* src, float* dst, size_t n) = 0;
  // For n_users lists of list_len logits (positive first): adds hits@k and DCG to *sums.
  virtual void eval_rank(const float* logits, const uint8_t* masked, int n_users, int list_len, int k,
                         EvalSums* sums) = 0;
  // out = a W^T for a [rows, in] and W given as [out, ldw] rows of which the first `in` columns
  // are used (a column block of a wider weight). W has a's type: fp32 (out fp32), or on CUDA fp16
  // (out fp16 or fp32).
  virtual void matmul_nt(Mat a, const void* w, int ldw, Mat out) = 0;
  // out = a W for a [rows, k] and W given as k rows of ldw values of which the first out.cols
  // columns are used (a column block of a wider weight). W has a's type: fp32, or on CUDA fp16;
  // out fp32.
  virtual void matmul_nn(Mat a, const void* w, int ldw, Mat out) = 0;
  // y = x + row for each row of x, then ReLU if relu (y may be x). row fp32; x and y fp32 (CUDA:
  // or both fp16).
  virtual void add_row(Mat x, const float* row, Mat y, bool relu) = 0;
  // out[r] = dropout(relu(a[ia[r]] + b[ib[r]])) for each row r of out: one row of each of two
  // tables of out.cols columns, added (the first layer from its user and item parts), then d as
  // linear_forward applies it; and, when mask is not empty, out's live units (out > 0). Tables
  // fp32 (CUDA: or both fp16), out fp32 or fp16.
  virtual void gather_add_relu(Mat a, const uint32_t* ia, Mat b, const uint32_t* ib, const Dropout& d, Mat out,
                               UnitMask mask) = 0;
  // user_sums[u] = the sum of the rows r of dz with users[r] = u, item_sums[v] likewise by items
  // (overwritten; zero where no row has the user or item): the first layer's output gradient
  // summed per user and per item (its backward by parts, see Network::train_pass). Sums
  // [n_users or n_items, dz.cols], fp32 (CUDA: user_sums may be fp16); dz fp32 (CUDA: or fp16).
  // users_ascending says users[] is in ascending order (sample_batch's grouping): the CUDA
  // backend then writes each user's sum once, in the users' row order, with no atomics.
  // With `layer` (the first layer: its output, mask, dropout and bias gradient), dz is the
  // gradient at that layer's output, and the rows summed are what relu_dropout_backward(dz,
  // layer) makes of it; layer->grad_b gets their column sums. dz may be left either way: the CPU
  // masks it in place, the CUDA backend (users ascending, a mask, 16-byte rows) as it reads it,
  // which saves the pass that writes the masked gradient and its two reads. An empty user_sums
  // (null data: hidden_backward took them) leaves the per-user side out.
  virtual void pair_row_sums(Mat dz, const LayerBelow* layer, const uint32_t* users, bool users_ascending,
                             const uint32_t* items, Mat user_sums, Mat item_sums) = 0;
  // grad_w = dz^T x, [dz.cols x x.cols] with ld_grad floats per row: a layer's weight gradient
  // (linear_backward's GEMM; ld_grad > x.cols for a column block of it), fp32.
  virtual void linear_weight_grad(Mat dz, Mat x, float* grad_w, int ld_grad) = 0;
  // The fused form of linear_forward for hidden layers 1 .. K: act[l] = linear_forward(act[l - 1],
  // layers[l], drop[l]) with masks[l] (either may be inactive or empty), act[0] given, for the K
  // leading layers the backend takes at once (K <= L - 1; the caller runs the rest). layers, drop
  // and masks have L entries ([0] unused). Returns K; 0, doing nothing, where the backend has no
  // fused form for these shapes (the CPU: never; CUDA: NCF_CUDA_HIDDEN_FORWARD=1, fp16 or TF32).
  // With parts, act[0] is gather_add_relu's output from them (with drop[0] and masks[0]), which
  // the op computes as it reads it instead of reading act[0]: in training it also writes act[0]
  // and masks[0], else it writes act[K] alone (act[0] .. act[K - 1] are left as they were). 0
  // leaves the first layer to the caller too.
  virtual int hidden_forward(const std::vector<Mat>& act, const std::vector<LinearParams>& layers,
                             const std::vector<Dropout>& drop, const std::vector<UnitMask>& masks,
                             const FirstLayerParts* parts) {
    return 0;
  }
  // The fused form of linear_backward's input gradients for the hidden layers L - 1 down to 1,
  // without their weight gradients: for each l, dz[l - 1] = dz[l] W_l (layers[l]) taken through
  // below[l - 1] as relu_dropout_backward does, with below[l - 1].grad_b its column sums. dz[L - 1]
  // is given; dz[l], l < L - 1, are written (what linear_weight_grad reads after). layers has L
  // entries (layers[0] unused), below L - 1. Returns fused false, doing nothing, where the backend
  // has no fused form for these shapes (the CPU: never; CUDA: NCF_CUDA_HIDDEN_BACKWARD=1, fp16 or
  // TF32, with masks). With user_sums (users ascending, sums of dz[0]'s width and type), it may also
  // write user_sums->sums as pair_row_sums would from dz[0] (user_sums true), so that pair_row_sums
  // takes the per-item side alone.
  virtual HiddenBackwardRun hidden_backward(const std::vector<Mat>& dz, const std::vector<LinearParams>& layers,
                                            const std::vector<LayerBelow>& below, const UserRowSums* user_sums) {
    return {};
  }
  // The fused form of a training step's data path for n rows: embed_forward, linear_forward with
  // dropout for each layer, head_forward_backward, then from the last layer to the first
  // linear_backward without its weight gradient, and embed_backward. The caller then takes each
  // layer's weight gradient with linear_weight_grad (d_act[l] against mlp_in or act[l - 1]).
  // Returns false, doing nothing, where the backend has no fused form for this network; with
  // n = 0 it only answers whether it would run (Network::prepare_training asks so).
  virtual bool train_pass(const TrainPass& p, int n) { return false; }
  // The fused form of gather_add_relu -> linear_forward (no dropout) for each later layer ->
  // head_forward: logits[r] of the pairs (users[r], items[r]), r < n,
  // with no activation matrix in backend memory. Returns false, doing nothing, when the backend
  // has no fused form for this network (its shapes, precision or alignment): the caller then
  // runs that chain of ops, which is also the reference the self-test compares this op against.
  // With n = 0 it only answers whether it would run.
  virtual bool split_forward(const SplitNet& net, const uint32_t* users, const uint32_t* items, int64_t n,
                             float* logits) {
    return false;
  }
  virtual void fill_u32(uint32_t* dst, uint32_t value, size_t n) = 0;
  // Calls fn(begin, end) for consecutive tiles of [0, n). The CPU runs tiles on its threads at
  // once, each tile's ops then running single-threaded (so a tile's data stays in that core's
  // cache); the GPU runs them in order, each op using the whole device.
  virtual void parallel_tiles(int64_t n, int64_t tile, const std::function<void(int64_t, int64_t)>& fn) = 0;
  // out[4i..4i+3] = Philox4x32-10 block of counters[4i..4i+3] under key (the self-test checks the
  // device's cuRAND-based generator against the host's).
  virtual void philox_fill(uint64_t key, const uint32_t* counters, uint32_t* out, size_t n_blocks) = 0;
};

std::unique_ptr<Backend> create_cpu_backend(int threads);

}  // namespace ncf
