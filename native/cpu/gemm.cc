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
  const int threads = pool.size();
  const bool split_rows = m >= 32 * threads || m >= n;
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

}  // namespace ncf
