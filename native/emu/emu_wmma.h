// nvcuda::wmma (CUDA's warp matrix multiply-accumulate API, <mma.h>) under emulation.
//
// CUDA leaves the distribution of a fragment's elements over the lanes unspecified, and code may
// only touch x[] elementwise (the same operation on every element). Here every lane holds the
// whole tile (x[] is the tile in row-major order), but loads fill only what the lane's share of
// the accumulator needs, and mma_sync computes and a store writes only that share. The calls are not warp barriers: a lane
// runs ahead of the others until a __syncwarp, so a warp that reads with load_matrix_sync what
// its lanes wrote without a __syncwarp in between reads stale data here (as it may on a GPU), and
// the racecheck build takes loads and stores as the whole warp's accesses (WarpCollective).
// Checked as CUDA documents: 256-bit aligned pointers, ldm a multiple of 16 bytes, and tf32
// inputs converted with __float_to_tf32 before mma_sync.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace emu {
[[noreturn]] void fatal(const char* what);
#ifdef NCF_EMU_RACE
void race_warp_collective(bool on);
// For the racecheck: a fragment's load or store is the warp's, not one lane's (which lane moves
// which element is unspecified), so its accesses are ordered against the warp's lanes' own
// accesses only by a __syncwarp (or shuffle) between them.
struct WarpCollective {
  WarpCollective() { race_warp_collective(true); }
  ~WarpCollective() { race_warp_collective(false); }
};
#else
struct WarpCollective {};
#endif
}

namespace nvcuda {
namespace wmma {

struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <typename T>
struct storage {
  using type = T;
};
template <>
struct storage<precision::tf32> {
  using type = float;
};
// Rows and columns of the tile a fragment holds.
template <typename Use, int M, int N, int K>
struct tile;
template <int M, int N, int K>
struct tile<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct tile<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

inline void check_pointer(const void* p, unsigned ldm, size_t element_bytes) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) ::emu::fatal("wmma: the matrix pointer is not 256-bit aligned");
  if ((size_t(ldm) * element_bytes) % 16 != 0) ::emu::fatal("wmma: ldm is not a multiple of 16 bytes");
}
inline float to_float(float v) { return v; }
// fp16 -> fp32 by a table of all 65536 values (cuda_fp16's host conversion is a slow routine,
// and emulated WMMA converts every input it multiplies). Built when the image loads, not on
// first use inside a kernel, where the racecheck build would see one thread write it.
inline const std::vector<float> half_table = [] {
  std::vector<float> t(65536);
  for (uint32_t b = 0; b < 65536; ++b) {
    __half_raw r;
    r.x = uint16_t(b);
    t[b] = __half2float(__half(r));
  }
  return t;
}();
inline float to_float(__half v) {
  const std::vector<float>& table = half_table;
  uint16_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return table[bits];
}
inline bool is_tf32(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x1FFFu) == 0;
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = detail::tile<Use, M, N, K>::rows;
  static constexpr int cols = detail::tile<Use, M, N, K>::cols;
  enum { num_elements = rows * cols };
  using element_type = typename detail::storage<T>::type;
  element_type x[num_elements];
};

// cvt.rna.tf32.f32: round to 10 mantissa bits, to nearest with ties away from zero.
inline float __float_to_tf32(float in) {
  uint32_t bits;
  std::memcpy(&bits, &in, sizeof bits);
  if ((bits & 0x7F800000u) != 0x7F800000u) bits = (bits + 0x1000u) & ~0x1FFFu;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

namespace detail {
// The accumulator elements [first, last) of M x N that this lane computes and stores.
template <int M, int N>
void lane_share(int* first, int* last) {
  const int share = (M * N + 31) / 32, lane = int(threadIdx.x % 32);
  *first = std::min(M * N, lane * share);
  *last = std::min(M * N, (lane + 1) * share);
}
}  // namespace detail

// Loads what the lane's share of D needs (matrix_a: its rows; matrix_b: its columns; the
// accumulator: its elements); the rest of the tile becomes NaN. Emulation is far cheaper so,
// and code that used other elements (unspecified in CUDA) would give visibly wrong results.
template <typename Use, int M, int N, int K, typename T, typename Layout, typename E>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const E* p, unsigned ldm) {
  [[maybe_unused]] const ::emu::WarpCollective collective;
  detail::check_pointer(p, ldm, sizeof(E));
  constexpr bool row = std::is_same<Layout, row_major>::value;
  constexpr bool is_a = std::is_same<Use, matrix_a>::value;
  const E nan_value = E(NAN);
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = nan_value;
  int first, last;
  detail::lane_share<M, N>(&first, &last);
  // matrix_a: the rows of the share; matrix_b: its columns (each range is contiguous here).
  const int lo = is_a ? first / N : (last - first >= N ? 0 : first % N);
  const int hi = is_a ? (last - 1) / N + 1 : (last - first >= N ? N : (last - 1) % N + 1);
  for (int r = is_a ? lo : 0; r < (is_a ? hi : f.rows); ++r)
    for (int c = is_a ? 0 : lo; c < (is_a ? f.cols : hi); ++c)
      f.x[r * f.cols + c] = row ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t layout) {
  [[maybe_unused]] const ::emu::WarpCollective collective;
  detail::check_pointer(p, ldm, sizeof(float));
  int first, last;
  detail::lane_share<M, N>(&first, &last);
  for (int e = 0; e < M * N; ++e) {
    const int r = e / N, c = e % N;
    f.x[e] = e >= first && e < last ? (layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) : NAN;
  }
}

// Each lane writes its own share of the tile (as on a GPU, where a lane holds only some of the
// elements): blocks of num_elements / 32 consecutive elements, lane by lane. So a lane that reads
// elements of the stored tile before a __syncwarp may find them not yet written.
template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
  [[maybe_unused]] const ::emu::WarpCollective collective;
  detail::check_pointer(p, ldm, sizeof(float));
  int first, last;
  detail::lane_share<M, N>(&first, &last);
  for (int i = first; i < last; ++i) {
    const int r = i / f.cols, c = i % f.cols;
    (layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[i];
  }
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

// d = a b + c with fp32 accumulation (fp16 products are exact in fp32).
template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  // Only the lane's share of D (the elements its store writes) is computed; the rest become NaN,
  // so code that used them (which CUDA leaves unspecified) gives visibly wrong results.
  constexpr bool tf32 = std::is_same<T, precision::tf32>::value;
  int first, last;
  detail::lane_share<M, N>(&first, &last);
  float out[M * N];  // the share, computed before d (which may be c) is written
  float arow[K], bcol[K];
  int row_loaded = -1;
  for (int e = first; e < last; ++e) {
    const int i = e / N, j = e % N;
    if (i != row_loaded) {
      for (int k = 0; k < K; ++k) arow[k] = detail::to_float(a.x[i * K + k]);
      row_loaded = i;
    }
    for (int k = 0; k < K; ++k) bcol[k] = detail::to_float(b.x[k * N + j]);
    float s = c.x[e];
    for (int k = 0; k < K; ++k) {
      if (tf32 && !(detail::is_tf32(arow[k]) && detail::is_tf32(bcol[k])))
        ::emu::fatal("wmma: a tf32 input element was not converted with __float_to_tf32");
      s += arow[k] * bcol[k];
    }
    out[e] = s;
  }
  if (&d != &c)
    for (int e = 0; e < M * N; ++e) d.x[e] = NAN;
  for (int e = first; e < last; ++e) d.x[e] = out[e];
}

}  // namespace wmma
}  // namespace nvcuda
