// The ops of the first layer by parts on the GPU (training with large batches, evaluation and
// full-catalog scoring; Network::first_layer_parts):
// - matmul_nt, matmul_nn: one cuBLASLt GEMM each on a column block of a weight (the layer's user or
//   item part; fp16 Tensor Cores for fp16 parts);
// - add_row: one row vector added to every row of a matrix (optional ReLU), one thread per element;
// - gather_add_relu: a row of each of two tables added per output row, then ReLU and dropout
//   (relu_dropout8, as linear_forward; fp16 tables and output in half2 arithmetic,
//   relu_dropout8_half) and the live-unit byte: one thread per 8 columns, 16-byte
//   loads of both rows (coalesced within a row; the item rows stay in L2, the more of them in
//   fp16), one 16- or 32-byte store;
// - pair_row_sums, for a batch in ascending user order: each user's range of rows (one pass over
//   the rows), then one warp per user sums its rows in row order, 8 columns per lane (a warp
//   reads one row's 256 columns per step) and stores the user's sum once, in its type (zeros for
//   a user without rows): no atomics and no zeroing pass on the large per-user side, and the same
//   sums on every run. The per-item sums come from the rows sorted by item (a counting sort of
//   the batch's items, then a warp per 32 sorted rows, one store or 16-byte vector atomic per
//   item run): a second read of the gradient, 0.5 KB a row in fp16, where adding each row into
//   its item's sums from the per-user kernel took 1 KB a row of vector atomics and measured
//   1.3 ms a 1M batch on an H100 (NCF_CUDA_ITEM_SORT=0 does that). For rows in another order:
//   the per-user sums by atomics too, in fp32 (a thread sums a 16-row tile's runs of one user
//   first), converted after if they are fp16.
#include "cuda_backend.cuh"
#include "relu_dropout8.cuh"

namespace ncf::cuda {

namespace {
// Calls f(A(), B()) with A and B each __half or float, as half_a and half_b say: the kernels'
// element types from two matrices' types.
template <typename F>
void with_element_types(bool half_a, bool half_b, F f) {
  if (half_a && half_b) f(__half(), __half());
  else if (half_a) f(__half(), float());
  else if (half_b) f(float(), __half());
  else f(float(), float());
}

template <typename T>
__global__ void add_row_kernel(const T* x, const float* row, T* y, int64_t rows, int cols, bool relu) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = load(x, dtype_of<T>(), i) + row[i % cols];
    store(y, dtype_of<T>(), i, relu ? fmaxf(v, 0.0f) : v);
  }
}

// out[r, 8q..8q+7] = dropout(relu(a[ia[r], ...] + b[ib[r], ...])) with tables of T and output of
// O (fp32 or fp16); cols % 8 == 0 and every row 16-byte aligned.
template <typename T, typename O>
__global__ void gather_add_relu_vec8(const T* a, const uint32_t* ia, const T* b, const uint32_t* ib, int64_t rows, int cols,
                                     O* out, Dropout d, UnitMask mask, bool half_math) {
  // fp16 tables and output with half_math: in half2 arithmetic.
  const __half2 scale = half_scale(d);
  for (RowGroupWalk w(cols / 8); w.row < rows; w.next()) {
    const int64_t r = w.row;
    const int g = w.g, j = g * 8;
    const uint32_t live = add_relu_dropout8(a + int64_t(ia[r]) * cols + j, b + int64_t(ib[r]) * cols + j, out + r * cols + j, d,
                                            scale, half_math, r, g);
    store_live(mask, r, g, live);
  }
}

