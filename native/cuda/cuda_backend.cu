// CUDA backend: device, stream and memory; the plugin's exported entry points; and the small
// utility kernels (fill_u32, philox_fill).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../core/philox.h"
#include "../core/plugins.h"
#include "cuda_backend.cuh"
#include "warp_tile.cuh"

namespace ncf::cuda {

void throw_cuda(cudaError_t e, const char* what, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  throw Error(ErrorCode::Backend, std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                                      ") in " + what + " at " + (base ? base + 1 : file) + ":" + std::to_string(line));
}

void throw_cublas(cublasStatus_t s, const char* what, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  throw Error(ErrorCode::Backend, std::string("cuBLAS error ") + std::to_string(int(s)) + " in " + what + " at " +
                                      (base ? base + 1 : file) + ":" + std::to_string(line));
}

bool fused_launch_ok(const char* kernel, bool& fused_enabled) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return true;
  if (e == cudaErrorLaunchOutOfResources || e == cudaErrorInvalidConfiguration || e == cudaErrorInvalidValue ||
      e == cudaErrorNoKernelImageForDevice || e == cudaErrorSharedObjectSymbolNotFound) {
    std::fprintf(stderr, "ncf-native: the fused %s kernel cannot run on this GPU (%s); using the op chains\n", kernel,
                 cudaGetErrorString(e));
    fused_enabled = false;
    return false;
  }
  throw_cuda(e, kernel, __FILE__, __LINE__);
}

void use_device(int device) {
  thread_local int current = -1;
  if (current != device) {
    NCF_CUDA(cudaSetDevice(device));
    current = device;
  }
}

CudaBackend::CudaBackend(int device) : device_(device) {
  // The switches first (a mistyped one fails before anything is allocated).
  // The op chains by default: on an H100 they ran 2.4x (--amp) to 4.9x (TF32) faster than the
  // fused train_pass kernel and 1.8x faster than split_forward (docs/figures.md); the fused
  // kernels stay available for work on them.
  fused_ = env_flag("NCF_CUDA_FUSED");
  // cuBLASLt's DRELU_BGRAD epilogue only with NCF_CUDA_DRELU=1: on an H100 (CUDA 13.0) its GEMMs
  // came with a 2.5 ms reduction kernel per step at batch 1M, and the --amp step ran 1.28x faster
  // with the masking pass instead (docs/figures.md, 2026-11-28 fourth session). NCF_CUDA_DRELU=mask:
  // the DRELU epilogue without BGRAD's reduction, then a column-sum pass (not yet measured).
  const std::string drelu = env_switch("NCF_CUDA_DRELU", {"0", "1", "mask"});
  drelu_mode_ = drelu == "1" ? DreluMode::Bgrad : drelu == "mask" ? DreluMode::Mask : DreluMode::Off;
  group_batches_ = env_flag("NCF_CUDA_GROUPED", true);
  // Switches of single kernels' forms, for measuring what each gains (scripts/gpu-check.sh).
  sums_by_user_ = env_flag("NCF_CUDA_SUMS_BY_USER", true);
  item_sort_ = env_flag("NCF_CUDA_ITEM_SORT", true);
  head_dropout_ = env_flag("NCF_CUDA_HEAD_DROPOUT", true);
  half_math_ = env_flag("NCF_CUDA_HALF_MATH", true);
  const std::string forward = env_switch("NCF_CUDA_HIDDEN_FORWARD", {"0", "1", "one-buffer"});
  forms_asked_.hidden_forward = forward == "1" || forward == "one-buffer";
  forms_asked_.forward_one_buffer = forward == "one-buffer";
  forms_asked_.hidden_backward = env_flag("NCF_CUDA_HIDDEN_BACKWARD");
  forms_ = forms_asked_;
  hidden_sums_ = env_flag("NCF_CUDA_HIDDEN_SUMS", true);
  hidden_parts_ = env_flag("NCF_CUDA_HIDDEN_PARTS", true);
  max_blocks_ = env_count("NCF_CUDA_MAX_BLOCKS");
  graphs_asked_ = env_flag("NCF_CUDA_GRAPH");
  autotune_asked_ = env_flag("NCF_CUDA_AUTOTUNE");
  use_device(device);
  gemm_ = std::make_unique<GemmRunner>();
  gemm_->set_op_times(&op_times_);
  NCF_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  cudaDeviceProp prop;
  NCF_CUDA(cudaGetDeviceProperties(&prop, device));
  name_ = prop.name;
  total_memory_ = prop.totalGlobalMem;
  cc_major_ = prop.major;
  sm_count_ = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
  shared_per_sm_ = prop.sharedMemPerMultiprocessor;
  shared_optin_ = prop.sharedMemPerBlockOptin;
}

