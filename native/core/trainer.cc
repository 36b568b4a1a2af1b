#include "trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "errors.h"
#include "fingerprint.h"
#include "init_params.h"

namespace ncf {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
std::string hex64(uint64_t v) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

Trainer::Trainer(std::unique_ptr<Backend> backend, const ModelConfig& cfg, const TrainOptions& opt,
                 const HostDataset& data, std::unique_ptr<Communicator> comm)
    : be_(std::move(backend)), comm_(std::move(comm)), cfg_(cfg), opt_(opt), host_pool_(ThreadPool::default_threads()),
      data_(data) {
  cfg_.validate();
  auto bad = [](const std::string& m) { fail(ErrorCode::InvalidArgument, m); };
  if (opt_.batch_size < 1) bad("batch size must be positive");
  if (opt_.negatives < 1 || opt_.negatives > 1000) bad("negative samples must be in 1..1000");
  if (opt_.topk < 1) bad("topk must be positive");
  if (opt_.valid_users_per_batch < 1) bad("valid users per batch must be positive");
  if (opt_.valid_negatives < 1 || opt_.valid_negatives > data.stored_negatives)
    bad("valid negatives must be in 1.." + std::to_string(data.stored_negatives) +
        " (the number of test negatives the dataset was prepared with)");
  if (data.n_pos == 0) fail(ErrorCode::EmptyData, "the dataset has no training interactions");
  // A damaged cache must fail here, not read out of bounds in a kernel.
  if (data.offsets[0] != 0 || data.offsets[data.n_users] != data.n_pos)
    fail(ErrorCode::InvalidArgument, "the dataset's user offsets do not cover its interactions");
  for (uint32_t u = 0; u < data.n_users; ++u)
    if (data.offsets[u + 1] < data.offsets[u] || data.test_items[u] >= data.n_items)
      fail(ErrorCode::InvalidArgument, "the dataset is damaged at user " + std::to_string(u));
  for (uint64_t i = 0; i < data.n_pos; ++i)
    if (data.items[i] >= data.n_items) fail(ErrorCode::InvalidArgument, "the dataset has an item index beyond its item count");
  for (size_t i = 0; i < size_t(data.n_users) * size_t(data.stored_negatives); ++i)
    if (data.test_negatives[i] >= data.n_items) fail(ErrorCode::InvalidArgument, "the dataset has a test negative beyond its items");
  if (cfg_.n_users != data.n_users || cfg_.n_items != data.n_items) bad("model and dataset disagree on users/items");
  be_->set_tf32(opt_.tf32);
  // Across ranks a step is not captured: NCCL's all-reduce inside a CUDA Graph is untested here.
  step_graphs_ = !comm_ && be_->set_step_graphs(opt_.step_graphs);
  autotune_ = be_->set_autotune(opt_.autotune, rank(), world_size());
  if (comm_) {
    // Every rank must tune, or none: the ranks sum their timings at each epoch's end.
    double tuning = autotune_ ? 1.0 : 0.0;
    comm_->allreduce_sum_host(&tuning, 1);
    if (tuning != 0.0 && tuning != double(comm_->size()))
      fail(ErrorCode::Distributed, "kernel forms are to be tuned (--autotune or NCF_CUDA_AUTOTUNE=1) on " + std::to_string(int(tuning)) +
                                       " of " + std::to_string(comm_->size()) +
                                       " ranks: give every rank the same (mpirun -x NCF_CUDA_AUTOTUNE passes the variable on)");
  }

  // Every rank must train on the same data with the same seed.
  Fingerprint fp;
  fp.add_u64(data.n_users);
  fp.add_u64(data.n_items);
  fp.add(data.offsets, sizeof(uint32_t) * (size_t(data.n_users) + 1));
  fp.add(data.items, sizeof(uint32_t) * data.n_pos);
  fp.add(data.test_items, sizeof(uint32_t) * data.n_users);
  fp.add(data.test_negatives, sizeof(uint32_t) * size_t(data.n_users) * size_t(data.stored_negatives));
  fingerprint_ = fp.value();
  if (comm_) {
    check_same_data_on_all_ranks();
    comm_->broadcast_host(&opt_.seed, sizeof opt_.seed, 0);
  }

  // Training positives, with the user of each positive expanded from the CSR offsets.
  std::vector<uint32_t> users(data.n_pos);
  for (uint32_t u = 0; u < data.n_users; ++u)
    std::fill(users.begin() + data.offsets[u], users.begin() + data.offsets[u + 1], u);
  d_offsets_ = BackendArray<uint32_t>(*be_, data.offsets, size_t(data.n_users) + 1);
  d_items_ = BackendArray<uint32_t>(*be_, data.items, data.n_pos);
  d_users_ = BackendArray<uint32_t>(*be_, users.data(), data.n_pos);
  train_ = TrainArrays{d_offsets_.get(), d_items_.get(), d_users_.get(), data.n_pos, data.n_users, data.n_items};

  // This rank's share of the evaluation users.
  const uint32_t r = uint32_t(rank()), R = uint32_t(world_size());
  const uint32_t u0 = uint32_t(uint64_t(data.n_users) * r / R), u1 = uint32_t(uint64_t(data.n_users) * (r + 1) / R);
  eval_host_ = build_eval_lists(data.test_items, data.test_negatives, data.stored_negatives, opt_.valid_negatives, u0,
                                u1 - u0);
  eval_users_ = BackendArray<uint32_t>(*be_, eval_host_.users.data(), eval_host_.users.size());
  eval_items_ = BackendArray<uint32_t>(*be_, eval_host_.items.data(), eval_host_.items.size());
  eval_masked_ = BackendArray<uint8_t>(*be_, eval_host_.masked.data(), eval_host_.masked.size());

  net_ = std::make_unique<Network>(*be_, cfg_, opt_.amp);
  net_->upload_params(init_params(cfg_, net_->layout(), opt_.seed, host_pool_));
  eval_user_part_ = BackendMat(*be_, data.n_users, cfg_.layers[1], DType::F32);
  eval_item_part_ = BackendMat(*be_, data.n_items, cfg_.layers[1], DType::F32);
  const size_t P = net_->layout().total;
  grads_ = BackendArray<float>(*be_, P);
  m_ = BackendArray<float>(*be_, P);
  v_ = BackendArray<float>(*be_, P);

  const float initial_scale = opt_.amp ? (opt_.static_loss_scale > 0 ? opt_.static_loss_scale : 65536.0f) : 1.0f;
  scale_ = BackendArray<float>(*be_, &initial_scale, 1);
  found_inf_ = BackendArray<int32_t>(*be_, 1);
  good_steps_ = BackendArray<int32_t>(*be_, 1);
  scaler_ = LossScaler{scale_.get(), found_inf_.get(), good_steps_.get(), opt_.static_loss_scale <= 0, 2000};
  loss_sum_ = BackendArray<double>(*be_, 1);
  eval_sums_ = BackendArray<EvalSums>(*be_, 1);

  const int local_rows = int((uint64_t(opt_.batch_size) + R - 1) / R);
  const int train_rows = int(std::min<uint64_t>(uint64_t(local_rows), samples_per_epoch()));
  const int eval_rows = int(std::min<uint32_t>(uint32_t(opt_.valid_users_per_batch), std::max(1u, eval_host_.n_users))) *
                        eval_host_.list_len;
  train_act_ = std::make_unique<Activations>(*be_, cfg_, net_->act_dtype(), train_rows);
  if (eval_rows > train_rows)
    eval_act_ = std::make_unique<Activations>(*be_, cfg_, net_->act_dtype(), eval_rows);
  // What the steps and evaluations will use, allocated now: the memory figures count it.
  fused_training_ = net_->prepare_training(*train_act_, opt_.amp ? &scaler_ : nullptr, grads_.get(), loss_sum_.get());
  train_act_->users_ascending = true;  // sample_batch sorts every batch by user
  fused_evaluation_ =
      net_->prepare_forward_split(eval_act_ ? *eval_act_ : *train_act_, eval_user_part_.mat.f32(), eval_item_part_.mat.f32());
  // The op chain with fp16 activations gathers fp16 copies of the parts: half the bytes per pair,
  // and the item parts stay in L2 (on an H100, ml-20m's 26,744 items take 13.7 MB instead of 27).
  if (!fused_evaluation_ && net_->act_dtype() == DType::F16) {
    eval_user_half_ = BackendMat(*be_, data.n_users, cfg_.layers[1], DType::F16);
    eval_item_half_ = BackendMat(*be_, data.n_items, cfg_.layers[1], DType::F16);
  }
}

// Members are destroyed in reverse order of declaration: every array in backend memory and the
// communicator go before be_, which is declared first.
Trainer::~Trainer() = default;

void Trainer::check_same_data_on_all_ranks() {
  std::vector<uint64_t> all(size_t(comm_->size()));
  comm_->allgather_host(&fingerprint_, all.data(), sizeof(uint64_t));
  for (int r = 1; r < comm_->size(); ++r)
    if (all[size_t(r)] != all[0])
      fail(ErrorCode::Distributed, "rank " + std::to_string(r) + " loaded a different dataset than rank 0 (fingerprint " +
                                       hex64(all[size_t(r)]) + " vs " + hex64(all[0]) +
                                       "): every rank must read the same prepared dataset");
}

uint64_t Trainer::steps_per_epoch() const {
  const uint64_t n = samples_per_epoch(), b = uint64_t(opt_.batch_size);
  return (n + b - 1) / b;
}

void Trainer::step(const SampleStream& s, uint64_t start, int n, uint64_t global_len) {
  Backend& be = *be_;
  Activations& a = *train_act_;
  const int L = cfg_.hidden_layers();
  float* grads = grads_.get();
  const ParamLayout& lay = net_->layout();
  // Only what the step adds up needs zeroing (by parts at ml-20m's shape: the GMF tables' 42 MB
  // of the 127 MB); a rank without rows writes nothing, so its gradients are all zero.
  const auto [z0, z1] = n > 0 ? net_->accumulated_grads(a, fused_training_) : std::pair<size_t, size_t>{0, lay.total};
  std::vector<Dropout> drop(static_cast<size_t>(L));
  for (int l = 0; l < L; ++l) {
    drop[size_t(l)] = make_dropout(cfg_.dropout, opt_.seed, l, s.epoch, start);
    drop[size_t(l)].row_pos = a.positions.get();  // the batch is grouped by user
  }
  ++adam_step_;
  const AdamScalars adam = make_adam_scalars(opt_.lr, opt_.beta1, opt_.beta2, opt_.eps, adam_step_);
  // The step's device work, with no host state changed inside (Backend::run_step may run it twice).
  auto ops = [&] {
    be.zero(grads + z0, (z1 - z0) * sizeof(float));
    if (n > 0) {
      be.sample_batch(train_, s, start, n, a.users.get(), a.items.get(), a.labels.get(), a.positions.get());
      // Gradients are of the mean loss over the global batch: each rank scales by 1 / global_len
      // and the all-reduce sums.
      net_->train_pass(a, n, drop, float(1.0 / double(global_len)), opt_.amp ? &scaler_ : nullptr, grads, loss_sum_.get(),
                       fused_training_);
    }
    if (comm_) comm_->allreduce_sum(grads, lay.total);
    if (opt_.amp) be.overflow_check(grads, lay.total, scaler_);
    be.adam_step(net_->params(), grads, m_.get(), v_.get(), lay.total, adam, opt_.amp ? scaler_.scale : nullptr,
                 opt_.amp ? scaler_.found_inf : nullptr, net_->table_mirror());
    if (opt_.amp) {
      be.update_loss_scale(scaler_);
      net_->refresh_half();
    }
  };
  be.run_step(uint64_t(n), ops);
}

EpochStats Trainer::run_epoch(uint32_t epoch, const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const SampleStream s =
      make_sample_stream(opt_.seed, epoch, data_.n_pos, opt_.negatives, data_.n_items, opt_.verify_negatives);
  const uint64_t N = s.n_samples, B = uint64_t(opt_.batch_size), steps = steps_per_epoch();
  const uint64_t r = uint64_t(rank()), R = uint64_t(world_size());
  be_->zero(loss_sum_.get(), sizeof(double));
  EpochStats st;
  for (uint64_t k = 0; k < steps; ++k) {
    const uint64_t g0 = k * B, glen = std::min(B, N - g0);
    const uint64_t start = g0 + glen * r / R, end = g0 + glen * (r + 1) / R;
    step(s, start, int(end - start), glen);
    st.steps = k + 1;
    st.samples += glen;
    if (progress && !progress(k + 1, steps)) break;
  }
  double loss = 0.0;
  be_->download(&loss, loss_sum_.get(), sizeof loss);
  if (comm_) comm_->allreduce_sum_host(&loss, 1);
  agree_autotune();
  st.loss = st.samples ? loss / double(st.samples) : 0.0;
  be_->download(&st.loss_scale, scale_.get(), sizeof(float));
  be_->sync();  // nothing left to wait for; lets the CUDA backend sample the device's memory use
  st.seconds = seconds_since(t0);
  be_->phase_end(("training epoch " + std::to_string(epoch + 1)).c_str());
  return st;
}

void Trainer::agree_autotune() {
  if (comm_ && autotune_) be_->agree_autotune([this](double* v, size_t n) { comm_->allreduce_sum_host(v, n); });
}

EvalStats Trainer::evaluate() {
  const auto t0 = std::chrono::steady_clock::now();
  Activations& a = eval_act_ ? *eval_act_ : *train_act_;
  const int L = eval_host_.list_len;
  const uint32_t per_batch = uint32_t(std::max(1, std::min(opt_.valid_users_per_batch, a.rows / L)));
  be_->zero(eval_sums_.get(), sizeof(EvalSums));
  // Each user's 1 + 100 items share the user's part of the first layer, and every item's part is
  // computed once: the first layer costs one gather-add per pair instead of a GEMM row.
  net_->first_layer_parts(eval_user_part_.mat, eval_item_part_.mat);
  Mat user_part = eval_user_part_.mat, item_part = eval_item_part_.mat;
  if (!eval_user_half_.mat.empty()) {
    to_half(*be_, user_part, eval_user_half_.mat);
    to_half(*be_, item_part, eval_item_half_.mat);
    user_part = eval_user_half_.mat;
    item_part = eval_item_half_.mat;
  }
  for (uint32_t u = 0; u < eval_host_.n_users; u += per_batch) {
    const uint32_t nu = std::min(per_batch, eval_host_.n_users - u);
    const size_t off = size_t(u) * size_t(L);
    const int rows = int(nu) * L;
    be_->run_eval_batch(uint64_t(rows), [&] {
      net_->forward_split(a, user_part, item_part, eval_users_.get() + off, eval_items_.get() + off, rows);
      be_->eval_rank(a.logits.get(), eval_masked_.get() + off, int(nu), L, opt_.topk, eval_sums_.get());
    });
  }
  EvalSums sums;
  be_->download(&sums, eval_sums_.get(), sizeof sums);
  double totals[3] = {double(sums.hits), sums.dcg, double(sums.users)};
  if (comm_) comm_->allreduce_sum_host(totals, 3);
  agree_autotune();
  EvalStats e;
  e.users = uint64_t(totals[2]);
  e.hr = e.users ? totals[0] / totals[2] : 0.0;
  e.ndcg = e.users ? totals[1] / totals[2] : 0.0;
  e.seconds = seconds_since(t0);
  be_->phase_end("evaluation");
  return e;
}

void Trainer::optimizer_state(std::vector<float>* m, std::vector<float>* v, uint64_t* step) const {
  m->resize(m_.size());
  v->resize(v_.size());
  be_->download(m->data(), m_.get(), m_.bytes());
  be_->download(v->data(), v_.get(), v_.bytes());
  *step = adam_step_;
}

void Trainer::set_optimizer_state(const std::vector<float>& m, const std::vector<float>& v, uint64_t step) {
  if (m.size() != m_.size() || v.size() != v_.size())
    fail(ErrorCode::InvalidArgument, "optimizer state has " + std::to_string(m.size()) + " moments, the model " +
                                         std::to_string(m_.size()));
  be_->upload(m_.get(), m.data(), m_.bytes());
  be_->upload(v_.get(), v.data(), v_.bytes());
  adam_step_ = step;
}

}  // namespace ncf
