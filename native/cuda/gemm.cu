#include "gemm.cuh"

#include <cmath>
#include <cstdio>
#include <vector>

namespace ncf::cuda {

struct GemmRunner::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;
  // The heuristic's candidates, best guess first, until the plan is tuned (then emptied).
  std::vector<cublasLtMatmulHeuristicResult_t> candidates;
  ~Plan() {
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

GemmRunner::GemmRunner() {
  // (The switches first: a constructor that throws frees nothing it took.)
  transpose_b_ = !env_flag("NCF_CUDA_GEMM_NN");
  const std::string tune = env_switch("NCF_CUDA_GEMM_TUNE", {"0", "1", "all"});  // (1: the default)
  tune_ = tune == "0" ? Tune::None : tune == "all" ? Tune::All : Tune::Large;
  log_ = env_flag("NCF_CUDA_GEMM_LOG");
  NCF_CUBLAS(cublasLtCreate(&handle_));
  NCF_CUDA(cudaMalloc(&workspace_, workspace_bytes_));
}

GemmRunner::~GemmRunner() {
  plans_.clear();
  if (b_copy_) cudaFree(b_copy_);
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

namespace {
// The largest power of two (up to 256) dividing the address: cuBLASLt picks kernels by it.
uint32_t alignment(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && (v % a) != 0) a >>= 1;
  return a;
}
// bt [n x k] (row-major, ld k) = b [k x n] (ld ldb) transposed: one thread per element (a
// weight's few thousand to 65K elements; strided reads are no matter at that size).
__global__ void transpose_kernel(const float* b, int k, int n, int ldb, float* bt) {
  const int64_t total = int64_t(k) * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e / k, i = e - j * k;
    bt[e] = b[i * ldb + j];
  }
}

const char* epilogue_name(Epilogue e) {
  switch (e) {
    case Epilogue::ReluBias: return "RELU_BIAS";
    case Epilogue::DRelu: return "DRELU";
    case Epilogue::DReluBgrad: return "DRELU_BGRAD";
    default: return "none";
  }
}

// Which epilogues take a bias vector (in or out) and which the bit-mask.
bool has_bias(Epilogue e) { return e == Epilogue::ReluBias || e == Epilogue::DReluBgrad; }
bool has_aux(Epilogue e) { return e == Epilogue::DRelu || e == Epilogue::DReluBgrad; }

// B's elements at most for the transposed copy (a weight; 4 MiB of fp32).
constexpr int64_t kTransposeMax = int64_t(1) << 20;

// Whether work on `stream` is being captured into a CUDA Graph (step_graph.cuh).
bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  return cudaStreamIsCapturing(stream, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone;
}

// Tuning: GEMMs of at least this many flops (2mnk; a training layer at batch 1M has 17-67
// GFLOP), the heuristic's first candidates timed, and the runs timed per candidate after one
// untimed run. A candidate must beat the heuristic's first by this fraction to replace it, so
// that timing noise does not swap equals.
constexpr double kTuneFlops = double(1u << 30);
constexpr int kTuneCandidates = 8;
constexpr int kTuneRuns = 2;
constexpr float kTuneMargin = 0.03f;

// An algorithm's configuration, for the tuning log.
void describe(const cublasLtMatmulAlgo_t& algo, char* out, size_t size) {
  auto get = [&](cublasLtMatmulAlgoConfigAttributes_t attr) -> long long {
    int32_t v = 0;  // the attributes printed are all 32-bit
    size_t written = 0;
    return cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written) == CUBLAS_STATUS_SUCCESS ? v : -1;
  };
  std::snprintf(out, size, "algo %lld tile %lld stages %lld splitK %lld reduction %lld swizzle %lld custom %lld",
                get(CUBLASLT_ALGO_CONFIG_ID), get(CUBLASLT_ALGO_CONFIG_TILE_ID), get(CUBLASLT_ALGO_CONFIG_STAGES_ID),
                get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM), get(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME),
                get(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING), get(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION));
}

// Elapsed milliseconds between two events recorded on a stream, waiting for the second.
struct EventTimer {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventTimer() {
    NCF_CUDA(cudaEventCreate(&start));
    NCF_CUDA(cudaEventCreate(&stop));
  }
  ~EventTimer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void begin(cudaStream_t s) { NCF_CUDA(cudaEventRecord(start, s)); }
  float end_ms(cudaStream_t s) {
    NCF_CUDA(cudaEventRecord(stop, s));
    NCF_CUDA(cudaEventSynchronize(stop));
    float ms = 0.0f;
    NCF_CUDA(cudaEventElapsedTime(&ms, start, stop));
    return ms;
  }
};
}  // namespace

