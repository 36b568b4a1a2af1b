// The ops of the split first layer on the GPU (full-catalog scoring and evaluation): matmul_nt is
// one cuBLASLt GEMM on a column block of a weight (the layer's user or item part); add_row adds
// one row vector to every row of a matrix with an optional ReLU, one thread per element;
// gather_add_relu adds a row of each of two tables (fp32, or fp16 for --amp evaluation) per output
// row, one thread per 8 columns (16-byte loads of both rows, coalesced within a row; the item rows
// stay in L2, the more of them in fp16).
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {
__global__ void add_row_kernel(const float* x, const float* row, float* y, int64_t rows, int cols, bool relu) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i] + row[i % cols];
    y[i] = relu ? fmaxf(v, 0.0f) : v;
  }
}

// out[r, 8q..8q+7] = relu(a[ia[r], ...] + b[ib[r], ...]) with tables of T (fp32 or fp16); cols % 8
// == 0 and every row 16-byte aligned: 16- or 32-byte loads of both rows and one store.
template <typename T>
__global__ void gather_add_relu_vec8(const T* a, const uint32_t* ia, const T* b, const uint32_t* ib, int64_t rows, int cols,
                                     void* out, DType t) {
  const int q8 = cols / 8;
  const int64_t total = rows * q8;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / q8;
    const int j = int(i - r * q8) * 8;
    float x[8], y[8];
    load8(a + int64_t(ia[r]) * cols + j, x);
    load8(b + int64_t(ib[r]) * cols + j, y);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] = fmaxf(x[k] + y[k], 0.0f);
    if (t == DType::F32) store8(static_cast<float*>(out) + r * cols + j, x);
    else store8(static_cast<__half*>(out) + r * cols + j, x);
  }
}

// The same value by value, for any width and alignment.
__global__ void gather_add_relu_kernel(const void* a, const uint32_t* ia, const void* b, const uint32_t* ib, DType in,
                                       int64_t rows, int cols, void* out, DType t) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    const int j = int(i - r * cols);
    store(out, t, i, fmaxf(load(a, in, int64_t(ia[r]) * cols + j) + load(b, in, int64_t(ib[r]) * cols + j), 0.0f));
  }
}
}  // namespace

void CudaBackend::gather_add_relu(Mat a, const uint32_t* ia, Mat b, const uint32_t* ib, Mat out) {
  if (a.dtype != b.dtype || a.cols != out.cols || b.cols != out.cols)
    fail(ErrorCode::InvalidArgument, "gather_add_relu: tables of one type and the output's width");
  if (out.rows <= 0) return;
  use_device(device_);
  const int cols = int(out.cols);
  if (cols % 8 == 0 && aligned_to(a.data, 16) && aligned_to(b.data, 16) && aligned_to(out.data, 16)) {
    const unsigned blocks = blocks_for(out.rows * (cols / 8));
    if (a.dtype == DType::F16)
      gather_add_relu_vec8<__half><<<blocks, kThreads, 0, stream_>>>(static_cast<const __half*>(a.data), ia,
                                                                     static_cast<const __half*>(b.data), ib, out.rows, cols,
                                                                     out.data, out.dtype);
    else
      gather_add_relu_vec8<float><<<blocks, kThreads, 0, stream_>>>(a.f32(), ia, b.f32(), ib, out.rows, cols, out.data, out.dtype);
  } else {
    gather_add_relu_kernel<<<blocks_for(out.rows * cols), kThreads, 0, stream_>>>(a.data, ia, b.data, ib, a.dtype, out.rows,
                                                                                cols, out.data, out.dtype);
  }
  NCF_LAUNCHED();
}

void CudaBackend::matmul_nt(Mat a, const float* w, int ldw, Mat out) {
  if (a.rows <= 0) return;
  use_device(device_);
  // out [rows x outCols] = a [rows x in] W[:, :in]^T
  gemm_->run(gemm_call(int(a.rows), int(out.cols), int(a.cols), a.data, DType::F32, int(a.cols), false, w, DType::F32, ldw, true,
                       out.data, DType::F32, int(out.cols)),
             stream_);
}

void CudaBackend::add_row(Mat x, const float* row, Mat y, bool relu) {
  if (x.rows <= 0) return;
  use_device(device_);
  add_row_kernel<<<blocks_for(x.rows * x.cols), kThreads, 0, stream_>>>(x.f32(), row, y.f32(), x.rows, int(x.cols), relu);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
