#include "gemm.h"

#include <algorithm>
#include <vector>

#if defined(NCF_HAVE_CBLAS)
extern "C" {
void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
void openblas_set_num_threads(int n) __attribute__((weak));
}
#endif

namespace ncf {

namespace {

#if defined(NCF_HAVE_CBLAS)
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

struct SingleThreadedBlas {
  SingleThreadedBlas() {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
  }
};

void sgemm_serial(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                  int ldb, float beta, float* c, int ldc) {
  static SingleThreadedBlas once;
  cblas_sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}
#else
// Fallback: C = alpha op(A) op(B) + beta C with op(B) packed row-major so the inner loop is a
// contiguous, vectorisable axpy.
void sgemm_serial(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                  int ldb, float beta, float* c, int ldc) {
  std::vector<float> bp(size_t(k) * n);
  for (int p = 0; p < k; ++p)
    for (int j = 0; j < n; ++j) bp[size_t(p) * n + j] = tb ? b[size_t(j) * ldb + p] : b[size_t(p) * ldb + j];
  std::vector<float> acc(n);
  for (int i = 0; i < m; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int p = 0; p < k; ++p) {
      const float av = ta ? a[size_t(p) * lda + i] : a[size_t(i) * lda + p];
      if (av == 0.0f) continue;
      const float* row = &bp[size_t(p) * n];
      for (int j = 0; j < n; ++j) acc[j] += av * row[j];
    }
    float* crow = c + size_t(i) * ldc;
    for (int j = 0; j < n; ++j) crow[j] = alpha * acc[j] + (beta == 0.0f ? 0.0f : beta * crow[j]);
  }
}
#endif

// A GEMM whose reduction is long beside its output (a weight gradient: k the batch's rows, m x n the
// layer's weights) is split along k instead: chunks of at least kReduceChunk rows, each chunk's
// product into a partial of its own (any thread), then the partials summed in chunk order. Split
// by rows or columns of C, every thread would pack all of the other operand, the batch's
// activations or gradients: the packing was about half the time of those GEMMs on 2 threads, and
// it grows with the thread count. The chunks depend on the shape alone (at most kMaxPartialFloats
// of partials: longer chunks for a long k), not on the thread count, so neither do the sums.
constexpr int kReduceChunk = 2048;
constexpr int64_t kMaxPartialFloats = int64_t(4) << 20;  // 16 MB, kept by each calling thread

// The number of chunks the reduction is split into (1: not split), each of ceil(k / chunks) rows
// but the last, which is not empty.
int reduction_chunks(int m, int n, int k) {
  if (k < 2 * kReduceChunk || k < 4 * std::max(m, n)) return 1;
  const int64_t most = kMaxPartialFloats / (int64_t(m) * n);
  const int64_t chunks = std::min<int64_t>((int64_t(k) + kReduceChunk - 1) / kReduceChunk, most);
  if (chunks < 2) return 1;
  const int64_t per_chunk = (k + chunks - 1) / chunks;
  return int((k + per_chunk - 1) / per_chunk);
}

// C = alpha op(A) op(B) (beta 0: every caller's) with the reduction split into `chunks` as above.
void sgemm_split_reduction(ThreadPool& pool, bool ta, bool tb, int m, int n, int k, float alpha, const float* a,
                           int lda, const float* b, int ldb, float* c, int ldc, int chunks) {
  const int per_chunk = (k + chunks - 1) / chunks;
  const size_t mn = size_t(m) * n;
  thread_local std::vector<float> partials;  // kept, so that steady-state calls touch no fresh pages
  if (partials.size() < mn * chunks) partials.resize(mn * chunks);
  float* part = partials.data();
  pool.parallel_for(chunks, [&](int64_t first, int64_t end, int) {
    for (int64_t q = first; q < end; ++q) {
      const int64_t k0 = q * per_chunk, len = std::min<int64_t>(per_chunk, k - k0);
      // Columns k0.. of op(A) and rows k0.. of op(B).
      const float* a_q = ta ? a + size_t(k0) * lda : a + k0;
      const float* b_q = tb ? b + k0 : b + size_t(k0) * ldb;
      sgemm_serial(ta, tb, m, n, int(len), alpha, a_q, lda, b_q, ldb, 0.0f, part + mn * q, n);
    }
  });
  // C = the partials summed in chunk order, row by row.
  pool.parallel_for(m, [&](int64_t first, int64_t end, int) {
    for (int64_t i = first; i < end; ++i) {
      float* __restrict s = c + size_t(i) * ldc;
      const float* __restrict p0 = part + size_t(i) * n;
      for (int j = 0; j < n; ++j) s[j] = p0[j];
      for (int q = 1; q < chunks; ++q) {
        const float* __restrict pq = p0 + mn * q;
        for (int j = 0; j < n; ++j) s[j] += pq[j];
      }
    }
  });
}

// Whether sgemm splits C by rows (else by columns): with enough rows for every thread, or at least
// as many rows as columns.
bool split_by_rows(ThreadPool& pool, int m, int n) { return m >= 32 * pool.size() || m >= n; }

}  // namespace

const char* blas_name() {
#if defined(NCF_HAVE_CBLAS)
  return NCF_BLAS_NAME;
#else
  return "builtin";
#endif
}

void sgemm(ThreadPool& pool, bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (const int chunks = reduction_chunks(m, n, k); beta == 0.0f && chunks > 1)
    return sgemm_split_reduction(pool, ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc, chunks);
  const bool split_rows = split_by_rows(pool, m, n);
  const int64_t extent = split_rows ? m : n;
  // Blocks of at least 16 rows/columns keep each BLAS call efficient.
  pool.parallel_for(
      extent,
      [&](int64_t begin, int64_t end, int) {
        const int len = int(end - begin);
        if (split_rows) {
          const float* a_blk = ta ? a + begin : a + begin * lda;
          sgemm_serial(ta, tb, len, n, k, alpha, a_blk, lda, b, ldb, beta, c + begin * ldc, ldc);
        } else {
          const float* b_blk = tb ? b + begin * ldb : b + begin;
          sgemm_serial(ta, tb, m, len, k, alpha, a, lda, b_blk, ldb, beta, c + begin, ldc);
        }
      },
      16);
}

void sgemm_rows_then(ThreadPool& pool, bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda,
                     const float* b, int ldb, float beta, float* c, int ldc, int64_t block,
                     const std::function<void(int64_t, int64_t, int)>& then) {
  if (m <= 0) return;
  if (n <= 0 || !split_by_rows(pool, m, n)) {
    sgemm(pool, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    pool.parallel_for(m, then, 16);
    return;
  }
  pool.parallel_for(
      m,
      [&](int64_t begin, int64_t end, int t) {
        for (int64_t r0 = begin; r0 < end; r0 += block) {
          const int64_t r1 = std::min(end, r0 + block);
          sgemm_serial(ta, tb, int(r1 - r0), n, k, alpha, ta ? a + r0 : a + r0 * lda, lda, b, ldb, beta, c + r0 * ldc, ldc);
          then(r0, r1, t);
        }
      },
      16);
}

}  // namespace ncf