const float* GemmRunner::transposed_b(const GemmCall& g, cudaStream_t stream) {
  const size_t bytes = sizeof(float) * size_t(g.k) * size_t(g.n);
  if (b_copy_bytes_ < bytes) {
    if (b_copy_) NCF_CUDA(cudaFree(b_copy_));
    b_copy_ = nullptr;
    b_copy_bytes_ = 0;
    NCF_CUDA(cudaMalloc(&b_copy_, bytes));
    b_copy_bytes_ = bytes;
  }
  float* bt = static_cast<float*>(b_copy_);
  transpose_kernel<<<blocks_for(int64_t(g.k) * g.n), kThreads, 0, stream>>>(static_cast<const float*>(g.b), g.k, g.n, g.ldb, bt);
  NCF_LAUNCHED();
  return bt;
}

namespace {
// A GEMM's span label: its row-major shape, types and epilogue ("m=1048576 n=128 k=256 f16 relu_bias").
std::string gemm_label(const GemmCall& g) {
  char s[160];
  std::snprintf(s, sizeof s, "m=%d n=%d k=%d %s%s %s", g.m, g.n, g.k, g.a_type == DType::F16 ? "f16" : "f32",
                g.c_type == g.a_type ? "" : (g.c_type == DType::F16 ? ">f16" : ">f32"), epilogue_name(g.epilogue));
  return s;
}
}  // namespace

bool GemmRunner::run(const GemmCall& g_in, cudaStream_t stream) {
  if (g_in.m <= 0 || g_in.n <= 0) return true;
  const OpSpan span(times_, "gemm", stream, times_ && times_->on() ? gemm_label(g_in) : std::string());
  GemmCall g = g_in;
  if (transpose_b_ && !g.trans_b && g.b_type == DType::F32 && g.a_type == DType::F32 && g.epilogue == Epilogue::None &&
      int64_t(g.k) * g.n <= kTransposeMax && g.k > 0) {
    g.b = transposed_b(g, stream);
    g.ldb = g.k;
    g.trans_b = true;
  }
  const bool half_inputs = g.a_type == DType::F16 || g.b_type == DType::F16;
  const cublasComputeType_t compute =
      half_inputs ? CUBLAS_COMPUTE_32F : (tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  // Column-major view: C^T [n x m] = op(B)^T [n x k] * op(A)^T [k x m]. Row-major X with
  // leading dimension ld is column-major X^T with the same ld, so B plays cuBLAS's "A" and keeps
  // its transpose flag, and A plays "B".
  const cublasOperation_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // on B^T (cuBLAS A)
  const cublasOperation_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // on A^T (cuBLAS B)
  const uint32_t al_a = alignment(g.b), al_b = alignment(g.a), al_c = alignment(g.c),
                 al_bias = g.bias ? alignment(g.bias) : 256;
  const uint32_t al_aux = g.aux ? alignment(g.aux) : 256;
  char key[320];
  std::snprintf(key, sizeof key, "%d%d|%d,%d,%d|%d%d%d|%d,%d,%d|%d|%d|%u,%u,%u,%u,%u|%d|%lld", int(g.trans_a), int(g.trans_b),
                g.m, g.n, g.k, int(g.a_type), int(g.b_type), int(g.c_type), g.lda, g.ldb, g.ldc, int(g.epilogue),
                int(compute), al_a, al_b, al_c, al_bias, al_aux, int(g.beta != 0.0f), static_cast<long long>(g.aux_ld));
  auto& slot = plans_[key];
  if (!slot) {
    auto plan = std::make_unique<Plan>();
    NCF_CUBLAS(cublasLtMatmulDescCreate(&plan->desc, compute, CUDA_R_32F));
    NCF_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    NCF_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    if (g.epilogue != Epilogue::None) {
      // The bias runs along the rows of the column-major C^T, i.e. along row-major C's columns;
      // so does the bit-mask's leading dimension.
      const cublasLtEpilogue_t epi = g.epilogue == Epilogue::ReluBias ? CUBLASLT_EPILOGUE_RELU_BIAS
                                     : g.epilogue == Epilogue::DRelu  ? CUBLASLT_EPILOGUE_DRELU
                                                                      : CUBLASLT_EPILOGUE_DRELU_BGRAD;
      NCF_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    }
    if (has_bias(g.epilogue))
      NCF_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias));
    if (has_aux(g.epilogue)) {
      NCF_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof g.aux));
      NCF_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &g.aux_ld, sizeof g.aux_ld));
    }
    // cuBLAS A = B^T: stored [rows x cols] column-major = (trans_b ? [k x n] : [n x k]) ... in
    // column-major terms its stored shape is (op_a == N ? n x k : k x n) with ld = ldb.
    const uint64_t a_rows = op_a == CUBLAS_OP_N ? uint64_t(g.n) : uint64_t(g.k);
    const uint64_t a_cols = op_a == CUBLAS_OP_N ? uint64_t(g.k) : uint64_t(g.n);
    const uint64_t b_rows = op_b == CUBLAS_OP_N ? uint64_t(g.k) : uint64_t(g.m);
    const uint64_t b_cols = op_b == CUBLAS_OP_N ? uint64_t(g.m) : uint64_t(g.k);
    NCF_CUBLAS(cublasLtMatrixLayoutCreate(&plan->la, cuda_type(g.b_type), a_rows, a_cols, g.ldb));
    NCF_CUBLAS(cublasLtMatrixLayoutCreate(&plan->lb, cuda_type(g.a_type), b_rows, b_cols, g.lda));
    NCF_CUBLAS(cublasLtMatrixLayoutCreate(&plan->lc, cuda_type(g.c_type), uint64_t(g.n), uint64_t(g.m), g.ldc));
    cublasLtMatmulPreference_t pref;
    NCF_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    NCF_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                                    sizeof workspace_bytes_));
    NCF_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    NCF_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    NCF_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    NCF_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    const bool to_tune =
        g.beta == 0.0f && (tune_ == Tune::All || (tune_ == Tune::Large && 2.0 * g.m * double(g.n) * g.k >= kTuneFlops));
    cublasLtMatmulHeuristicResult_t results[kTuneCandidates]{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->la, plan->lb, plan->lc, plan->lc,
                                                             pref, to_tune ? kTuneCandidates : 1, results, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    plan->ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (plan->ok) {
      plan->algo = results[0].algo;
      for (int i = 1; i < found; ++i)
        if (results[i].state == CUBLAS_STATUS_SUCCESS) plan->candidates.push_back(results[i]);
      if (!plan->candidates.empty()) plan->candidates.insert(plan->candidates.begin(), results[0]);
    } else if (g.epilogue == Epilogue::None)
      throw_cublas(st == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : st, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    slot = std::move(plan);
  }
  Plan& p = *slot;
  if (!p.ok) return false;
  if (has_bias(g.epilogue))
    NCF_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias));
  if (has_aux(g.epilogue))
    NCF_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof g.aux));
  // Tuning times candidates with events it waits for, which a CUDA Graph's capture refuses: a
  // plan first met while captured is tuned at its first call outside one.
  if (!p.candidates.empty() && !capturing(stream)) tune(g, p, key, stream);
  NCF_CUBLAS(matmul(g, p, p.algo, stream));
  return true;
}