// The same value by value within each group of 8, for any width and alignment.
template <typename O>
__global__ void gather_add_relu_kernel(const void* a, const uint32_t* ia, const void* b, const uint32_t* ib, DType in,
                                       int64_t rows, int cols, O* out, Dropout d, UnitMask mask) {
  for (RowGroupWalk w((cols + 7) / 8); w.row < rows; w.next()) {
    const int64_t r = w.row;
    const int g = w.g, j0 = g * 8, lanes = min(8, cols - j0);
    float x[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int l = 0; l < lanes; ++l)
      x[l] = load(a, in, int64_t(ia[r]) * cols + j0 + l) + load(b, in, int64_t(ib[r]) * cols + j0 + l);
    const uint32_t live = relu_dropout8<O>(x, lanes, nullptr, true, d, r, g);
    for (int l = 0; l < lanes; ++l) store(out, dtype_of<O>(), r * cols + j0 + l, x[l]);
    store_live(mask, r, g, live);
  }
}

template <typename T, typename O>
void launch_gather(const Mat& a, const uint32_t* ia, const Mat& b, const uint32_t* ib, const Dropout& d, const Mat& out,
                   UnitMask mask, bool vec8, bool half_math, unsigned blocks, cudaStream_t stream) {
  const int cols = int(out.cols);
  O* o = static_cast<O*>(out.data);
  if (vec8)
    gather_add_relu_vec8<T, O><<<blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(a.data), ia, static_cast<const T*>(b.data), ib, out.rows, cols, o, d, mask, half_math);
  else
    gather_add_relu_kernel<O><<<blocks, kThreads, 0, stream>>>(
        a.data, ia, b.data, ib, a.dtype, out.rows, cols, o, d, mask);
}

// first[u], end[u]: the rows of user u in a batch sorted by user (zeroed first: empty for a user
// without rows).
__global__ void user_ranges_kernel(const uint32_t* users, int64_t n, uint32_t* first, uint32_t* end) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < n; r += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t u = users[r];
    if (r == 0 || users[r - 1] != u) first[u] = uint32_t(r);
    if (r == n - 1 || users[r + 1] != u) end[u] = uint32_t(r + 1);
  }
}

// The first layer's ReLU and dropout applied to gradient rows as the sums read them: 8 values
// d of row r, columns 8g..8g+7, times scale where the layer's live-unit bit is set, else 0 (what
// relu_dropout_backward would have written). bits null: no masking.
struct RowMask {
  const uint8_t* bits = nullptr;
  int64_t row_bytes = 0;  // the mask's ld / 8
  float scale = 1.0f;
};
__device__ __forceinline__ void mask8(const RowMask& m, uint32_t live, float* d) {
  if (!m.bits) return;
#pragma unroll
  for (int j = 0; j < 8; ++j) d[j] = (live >> j) & 1u ? d[j] * m.scale : 0.0f;
}

// A row's 8 columns as loaded, converted when used: fp16 rows keep their 16 bytes in 4 registers,
// so a warp can hold more rows' loads in flight (kRowsInFlight) without losing occupancy.
template <typename T>
struct Raw8 {
  float v[8];
  __device__ void load(const T* p) { load8(p, v); }
  __device__ void get(float* d) const {
#pragma unroll
    for (int j = 0; j < 8; ++j) d[j] = v[j];
  }
};
template <>
struct Raw8<__half> {
  uint4 raw;
  __device__ void load(const __half* p) { raw = *reinterpret_cast<const uint4*>(p); }
  __device__ void get(float* d) const { unpack8(raw, d); }
};
// Rows whose loads a warp issues before it adds any of them (a user's ~8 rows at ml-20m's shape
// in one round trip, where a loop of 4 and then 1 at a time waited for several).
template <typename T>
constexpr int kRowsInFlight = std::is_same<T, __half>::value ? 8 : 4;

