// Row-major single-precision GEMM, C = alpha op(A) op(B) + beta C, spread over the thread pool
// by rows of C (or by columns when C has few rows). Each thread calls a single-threaded BLAS
// sgemm on its block, which measured faster here than letting OpenBLAS thread small GEMMs itself.
// Without a BLAS at build time a blocked fallback kernel is used.
#pragma once
#include "../core/thread_pool.h"

namespace ncf {

void sgemm(ThreadPool& pool, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

// The GEMM library this build uses ("openblas", "blas" or "builtin").
const char* blas_name();

}  // namespace ncf
