// Row-major single-precision GEMM, C = alpha op(A) op(B) + beta C, spread over the thread pool
// by rows of C (or by columns when C has few rows; or, where the reduction is long beside C, as in a
// weight gradient over a batch, by fixed chunks of the reduction whose partial products are summed
// in chunk order). Each thread calls a single-threaded BLAS sgemm on its block, which measured
// faster here than letting OpenBLAS thread small GEMMs itself.
// Without a BLAS at build time a blocked fallback kernel is used.
#pragma once
#include <functional>

#include "../core/thread_pool.h"

namespace ncf {

void sgemm(ThreadPool& pool, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

// C = alpha op(A) op(B) + beta C, then then(r0, r1, thread) over every row of C, each call on a
// range of rows already computed: where C has enough rows, the pool's threads take contiguous
// ranges of them (ThreadPool::parallel_for, at least 16 rows each) and work through them in blocks
// of at most `block` rows, calling then() after each block's product while the block is still in
// cache (a pass after the GEMM without a round trip of C through memory); otherwise sgemm, then
// then() over the same ranges.
void sgemm_rows_then(ThreadPool& pool, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                     int lda, const float* b, int ldb, float beta, float* c, int ldc, int64_t block,
                     const std::function<void(int64_t, int64_t, int)>& then);

// The GEMM library this build uses ("openblas", "blas" or "builtin").
const char* blas_name();

}  // namespace ncf
