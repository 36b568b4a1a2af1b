// GEMMs on cuBLASLt, in the row-major terms the ops use.
//
// cuBLAS is column-major; a row-major matrix M [r x c] is the column-major M^T [c x r] with the
// same leading dimension, so a row-major C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T.
// Plans (descriptors, layouts and the algorithm) are cached per shape, types, epilogue and pointer
// alignment, so a step reuses them without asking cuBLASLt again. A large GEMM's algorithm is
// tuned on its first call: each of the heuristic's first candidates is timed on the call's own
// operands (with beta 0 a rerun only rewrites C and the epilogue's outputs) and the fastest kept.
#pragma once
#include <cublasLt.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "cuda_common.cuh"
#include "op_times.cuh"

namespace ncf::cuda {

// ReluBias: C = relu(op(A) op(B) + bias). DRelu: C = alpha op(A) op(B) with the elements whose
// bit in `aux` is clear set to 0 (cuBLASLt's DRELU). DReluBgrad: the same, and bias = C's column
// sums (BGRAD).
enum class Epilogue { None, ReluBias, DRelu, DReluBgrad };

// Row-major C[m x n] = alpha * op(A) op(B) + beta * C, with op(A) [m x k] and op(B) [k x n].
struct GemmCall {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;
  DType a_type = DType::F32;
  int lda = 0;
  const void* b = nullptr;
  DType b_type = DType::F32;
  int ldb = 0;
  void* c = nullptr;
  DType c_type = DType::F32;
  int ldc = 0;
  float alpha = 1.0f, beta = 0.0f;
  Epilogue epilogue = Epilogue::None;
  const void* bias = nullptr;  // [n] of c_type: added to every row of C (ReluBias), or C's column sums (DReluBgrad)
  const void* aux = nullptr;   // DRelu, DReluBgrad: C's bit-mask, element (r, j) at bit r * aux_ld + j (UnitMask)
  int64_t aux_ld = 0;
};

// C[m x n] (ldc) = op(A) (lda) op(B) (ldb), with no epilogue.
inline GemmCall gemm_call(int m, int n, int k, const void* a, DType a_type, int lda, bool trans_a, const void* b,
                          DType b_type, int ldb, bool trans_b, void* c, DType c_type, int ldc) {
  GemmCall g;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.a_type = a_type;
  g.lda = lda;
  g.b = b;
  g.b_type = b_type;
  g.ldb = ldb;
  g.c = c;
  g.c_type = c_type;
  g.ldc = ldc;
  return g;
}

class GemmRunner {
 public:
  GemmRunner();
  ~GemmRunner();
  void set_tf32(bool on) { tf32_ = on; }
  bool tf32() const { return tf32_; }
  // Where each GEMM's span goes (the backend's op times, nested in the op that runs it).
  void set_op_times(OpTimes* times) { times_ = times; }
  // Runs the GEMM on `stream`. Returns false (and does nothing) only when cuBLASLt has no
  // algorithm for a fused epilogue, so the caller can fall back to a plain GEMM and a kernel.
  bool run(const GemmCall& g, cudaStream_t stream);

 private:
  struct Plan;
  // Which plans are tuned: NCF_CUDA_GEMM_TUNE=0 none (the heuristic's first algorithm), =all
  // every plan (for tests), else those of at least kTuneFlops. NCF_CUDA_GEMM_LOG=1 prints each
  // tuning's candidates, configurations and times to stderr.
  enum class Tune { None, Large, All };
  Tune tune_ = Tune::Large;
  bool log_ = false;
  OpTimes* times_ = nullptr;
  void tune(const GemmCall& g, Plan& p, const char* key, cudaStream_t stream);
  cublasStatus_t matmul(const GemmCall& g, Plan& p, const cublasLtMatmulAlgo_t& algo, cudaStream_t stream);
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 32u << 20;
  bool tf32_ = true;
  std::map<std::string, std::unique_ptr<Plan>> plans_;
  // fp32 GEMMs whose B is not transposed and small (a layer's weight) run on a transposed copy
  // of B, the layout of the forward pass's GEMMs: on an H100 (CUDA 13.0) that took TF32 training
  // from 157.8M to 163.0M samples/s. (The "Kernel2" that stayed in the TF32 profile is CUTLASS's
  // generic kernel entry, cutlass::Kernel2: by its 2.4 GB a step, the weight-gradient GEMMs.)
  void* b_copy_ = nullptr;
  size_t b_copy_bytes_ = 0;
  bool transpose_b_ = true;  // false with NCF_CUDA_GEMM_NN=1
  const float* transposed_b(const GemmCall& g, cudaStream_t stream);
};

}  // namespace ncf::cuda
