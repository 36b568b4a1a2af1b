// The ops of the first layer by parts on the GPU (training with large batches, evaluation and
// full-catalog scoring; Network::first_layer_parts):
// - matmul_nt, matmul_nn: one cuBLASLt GEMM each on a column block of a weight (the layer's user or
//   item part; fp16 Tensor Cores for fp16 parts);
// - add_row: one row vector added to every row of a matrix (optional ReLU), one thread per element;
// - gather_add_relu: a row of each of two tables added per output row, then ReLU and dropout
//   (relu_dropout8, as linear_forward) and the live-unit byte: one thread per 8 columns, 16-byte
//   loads of both rows (coalesced within a row; the item rows stay in L2, the more of them in
//   fp16), one 16- or 32-byte store;
// - pair_row_sums: one thread per 8 columns of a 16-row tile reads each row once (a warp: one
//   row's 256 columns) and adds it into its item's sums (16-byte vector atomics on sm_90) and into
//   a running sum of its user's rows, flushed once per run (a batch is grouped by user: ~8 rows
//   per user at ml-20m's shape); the sums are L2-resident for the items, streamed for the users.
#include "cuda_backend.cuh"
#include "relu_dropout8.cuh"

namespace ncf::cuda {

namespace {
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
                                     O* out, Dropout d, UnitMask mask) {
  const int q8 = cols / 8;
  const int64_t total = rows * q8;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / q8;
    const int g = int(i - r * q8), j = g * 8;
    float x[8], y[8];
    load8(a + int64_t(ia[r]) * cols + j, x);
    load8(b + int64_t(ib[r]) * cols + j, y);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] += y[k];
    const uint32_t live = relu_dropout8<O>(x, 8, nullptr, true, d, r, g);
    store8(out + r * cols + j, x);
    store_live(mask, r, g, live);
  }
}

// The same value by value within each group of 8, for any width and alignment.
template <typename O>
__global__ void gather_add_relu_kernel(const void* a, const uint32_t* ia, const void* b, const uint32_t* ib, DType in,
                                       int64_t rows, int cols, O* out, Dropout d, UnitMask mask) {
  const int groups = (cols + 7) / 8;
  const int64_t total = rows * groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / groups;
    const int g = int(i - r * groups), j0 = g * 8, lanes = min(8, cols - j0);
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
                   UnitMask mask, bool vec8, cudaStream_t stream) {
  const int cols = int(out.cols);
  O* o = static_cast<O*>(out.data);
  if (vec8)
    gather_add_relu_vec8<T, O><<<blocks_for(out.rows * (cols / 8)), kThreads, 0, stream>>>(
        static_cast<const T*>(a.data), ia, static_cast<const T*>(b.data), ib, out.rows, cols, o, d, mask);
  else
    gather_add_relu_kernel<O><<<blocks_for(out.rows * ((cols + 7) / 8)), kThreads, 0, stream>>>(
        a.data, ia, b.data, ib, a.dtype, out.rows, cols, o, d, mask);
}

// Rows per tile of pair_row_sums_vec8.
constexpr int kSumRows = 16;

template <typename T>
__global__ void pair_row_sums_vec8(const T* __restrict__ dz, const uint32_t* users, const uint32_t* items, int64_t n,
                                   int cols, float* user_sums, float* item_sums) {
  const int groups = cols / 8;
  const int64_t total = (n + kSumRows - 1) / kSumRows * groups;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t tile = q / groups;
    const int k = int(q - tile * groups) * 8;
    const int64_t r0 = tile * kSumRows, r1 = min(n, r0 + kSumRows);
    RunSum8 user(users[r0]);
    for (int64_t r = r0; r < r1; ++r) {
      float d[8];
      load8(dz + r * cols + k, d);
      atomic_add8(item_sums + int64_t(items[r]) * cols + k, d);
      user.add(users[r], d, user_sums + k, cols);
    }
    user.flush(user_sums + k, cols);
  }
}

__global__ void pair_row_sums_kernel(const void* dz, DType t, const uint32_t* users, const uint32_t* items, int64_t n,
                                     int cols, float* user_sums, float* item_sums) {
  const int64_t total = n * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    const int j = int(i - r * cols);
    const float v = load(dz, t, i);
    atomicAdd(user_sums + int64_t(users[r]) * cols + j, v);
    atomicAdd(item_sums + int64_t(items[r]) * cols + j, v);
  }
}
}  // namespace

