// The emulator's cuBLASLt: the descriptor calls and cublasLtMatmul as a host GEMM in cuBLAS's
// column-major terms, D = alpha op(A) op(B) + beta C (+ bias, ReLU; or DRELU: D's elements whose
// bit in the aux bit-mask is clear set to 0; DRELU_BGRAD: that, and D's row sums written to the
// bias pointer),
// with the checks cuBLASLt
// makes: attribute sizes, layouts whose shapes agree with the operation (op(A) is m x k, op(B)
// k x n, C and D m x n, each ld >= its stored rows), supported type combinations, a bias vector
// of D's rows and type, and operands aligned as the preferences promise. Inputs are rounded to
// TF32 (10-bit mantissa) under CUBLAS_COMPUTE_32F_FAST_TF32, as Tensor Cores do; sums are fp32.
#include <cublasLt.h>

#include <cstring>
#include <vector>

#include "cuda_emu.h"

namespace {

struct Desc {
  cublasComputeType_t compute;
  cudaDataType_t scale_type;
  int32_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  const void* aux = nullptr;  // DRELU_BGRAD's bit-mask: element (i, j) of D is bit i + j * aux_ld
  int64_t aux_ld = 0;
};
struct Layout {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};
struct Preference {
  uint64_t workspace = 0;
  uint32_t align_a = 256, align_b = 256, align_c = 256, align_d = 256;
};

template <typename T>
cublasStatus_t set(void* dst, const void* buf, size_t size) {
  if (!buf || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(dst, buf, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

uint32_t alignment_of(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a) a >>= 1;
  return a;
}

constexpr uint64_t kEmuAlgo = 0x454D55;  // marks an algorithm this emulator made

size_t type_bytes(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

float load(const void* p, cudaDataType_t t, size_t i) {
  return t == CUDA_R_32F ? static_cast<const float*>(p)[i] : __half2float(static_cast<const __half*>(p)[i]);
}

// Rounds to TF32: 10 explicit mantissa bits, to nearest (ties away), as the conversion does.
float to_tf32(float x) {
  if (!std::isfinite(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x1000u) & 0xFFFFE000u;
  std::memcpy(&x, &u, 4);
  return x;
}

// The shape an operand has after its op: rows x cols.
void op_shape(const Layout& l, int32_t op, uint64_t* r, uint64_t* c) {
  *r = op == CUBLAS_OP_N ? l.rows : l.cols;
  *c = op == CUBLAS_OP_N ? l.cols : l.rows;
}

// The checks of both cublasLtMatmulAlgoGetHeuristic and cublasLtMatmul.
cublasStatus_t validate(const Desc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dl) {
  uint64_t am, ak, bk, bn;
  op_shape(a, d.trans_a, &am, &ak);
  op_shape(b, d.trans_b, &bk, &bn);
  if (ak != bk || c.rows != am || c.cols != bn || dl.rows != am || dl.cols != bn) return CUBLAS_STATUS_INVALID_VALUE;
  for (const Layout* l : {&a, &b, &c, &dl})
    if (l->ld < int64_t(l->rows) || l->rows == 0 || l->cols == 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (d.scale_type != CUDA_R_32F || c.type != dl.type) return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool half_in = a.type == CUDA_R_16F && b.type == CUDA_R_16F;
  const bool f32_in = a.type == CUDA_R_32F && b.type == CUDA_R_32F;
  if (!half_in && !f32_in) return CUBLAS_STATUS_NOT_SUPPORTED;  // mixed fp16/fp32 inputs are not a cuBLASLt combination
  if (f32_in && dl.type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (dl.type != CUDA_R_32F && dl.type != CUDA_R_16F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d.compute != CUBLAS_COMPUTE_32F && d.compute != CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d.epilogue != CUBLASLT_EPILOGUE_DEFAULT && d.epilogue != CUBLASLT_EPILOGUE_RELU_BIAS && d.epilogue != CUBLASLT_EPILOGUE_BIAS &&
      d.epilogue != CUBLASLT_EPILOGUE_RELU && d.epilogue != CUBLASLT_EPILOGUE_DRELU_BGRAD && d.epilogue != CUBLASLT_EPILOGUE_DRELU)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if ((d.epilogue == CUBLASLT_EPILOGUE_DRELU_BGRAD || d.epilogue == CUBLASLT_EPILOGUE_DRELU) &&
      (d.aux_ld % 128 != 0 || d.aux_ld < int64_t(dl.rows)))
    return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  static int token;
  *h = reinterpret_cast<cublasLtHandle_t>(&token);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* out, cublasComputeType_t compute, cudaDataType_t scale) {
  *out = reinterpret_cast<cublasLtMatmulDesc_t>(new Desc{compute, scale});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete reinterpret_cast<Desc*>(d);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t size) {
  Desc& d = *reinterpret_cast<Desc*>(desc);
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return set<int32_t>(&d.trans_a, buf, size);
    case CUBLASLT_MATMUL_DESC_TRANSB: return set<int32_t>(&d.trans_b, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return set<uint32_t>(&d.epilogue, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set<const void*>(&d.bias, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return set<const void*>(&d.aux, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return set<int64_t>(&d.aux_ld, buf, size);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;  // not emulated
  }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* out, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  *out = reinterpret_cast<cublasLtMatrixLayout_t>(new Layout{type, rows, cols, ld});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete reinterpret_cast<Layout*>(l);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* out) {
  *out = reinterpret_cast<cublasLtMatmulPreference_t>(new Preference);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete reinterpret_cast<Preference*>(p);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t size) {
  Preference& p = *reinterpret_cast<Preference*>(pref);
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return set<uint64_t>(&p.workspace, buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return set<uint32_t>(&p.align_a, buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return set<uint32_t>(&p.align_b, buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return set<uint32_t>(&p.align_c, buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return set<uint32_t>(&p.align_d, buf, size);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  *returned = 0;
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  const Desc& ds = *reinterpret_cast<const Desc*>(desc);
  const cublasStatus_t st = validate(ds, *reinterpret_cast<const Layout*>(a), *reinterpret_cast<const Layout*>(b),
                                     *reinterpret_cast<const Layout*>(c), *reinterpret_cast<const Layout*>(d));
  if (st == CUBLAS_STATUS_INVALID_VALUE) return st;
  if (st != CUBLAS_STATUS_SUCCESS) return CUBLAS_STATUS_SUCCESS;  // no algorithm: zero results
  // Up to kAlgos "algorithms", all the same host GEMM, so that a caller's choice among several
  // is exercised; each remembers the alignments it was chosen for (cublasLtMatmul checks them)
  // and its index (its CUBLASLT_ALGO_CONFIG_ID).
  const Preference& p = *reinterpret_cast<const Preference*>(pref);
  constexpr int kAlgos = 3;
  const int count = requested < kAlgos ? requested : kAlgos;
  for (int i = 0; i < count; ++i) {
    std::memset(&results[i], 0, sizeof results[i]);
    results[i].algo.data[0] = p.align_a;
    results[i].algo.data[1] = p.align_b;
    results[i].algo.data[2] = p.align_c;
    results[i].algo.data[3] = p.align_d;
    results[i].algo.data[4] = kEmuAlgo;
    results[i].algo.data[5] = uint64_t(i);
    results[i].workspaceSize = 0;
    results[i].state = CUBLAS_STATUS_SUCCESS;
    results[i].wavesCount = 1.0f;
  }
  *returned = count;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoConfigGetAttribute(const cublasLtMatmulAlgo_t* algo, cublasLtMatmulAlgoConfigAttributes_t attr,
                                                    void* buf, size_t size, size_t* written) {
  if (!algo || algo->data[4] != kEmuAlgo) return CUBLAS_STATUS_INVALID_VALUE;
  if (attr != CUBLASLT_ALGO_CONFIG_ID) return CUBLAS_STATUS_NOT_SUPPORTED;  // the only one emulated
  if (size == 0 && written) {
    *written = sizeof(int32_t);
    return CUBLAS_STATUS_SUCCESS;
  }
  if (!buf || size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
  const int32_t id = int32_t(algo->data[5]);
  std::memcpy(buf, &id, sizeof id);
  if (written) *written = sizeof id;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t adesc, const void* B, cublasLtMatrixLayout_t bdesc, const void* beta,
                              const void* C, cublasLtMatrixLayout_t cdesc, void* D, cublasLtMatrixLayout_t ddesc,
                              const cublasLtMatmulAlgo_t* algo, void*, size_t, cudaStream_t stream) {
  // Copies: a captured matmul keeps the descriptors, scalars and pointers of this call, as the
  // real one's kernel parameters do, whatever the caller changes in its descriptors later.
  const Desc d = *reinterpret_cast<const Desc*>(desc);
  const Layout la = *reinterpret_cast<const Layout*>(adesc), lb = *reinterpret_cast<const Layout*>(bdesc),
               lc = *reinterpret_cast<const Layout*>(cdesc), ld = *reinterpret_cast<const Layout*>(ddesc);
  if (const cublasStatus_t st = validate(d, la, lb, lc, ld); st != CUBLAS_STATUS_SUCCESS) return st;
  if (!algo || algo->data[4] != kEmuAlgo) return CUBLAS_STATUS_INVALID_VALUE;
  if (alignment_of(A) < algo->data[0] || alignment_of(B) < algo->data[1] || alignment_of(C) < algo->data[2] ||
      alignment_of(D) < algo->data[3])
    return CUBLAS_STATUS_INVALID_VALUE;  // the algorithm was chosen for stricter alignment
  const bool has_bias = d.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS || d.epilogue == CUBLASLT_EPILOGUE_BIAS;
  const bool relu = d.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS || d.epilogue == CUBLASLT_EPILOGUE_RELU;
  const bool bgrad = d.epilogue == CUBLASLT_EPILOGUE_DRELU_BGRAD;
  const bool drelu = bgrad || d.epilogue == CUBLASLT_EPILOGUE_DRELU;
  uint64_t m, k, n, k2;
  op_shape(la, d.trans_a, &m, &k);
  op_shape(lb, d.trans_b, &k2, &n);
  auto inside = [](const void* p, const Layout& l) {
    return emu::is_device_pointer(p) &&
           emu::is_device_pointer(static_cast<const char*>(p) + (uint64_t(l.ld) * (l.cols - 1) + l.rows) * type_bytes(l.type));
  };
  if (!inside(A, la) || !inside(B, lb) || !inside(D, ld) || (C != D && !inside(C, lc))) return CUBLAS_STATUS_INVALID_VALUE;
  if ((has_bias || bgrad) && (!d.bias || !emu::is_device_pointer(d.bias) ||
                             !emu::is_device_pointer(static_cast<const char*>(d.bias) + m * type_bytes(ld.type) - 1)))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (drelu && (!d.aux || !emu::is_device_pointer(d.aux) ||
                !emu::is_device_pointer(static_cast<const uint8_t*>(d.aux) + ((n - 1) * d.aux_ld + m - 1) / 8)))
    return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  emu::submit(stream, emu::NodeKind::Matmul, [=] {
    const emu::DeviceScope device;
    const bool tf32 = d.compute == CUBLAS_COMPUTE_32F_FAST_TF32 && la.type == CUDA_R_32F;
    // op(A) as rows of k (a_rows[i][kk]) and op(B) as columns of k (b_cols[j][kk]), both contiguous in k.
    std::vector<float> a_rows(m * k), b_cols(n * k);
    for (uint64_t i = 0; i < m; ++i)
      for (uint64_t kk = 0; kk < k; ++kk) {
        const size_t idx = d.trans_a == CUBLAS_OP_N ? kk * la.ld + i : i * la.ld + kk;
        const float v = load(A, la.type, idx);
        a_rows[i * k + kk] = tf32 ? to_tf32(v) : v;
      }
    for (uint64_t j = 0; j < n; ++j)
      for (uint64_t kk = 0; kk < k; ++kk) {
        const size_t idx = d.trans_b == CUBLAS_OP_N ? j * lb.ld + kk : kk * lb.ld + j;
        const float v = load(B, lb.type, idx);
        b_cols[j * k + kk] = tf32 ? to_tf32(v) : v;
      }
    std::vector<float> bias_grad(bgrad ? m : 0, 0.0f);
    for (uint64_t j = 0; j < n; ++j)
      for (uint64_t i = 0; i < m; ++i) {
        const float* ar = &a_rows[i * k];
        const float* bc = &b_cols[j * k];
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (uint64_t kk = 0; kk < k; ++kk) s += ar[kk] * bc[kk];
        float v = al * s;
        if (be != 0.0f) v += be * load(C, lc.type, j * lc.ld + i);
        if (has_bias) v += load(d.bias, ld.type, i);
        if (relu) v = v > 0.0f ? v : 0.0f;
        if (drelu) {
          const uint64_t bit = i + j * uint64_t(d.aux_ld);
          if (!((static_cast<const uint8_t*>(d.aux)[bit / 8] >> (bit % 8)) & 1)) v = 0.0f;
          if (bgrad) bias_grad[i] += v;
        }
        const size_t o = j * ld.ld + i;
        if (ld.type == CUDA_R_32F) static_cast<float*>(D)[o] = v;
        else static_cast<__half*>(D)[o] = __float2half_rn(v);
      }
    for (uint64_t i = 0; i < bias_grad.size(); ++i) {
      if (ld.type == CUDA_R_32F) static_cast<float*>(const_cast<void*>(d.bias))[i] = bias_grad[i];
      else static_cast<__half*>(const_cast<void*>(d.bias))[i] = __float2half_rn(bias_grad[i]);
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