bool CudaBackend::set_step_graphs(bool on) {
  const bool wanted = on || graphs_asked_;
  if (wanted && op_times_.on()) {
    // The op times bracket each op with events read back per phase: they time the ops launched
    // one by one, which is what they are for.
    std::fprintf(stderr, "ncf-native: CUDA Graphs of the steps are off while NCF_CUDA_OP_TIMES=1 times each op\n");
  }
  step_graph_.set(wanted && !op_times_.on());
  return step_graph_.on();
}

CudaBackend::~CudaBackend() {
  use_device(device_);
  try {
    op_times_.report("since the last phase", stream_, stderr);
  } catch (const std::exception&) {  // a failed stream has nothing to report
  }
  if (stream_) cudaStreamSynchronize(stream_);
  step_graph_.report(stderr);
  for (const FormTuner* t : {step_tuner_.get(), eval_tuner_.get()})
    if (t && !t->unfinished().empty() && tune_rank_ == 0) std::fprintf(stderr, "ncf cuda autotune: %s\n", t->unfinished().c_str());
  if (hidden_forward_runs_ > 0)
    std::fprintf(stderr, "ncf cuda hidden_forward: %lld runs of the fused kernel, %lld with the first layer from its parts%s\n",
                 static_cast<long long>(hidden_forward_runs_), static_cast<long long>(hidden_parts_runs_),
                 hidden_one_buffer_runs_ ? (", " + std::to_string(hidden_one_buffer_runs_) + " with one staging buffer").c_str() : "");
  if (hidden_backward_runs_ > 0)
    std::fprintf(stderr, "ncf cuda hidden_backward: %lld runs of the fused kernel, %lld with the per-user sums\n",
                 static_cast<long long>(hidden_backward_runs_), static_cast<long long>(hidden_sums_runs_));
  bgrad_half_.reset();
  edge_scratch_.reset();
  sample_scratch_.reset();
  sums_scratch_.reset();
  keep_bits_.reset();
  gemm_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

BackendInfo CudaBackend::info() const {
  BackendInfo i;
  i.name = "cuda";
  i.device = name_;
  i.threads = 1;
  i.half = true;
  i.tf32 = gemm_->tf32();
  i.memory_total = total_memory_;
  i.blas = "cublasLt";
  return i;
}

void* CudaBackend::alloc(size_t bytes) {
  use_device(device_);
  void* p = nullptr;
  const size_t n = bytes ? bytes : 16;
  const cudaError_t e = cudaMalloc(&p, n);
  if (e != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(ErrorCode::Backend, "out of GPU memory allocating " + std::to_string(n >> 20) + " MiB (" +
                                        std::to_string(free_b >> 20) + " MiB free of " + std::to_string(total_b >> 20) +
                                        "); use a smaller batch (-b)");
  }
  NCF_CUDA(cudaMemsetAsync(p, 0, n, stream_));
  sample_device_memory();
  std::lock_guard<std::mutex> lock(mem_mu_);
  sizes_[p] = n;
  in_use_ += n;
  if (in_use_ > peak_) peak_ = in_use_;
  return p;
}

void CudaBackend::sample_device_memory() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return;
  const size_t used = total_b - free_b;
  size_t seen = device_peak_.load();
  while (used > seen && !device_peak_.compare_exchange_weak(seen, used)) {
  }
}