// Rows row_of(0) .. row_of(count - 1) of dz (count <= kRowsInFlight<T>), columns k..k+7 (group
// g): every load and mask byte issued first, then visit(i, d) in order with the values masked.
template <typename T, typename RowOf, typename Visit>
__device__ __forceinline__ void rows_in_flight(const T* __restrict__ dz, int cols, int g, const RowMask& mask, int count,
                                               RowOf row_of, Visit visit) {
  constexpr int kR = kRowsInFlight<T>;
  Raw8<T> raw[kR];
  uint32_t live[kR];
#pragma unroll
  for (int i = 0; i < kR; ++i)
    if (i < count) {
      const int64_t r = row_of(i);
      raw[i].load(dz + r * cols + g * 8);
      live[i] = mask.bits ? mask.bits[r * mask.row_bytes + g] : 0xffu;
    }
#pragma unroll
  for (int i = 0; i < kR; ++i)
    if (i < count) {
      float d[8];
      raw[i].get(d);
      mask8(mask, live[i], d);
      visit(i, d);
    }
}

template <typename T, typename S>
__global__ void pair_row_sums_by_user(const T* __restrict__ dz, RowMask mask, const uint32_t* items, const uint32_t* first,
                                      const uint32_t* end, int64_t n_users, int cols, S* user_sums, float* item_sums) {
  const int lane = int(threadIdx.x) % 32, groups = cols / 8;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t u = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; u < n_users; u += warps) {
    const int64_t r0 = first[u], r1 = end[u];
    for (int g = lane; g < groups; g += 32) {
      const int k = g * 8;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      // kRowsInFlight rows at a time, summed in row order (and into their items' sums by
      // atomics, with NCF_CUDA_ITEM_SORT=0).
      constexpr int kR = kRowsInFlight<T>;
      for (int64_t r = r0; r < r1; r += kR)
        rows_in_flight(
            dz, cols, g, mask, int(min(int64_t(kR), r1 - r)), [&](int i) { return r + i; },
            [&](int i, const float* d) {
              if (item_sums) atomic_add8(item_sums + int64_t(items[r + i]) * cols + k, d);
#pragma unroll
              for (int j = 0; j < 8; ++j) acc[j] += d[j];
            });
      store8(user_sums + u * cols + k, acc);
    }
  }
}

// Sorted rows per warp in pair_row_sums_by_item (an item has ~40 rows in a 1M batch at ml-20m's
// shape, a popular one thousands: fixed chunks keep the warps' work even).
constexpr int kItemChunk = 32;

// The per-item sums from the rows sorted by item: a warp takes kItemChunk consecutive sorted
// rows (their batch rows and items staged in shared memory first), 8 columns per lane (one
// gathered row's 256 columns per step, kRowsInFlight rows' loads in flight),
// sums each item's run in registers, and at the run's end stores it where the run is the item's
// whole range, else adds it with 16-byte vector atomics (item_sums zeroed first): one atomic per
// chunk boundary inside an item instead of one per row.
template <typename T>
__global__ void pair_row_sums_by_item(const T* __restrict__ dz, RowMask mask, const uint32_t* order, const uint32_t* sorted_items,
                                      const uint32_t* start, const uint32_t* count, int64_t n, int cols,
                                      float* item_sums) {
  static_assert(kItemChunk == 32, "a chunk's rows and items are staged one per lane");
  // The warp's chunk: its batch rows and items, staged by one coalesced load per lane.
  __shared__ uint32_t chunk_rows[kThreads / 32][kItemChunk], chunk_items[kThreads / 32][kItemChunk];
  const int lane = int(threadIdx.x) % 32, groups = cols / 8, w = int(threadIdx.x) / 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t c = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; c * kItemChunk < n; c += warps) {
    const int64_t p0 = c * kItemChunk, p1 = min(n, p0 + kItemChunk);
    __syncwarp();  // the last chunk's reads are done
    if (p0 + lane < p1) {
      chunk_rows[w][lane] = order[p0 + lane];
      chunk_items[w][lane] = sorted_items[p0 + lane];
    }
    __syncwarp();
    for (int g = lane; g < groups; g += 32) {
      const int k = g * 8;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      uint32_t item = chunk_items[w][0];
      int64_t run0 = p0;
      auto flush = [&](int64_t run1) {
        float* dst = item_sums + int64_t(item) * cols + k;
        const int64_t b = start[item];
        if (run0 == b && run1 == b + count[item]) store8(dst, acc);
        else atomic_add8(dst, acc);
      };
      // Sorted row p's values d (masked) into its item's run.
      auto add = [&](int64_t p, const float* d) {
        const uint32_t v = chunk_items[w][p - p0];
        if (v != item) {
          flush(p);
          item = v;
          run0 = p;
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[j] = 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] += d[j];
      };
      constexpr int kR = kRowsInFlight<T>;
      for (int64_t p = p0; p < p1; p += kR)
        rows_in_flight(
            dz, cols, g, mask, int(min(int64_t(kR), p1 - p)), [&](int i) { return int64_t(chunk_rows[w][p + i - p0]); },
            [&](int i, const float* d) { add(p + i, d); });
      flush(p1);
    }
  }
}