void CudaBackend::gather_add_relu(Mat a, const uint32_t* ia, Mat b, const uint32_t* ib, const Dropout& d, Mat out,
                                  UnitMask mask) {
  if (a.dtype != b.dtype || a.cols != out.cols || b.cols != out.cols)
    fail(ErrorCode::InvalidArgument, "gather_add_relu: tables of one type and the output's width");
  if (out.rows <= 0) return;
  use_device(device_);
  const bool vec8 = out.cols % 8 == 0 && aligned_to(a.data, 16) && aligned_to(b.data, 16) && aligned_to(out.data, 16);
  const bool half_tables = a.dtype == DType::F16, half_out = out.dtype == DType::F16;
  if (half_tables && half_out) launch_gather<__half, __half>(a, ia, b, ib, d, out, mask, vec8, stream_);
  else if (half_tables) launch_gather<__half, float>(a, ia, b, ib, d, out, mask, vec8, stream_);
  else if (half_out) launch_gather<float, __half>(a, ia, b, ib, d, out, mask, vec8, stream_);
  else launch_gather<float, float>(a, ia, b, ib, d, out, mask, vec8, stream_);
  NCF_LAUNCHED();
}

void CudaBackend::pair_row_sums(Mat dz, const uint32_t* users, const uint32_t* items, Mat user_sums, Mat item_sums) {
  if (user_sums.dtype != DType::F32 || item_sums.dtype != DType::F32 || user_sums.cols != dz.cols ||
      item_sums.cols != dz.cols)
    fail(ErrorCode::InvalidArgument, "pair_row_sums: fp32 sums of dz's width");
  const int64_t n = dz.rows;
  const int cols = int(dz.cols);
  if (n <= 0) return;
  use_device(device_);
  if (cols % 8 == 0 && aligned_to(dz.data, 16) && aligned_to(user_sums.data, 16) && aligned_to(item_sums.data, 16)) {
    const unsigned blocks = blocks_for((n + kSumRows - 1) / kSumRows * (cols / 8));
    if (dz.dtype == DType::F16)
      pair_row_sums_vec8<__half><<<blocks, kThreads, 0, stream_>>>(static_cast<const __half*>(dz.data), users, items, n, cols,
                                                                   user_sums.f32(), item_sums.f32());
    else
      pair_row_sums_vec8<float><<<blocks, kThreads, 0, stream_>>>(dz.f32(), users, items, n, cols, user_sums.f32(),
                                                                  item_sums.f32());
  } else {
    pair_row_sums_kernel<<<blocks_for(n * cols), kThreads, 0, stream_>>>(dz.data, dz.dtype, users, items, n, cols,
                                                                         user_sums.f32(), item_sums.f32());
  }
  NCF_LAUNCHED();
}

void CudaBackend::matmul_nt(Mat a, const void* w, int ldw, Mat out) {
  if (a.rows <= 0) return;
  use_device(device_);
  // out [rows x outCols] = a [rows x in] W[:, :in]^T, W in a's type
  gemm_->run(gemm_call(int(a.rows), int(out.cols), int(a.cols), a.data, a.dtype, int(a.cols), false, w, a.dtype, ldw, true,
                       out.data, out.dtype, int(out.cols)),
             stream_);
}

void CudaBackend::matmul_nn(Mat a, const float* w, int ldw, Mat out) {
  if (a.rows != out.rows) fail(ErrorCode::InvalidArgument, "matmul_nn: a and out differ in rows");
  if (a.rows <= 0) return;
  use_device(device_);
  // out [rows x outCols] = a [rows x k] W[:, :outCols], W [k x ldw]
  gemm_->run(gemm_call(int(a.rows), int(out.cols), int(a.cols), a.data, DType::F32, int(a.cols), false, w, DType::F32, ldw,
                       false, out.data, DType::F32, int(out.cols)),
             stream_);
}

void CudaBackend::add_row(Mat x, const float* row, Mat y, bool relu) {
  if (x.dtype != y.dtype) fail(ErrorCode::InvalidArgument, "add_row: x and y of one type");
  if (x.rows <= 0) return;
  use_device(device_);
  const unsigned blocks = blocks_for(x.rows * x.cols);
  if (x.dtype == DType::F16)
    add_row_kernel<__half><<<blocks, kThreads, 0, stream_>>>(static_cast<const __half*>(x.data), row,
                                                             static_cast<__half*>(y.data), x.rows, int(x.cols), relu);
  else
    add_row_kernel<float><<<blocks, kThreads, 0, stream_>>>(x.f32(), row, y.f32(), x.rows, int(x.cols), relu);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
