// The serving ops on the GPU: matmul_nt is one cuBLASLt GEMM on a column block of a weight (the
// first layer's user or item part); add_row adds one row vector to every row of a matrix with an
// optional ReLU, one thread per element.
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
}  // namespace

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