void CudaBackend::release(void* p) {
  if (!p) return;
  use_device(device_);
  {
    std::lock_guard<std::mutex> lock(mem_mu_);
    auto it = sizes_.find(p);
    if (it != sizes_.end()) {
      in_use_ -= it->second;
      sizes_.erase(it);
    }
  }
  cudaFree(p);  // synchronises the device, so no queued kernel still uses p
}

void CudaBackend::upload(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  use_device(device_);
  NCF_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::download(void* dst, const void* src, size_t bytes) {
  use_device(device_);
  if (bytes) NCF_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  NCF_CUDA(cudaStreamSynchronize(stream_));
}

void CudaBackend::zero(void* dst, size_t bytes) {
  const OpSpan span(&op_times_, "zero", stream_);
  use_device(device_);
  if (bytes) NCF_CUDA(cudaMemsetAsync(dst, 0, bytes, stream_));
}

void CudaBackend::sync() {
  use_device(device_);
  NCF_CUDA(cudaStreamSynchronize(stream_));
  sample_device_memory();
}

void CudaBackend::phase_end(const char* phase) {
  use_device(device_);
  op_times_.report(phase, stream_, stderr);
}

void CudaBackend::run_step(uint64_t shape, const std::function<void()>& ops) {
  use_device(device_);
  // Each form's steps are their own graphs: a form's kernels are other nodes.
  run_with_forms(step_tuner_.get(), shape, [&](uint64_t key) { step_graph_.run(key, ops, stream_); });
}

void CudaBackend::run_eval_batch(uint64_t shape, const std::function<void()>& ops) {
  use_device(device_);
  run_with_forms(eval_tuner_.get(), shape, [&](uint64_t) { ops(); });
}

bool CudaBackend::set_autotune(bool on, int rank, int ranks) {
  tune_rank_ = rank;
  tune_ranks_ = ranks;
  if (!on && !autotune_asked_) {
    step_tuner_.reset();
    eval_tuner_.reset();
    return false;
  }
  use_device(device_);  // (the tuners' events belong to the current device)
  // The forms asked for first: they are what runs of other shapes take until the decision. The
  // one-buffer forms decline where two buffers fit as many layers in tiles as large (narrow
  // layers): they leave the race after their warm-up run.
  auto forms = [&](bool backward) {
    const KernelForms asked{forms_asked_.hidden_forward, backward && forms_asked_.hidden_backward, forms_asked_.forward_one_buffer};
    std::vector<KernelForms> v{asked};
    for (bool b : backward ? std::vector<bool>{false, true} : std::vector<bool>{false})
      for (const KernelForms f : {KernelForms{false, b, false}, KernelForms{true, b, false}, KernelForms{true, b, true}})
        if (!(f == asked)) v.push_back(f);
    return v;
  };
  step_tuner_ = std::make_unique<FormTuner>("training steps", forms(true));
  eval_tuner_ = std::make_unique<FormTuner>("evaluation batches", forms(false));  // (no backward pass)
  return true;
}

void CudaBackend::agree_autotune(const std::function<void(double*, size_t)>& sum_over_ranks) {
  for (FormTuner* t : {step_tuner_.get(), eval_tuner_.get()}) {
    // (Every rank agrees at the same call, on the same sums: then all stop summing at once.)
    if (!t || t->agreed()) continue;
    std::vector<double> v = t->tally();
    sum_over_ranks(v.data(), v.size());
    if (t->agree(v, tune_ranks_) && tune_rank_ == 0) std::fprintf(stderr, "ncf cuda autotune: %s\n", t->report().c_str());
  }
}

std::string CudaBackend::autotune_report() const {
  std::string r;
  for (const FormTuner* t : {step_tuner_.get(), eval_tuner_.get()})
    if (t && t->decided()) r += (r.empty() ? "" : "\n") + t->report();
  return r;
}

void CudaBackend::run_with_forms(FormTuner* tuner, uint64_t shape, const std::function<void(uint64_t key)>& run) {
  if (!tuner) {
    run(shape);
    return;
  }
  const bool was_decided = tuner->decided();
  forms_ = tuner->next(shape);
  const int64_t forward_runs = hidden_forward_runs_, backward_runs = hidden_backward_runs_;
  tuner->begin(stream_);
  try {
    run(shape ^ (uint64_t(forms_.index()) << 56));
  } catch (...) {
    forms_ = forms_asked_;
    throw;
  }
  // A form ran as asked when each tile kernel it names ran (it declines shapes, precisions and
  // GPUs it does not fit) and each it leaves out did not.
  const bool ran = (hidden_forward_runs_ > forward_runs) == forms_.hidden_forward &&
                   (hidden_backward_runs_ > backward_runs) == forms_.hidden_backward;
  forms_ = forms_asked_;
  tuner->end(stream_, ran);
  // (Across ranks, the decision every rank takes is printed when they agree.)
  if (!was_decided && tuner->decided() && tune_ranks_ == 1) std::fprintf(stderr, "ncf cuda autotune: %s\n", tuner->report().c_str());
}

namespace {
__global__ void fill_u32_kernel(uint32_t* dst, uint32_t value, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) dst[i] = value;
}

// One Philox block per thread through cuRAND's device API (core/philox.h).
__global__ void philox_kernel(uint64_t key, const uint32_t* c, uint32_t* out, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const U32x4 b = philox4x32_10(U32x4{c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]}, key);
    out[4 * i] = b.x;
    out[4 * i + 1] = b.y;
    out[4 * i + 2] = b.z;
    out[4 * i + 3] = b.w;
  }
}
}  // namespace