// Both sums by atomics into zeroed fp32 arrays, for rows in any order (user_sums null: the items'
// alone).
template <typename T>
__global__ void pair_row_sums_vec8(const T* __restrict__ dz, const uint32_t* users, const uint32_t* items, int64_t n,
                                   int cols, float* user_sums, float* item_sums) {
  const int groups = cols / 8;
  const int64_t total = (n + kRunRows - 1) / kRunRows * groups;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t tile = q / groups;
    const int k = int(q - tile * groups) * 8;
    const int64_t r0 = tile * kRunRows, r1 = min(n, r0 + kRunRows);
    RunSum8 user(users[r0]);
    for (int64_t r = r0; r < r1; ++r) {
      float d[8];
      load8(dz + r * cols + k, d);
      atomic_add8(item_sums + int64_t(items[r]) * cols + k, d);
      if (user_sums) user.add(users[r], d, user_sums + k, cols);
    }
    if (user_sums) user.flush(user_sums + k, cols);
  }
}

__global__ void pair_row_sums_kernel(const void* dz, DType t, const uint32_t* users, const uint32_t* items, int64_t n,
                                     int cols, float* user_sums, float* item_sums) {
  const int64_t total = n * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    const int j = int(i - r * cols);
    const float v = load(dz, t, i);
    if (user_sums) atomicAdd(user_sums + int64_t(users[r]) * cols + j, v);
    atomicAdd(item_sums + int64_t(items[r]) * cols + j, v);
  }
}
}  // namespace

void CudaBackend::gather_add_relu(Mat a, const uint32_t* ia, Mat b, const uint32_t* ib, const Dropout& d, Mat out,
                                  UnitMask mask) {
  const OpSpan span(&op_times_, "gather_add_relu", stream_);
  if (a.dtype != b.dtype || a.cols != out.cols || b.cols != out.cols)
    fail(ErrorCode::InvalidArgument, "gather_add_relu: tables of one type and the output's width");
  if (out.rows <= 0) return;
  use_device(device_);
  const bool vec8 = out.cols % 8 == 0 && aligned_to(a.data, 16) && aligned_to(b.data, 16) && aligned_to(out.data, 16);
  with_element_types(a.dtype == DType::F16, out.dtype == DType::F16, [&](auto table_type, auto out_type) {
    launch_gather<decltype(table_type), decltype(out_type)>(a, ia, b, ib, d, out, mask, vec8, half_math(d),
                                                           grid(out.rows * ((out.cols + 7) / 8)), stream_);
  });
  NCF_LAUNCHED();
}

