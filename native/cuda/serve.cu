// The ops of the split first layer on the GPU (full-catalog scoring and evaluation): matmul_nt is
// one cuBLASLt GEMM on a column block of a weight (the layer's user or item part); add_row adds
// one row vector to every row of a matrix with an optional ReLU, one thread per element;
// gather_add_relu adds a row of each of two tables per output row, one thread per 4 columns
// (16-byte loads of both rows, coalesced within a row; the item rows stay in L2).
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

// out[r, 4q..4q+3] = relu(a[ia[r], ...] + b[ib[r], ...]); cols % 4 == 0.
__global__ void gather_add_relu_vec4(const float* a, const uint32_t* ia, const float* b, const uint32_t* ib, int64_t rows,
                                     int cols, void* out, DType t) {
  const int q4 = cols / 4;
  const int64_t total = rows * q4;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / q4;
    const int j = int(i - r * q4) * 4;
    const float4 x = *reinterpret_cast<const float4*>(a + int64_t(ia[r]) * cols + j);
    const float4 y = *reinterpret_cast<const float4*>(b + int64_t(ib[r]) * cols + j);
    const float4 v = make_float4(fmaxf(x.x + y.x, 0.0f), fmaxf(x.y + y.y, 0.0f), fmaxf(x.z + y.z, 0.0f), fmaxf(x.w + y.w, 0.0f));
    if (t == DType::F32) {
      *reinterpret_cast<float4*>(static_cast<float*>(out) + r * cols + j) = v;
    } else {
      __half2* o = reinterpret_cast<__half2*>(static_cast<__half*>(out) + r * cols + j);
      o[0] = __floats2half2_rn(v.x, v.y);
      o[1] = __floats2half2_rn(v.z, v.w);
    }
  }
}

__global__ void gather_add_relu_kernel(const float* a, const uint32_t* ia, const float* b, const uint32_t* ib, int64_t rows,
                                       int cols, void* out, DType t) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    const int j = int(i - r * cols);
    store(out, t, i, fmaxf(a[int64_t(ia[r]) * cols + j] + b[int64_t(ib[r]) * cols + j], 0.0f));
  }
}
}  // namespace

void CudaBackend::gather_add_relu(const float* a, const uint32_t* ia, const float* b, const uint32_t* ib, Mat out) {
  if (out.rows <= 0) return;
  use_device(device_);
  const int cols = int(out.cols);
  if (cols % 4 == 0)
    gather_add_relu_vec4<<<blocks_for(out.rows * (cols / 4)), kThreads, 0, stream_>>>(a, ia, b, ib, out.rows, cols, out.data,
                                                                                    out.dtype);
  else
    gather_add_relu_kernel<<<blocks_for(out.rows * cols), kThreads, 0, stream_>>>(a, ia, b, ib, out.rows, cols, out.data,
                                                                                out.dtype);
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