void CudaBackend::fill_u32(uint32_t* dst, uint32_t value, size_t n) {
  const OpSpan span(&op_times_, "fill_u32", stream_);
  use_device(device_);
  fill_u32_kernel<<<grid(int64_t(n)), kThreads, 0, stream_>>>(dst, value, n);
  NCF_LAUNCHED();
}

void CudaBackend::philox_fill(uint64_t key, const uint32_t* counters, uint32_t* out, size_t n_blocks) {
  const OpSpan span(&op_times_, "philox_fill", stream_);
  use_device(device_);
  philox_kernel<<<grid(int64_t(n_blocks)), kThreads, 0, stream_>>>(key, counters, out, n_blocks);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda

// ---- the plugin's entry points (see core/plugins.cc) ----------------------------------------

extern "C" ncf::Backend* ncf_cuda_create_backend(int device, char* err, size_t errlen) {
  try {
    return new ncf::cuda::CudaBackend(device);
  } catch (const std::exception& e) {
    std::strncpy(err, e.what(), errlen - 1);
    return nullptr;
  }
}

extern "C" int ncf_cuda_devices(ncf::CudaDevice* out, int max, char* err, size_t errlen) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice) return 0;
  if (e != cudaSuccess) {
    std::snprintf(err, errlen, "no usable GPU: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
    return -1;
  }
  for (int i = 0; i < n && i < max; ++i) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out[i].name = p.name;
    out[i].memory = p.totalGlobalMem;
    out[i].major = p.major;
    out[i].minor = p.minor;
  }
  return n < max ? n : max;
}

extern "C" const char* ncf_cuda_build_info(int* has_nccl) {
#if defined(NCF_HAVE_NCCL)
  *has_nccl = 1;
#else
  *has_nccl = 0;
#endif
  return NCF_CUDA_DESC;
}