void CudaBackend::pair_row_sums(Mat dz, const LayerBelow* layer, const uint32_t* users, bool users_ascending,
                                const uint32_t* items, Mat user_sums, Mat item_sums) {
  const OpSpan span(&op_times_, "pair_row_sums", stream_);
  // An empty user_sums: hidden_backward took them; the items' sums alone.
  const bool user_side = user_sums.data != nullptr;
  if (item_sums.dtype != DType::F32 || (user_side && user_sums.cols != dz.cols) || item_sums.cols != dz.cols)
    fail(ErrorCode::InvalidArgument, "pair_row_sums: sums of dz's width, fp32 per item");
  const int64_t n = dz.rows;
  const int cols = int(dz.cols);
  use_device(device_);
  NCF_CUDA(cudaMemsetAsync(item_sums.data, 0, item_sums.bytes(), stream_));
  const bool half_sums = user_side && user_sums.dtype == DType::F16;
  const bool vec8 = cols % 8 == 0 && aligned_to(dz.data, 16) && aligned_to(user_sums.data, 16) && aligned_to(item_sums.data, 16);
  // NCF_CUDA_GROUPED=0 leaves sample_batch's rows in position order, whatever the caller says.
  // Without the user side, the sorted path is the items' sort.
  const bool sorted = user_side ? users_ascending && group_batches_ && sums_by_user_ : item_sort_;
  if (sorted && vec8 && (!layer || !layer->mask.empty())) {
    // Scratch: each user's first and end row; with the item sort, each item's count, first row and
    // cursor, and the sorted rows and their items.
    const size_t n_users = user_side ? size_t(user_sums.rows) : 0, n_items = size_t(item_sums.rows), rows = size_t(n);
    const size_t words = 2 * n_users + (item_sort_ ? 3 * n_items + 2 * rows : 0);
    if (sums_scratch_.size() < sizeof(uint32_t) * words) sums_scratch_ = BackendArray<unsigned char>(*this, sizeof(uint32_t) * words);
    uint32_t* first = reinterpret_cast<uint32_t*>(sums_scratch_.get());
    uint32_t* end = first + n_users;
    uint32_t *count = end + n_users, *cursor = count + n_items, *start = cursor + n_items;
    uint32_t *order = start + n_items, *sorted_items = order + rows;
    if (user_side) {
      NCF_CUDA(cudaMemsetAsync(first, 0, sizeof(uint32_t) * 2 * n_users, stream_));
      if (n > 0) user_ranges_kernel<<<grid(n), kThreads, 0, stream_>>>(users, n, first, end);
    }
    // The layer's masking as the kernels read dz; its bias gradient = the column sums of the item
    // sums (each row is in exactly one item's).
    RowMask mask;
    if (layer) {
      mask = RowMask{layer->mask.bits, layer->mask.ld / 8, layer->dropout.active ? layer->dropout.scale : 1.0f};
      NCF_CUDA(cudaMemsetAsync(layer->grad_b, 0, sizeof(float) * size_t(cols), stream_));
    }
    const bool sorted_by_item = item_sort_ && n > 0;
    // The batch's rows sorted by item (they do not depend on dz).
    if (sorted_by_item) counting_sort(items, n, uint32_t(n_items), count, cursor, start, order, sorted_items);
    const unsigned blocks = grid(int64_t(n_users) * 32);
    with_element_types(dz.dtype == DType::F16, half_sums, [&](auto dz_type, auto sum_type) {
      using T = decltype(dz_type);
      using S = decltype(sum_type);
      if (user_side) {
        const OpSpan by_user(&op_times_, "by_user", stream_);
        pair_row_sums_by_user<T, S><<<blocks, kThreads, 0, stream_>>>(
            static_cast<const T*>(dz.data), mask, items, first, end, user_sums.rows, cols, static_cast<S*>(user_sums.data),
            item_sort_ ? nullptr : item_sums.f32());
      }
      if (sorted_by_item) {
        const OpSpan by_item(&op_times_, "by_item", stream_);
        pair_row_sums_by_item<T><<<grid((n + kItemChunk - 1) / kItemChunk * 32), kThreads, 0, stream_>>>(
            static_cast<const T*>(dz.data), mask, order, sorted_items, start, count, n, cols, item_sums.f32());
      }
    });
    NCF_LAUNCHED();
    if (layer && n > 0) add_column_sums(item_sums, layer->grad_b);
    return;
  }
  // Other paths take the masking as a pass first.
  if (layer) relu_dropout_backward(dz, layer->y, layer->mask, layer->dropout, layer->grad_b);
  // Any order: the per-user sums by atomics, in fp32 (a scratch array when they are fp16).
  float* sums = user_side ? user_sums.f32() : nullptr;
  if (half_sums) {
    const size_t bytes = sizeof(float) * size_t(user_sums.rows) * size_t(cols);
    if (sums_scratch_.size() < bytes) sums_scratch_ = BackendArray<unsigned char>(*this, bytes);
    sums = reinterpret_cast<float*>(sums_scratch_.get());
  }
  if (user_side) NCF_CUDA(cudaMemsetAsync(sums, 0, sizeof(float) * size_t(user_sums.rows) * size_t(cols), stream_));
  if (n > 0) {
    if (vec8) {
      const unsigned blocks = grid((n + kRunRows - 1) / kRunRows * (cols / 8));
      if (dz.dtype == DType::F16)
        pair_row_sums_vec8<__half><<<blocks, kThreads, 0, stream_>>>(static_cast<const __half*>(dz.data), users, items, n, cols,
                                                                     sums, item_sums.f32());
      else
        pair_row_sums_vec8<float><<<blocks, kThreads, 0, stream_>>>(dz.f32(), users, items, n, cols, sums, item_sums.f32());
    } else {
      pair_row_sums_kernel<<<grid(n * cols), kThreads, 0, stream_>>>(dz.data, dz.dtype, users, items, n, cols, sums,
                                                                     item_sums.f32());
    }
    NCF_LAUNCHED();
  }
  if (half_sums) to_half(sums, user_sums.data, size_t(user_sums.rows) * size_t(cols));
}