cublasStatus_t GemmRunner::matmul(const GemmCall& g, Plan& p, const cublasLtMatmulAlgo_t& algo, cudaStream_t stream) {
  return cublasLtMatmul(handle_, p.desc, &g.alpha, g.b, p.la, g.a, p.lb, &g.beta, g.c, p.lc, g.c, p.lc, &algo, workspace_,
                        workspace_bytes_, stream);
}

// Times each candidate on this call's operands and keeps the fastest in p.algo. Only plans with
// beta 0 have candidates: a run reads A, B (and the bias or bit-mask) and overwrites C (and the
// bias gradient), all of which the call that follows rewrites, so the reruns change nothing.
void GemmRunner::tune(const GemmCall& g, Plan& p, const char* key, cudaStream_t stream) {
  std::vector<cublasLtMatmulHeuristicResult_t> candidates;
  candidates.swap(p.candidates);
  EventTimer timer;
  std::vector<float> ms(candidates.size(), INFINITY);
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (matmul(g, p, candidates[i].algo, stream) != CUBLAS_STATUS_SUCCESS) continue;  // not for this call: skipped
    timer.begin(stream);
    for (int r = 0; r < kTuneRuns; ++r) NCF_CUBLAS(matmul(g, p, candidates[i].algo, stream));
    ms[i] = timer.end_ms(stream) / kTuneRuns;
  }
  size_t best = 0;
  for (size_t i = 1; i < ms.size(); ++i)
    if (ms[i] < ms[best] * (best == 0 ? 1.0f - kTuneMargin : 1.0f)) best = i;
  if (std::isfinite(ms[best])) p.algo = candidates[best].algo;
  if (!log_) return;
  std::fprintf(stderr, "ncf gemm tune [%s] m=%d n=%d k=%d epilogue %s: picked %zu of %zu (%.4f ms; the heuristic's first %.4f ms)\n",
               key, g.m, g.n, g.k, epilogue_name(g.epilogue), best, candidates.size(), ms[best], ms[0]);
  for (size_t i = 0; i < candidates.size(); ++i) {
    char what[200];
    describe(candidates[i].algo, what, sizeof what);
    std::fprintf(stderr, "ncf gemm tune   %zu: %.4f ms, workspace %zu, waves %.2f, %s\n", i, ms[i], candidates[i].workspaceSize,
                 candidates[i].wavesCount, what);
  }
}

}  // namespace ncf::cuda