namespace {
// out [rows x out.cols] = a [rows x k] times a column block of W in a's type: W[:, :k]^T for W
// [out.cols x ldw] (transposed, matmul_nt), or W[:, :out.cols] for W [k x ldw] (matmul_nn).
GemmCall weight_block_gemm(const Mat& a, const void* w, int ldw, bool transposed, const Mat& out) {
  return gemm_call(int(a.rows), int(out.cols), int(a.cols), a.data, a.dtype, int(a.cols), false, w, a.dtype, ldw, transposed,
                   out.data, out.dtype, int(out.cols));
}
}  // namespace

void CudaBackend::matmul_nt(Mat a, const void* w, int ldw, Mat out) {
  const OpSpan span(&op_times_, "matmul_nt", stream_);
  if (a.rows <= 0) return;
  use_device(device_);
  gemm_->run(weight_block_gemm(a, w, ldw, true, out), stream_);
}

void CudaBackend::matmul_nn(Mat a, const void* w, int ldw, Mat out) {
  const OpSpan span(&op_times_, "matmul_nn", stream_);
  if (a.rows != out.rows) fail(ErrorCode::InvalidArgument, "matmul_nn: a and out differ in rows");
  if (a.rows <= 0) return;
  use_device(device_);
  gemm_->run(weight_block_gemm(a, w, ldw, false, out), stream_);
}

void CudaBackend::add_row(Mat x, const float* row, Mat y, bool relu) {
  const OpSpan span(&op_times_, "add_row", stream_);
  if (x.dtype != y.dtype) fail(ErrorCode::InvalidArgument, "add_row: x and y of one type");
  if (x.rows <= 0) return;
  use_device(device_);
  const unsigned blocks = grid(x.rows * x.cols);
  if (x.dtype == DType::F16)
    add_row_kernel<__half><<<blocks, kThreads, 0, stream_>>>(static_cast<const __half*>(x.data), row,
                                                             static_cast<__half*>(y.data), x.rows, int(x.cols), relu);
  else
    add_row_kernel<float><<<blocks, kThreads, 0, stream_>>>(x.f32(), row, y.f32(), x.rows, int(x.cols), relu);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
