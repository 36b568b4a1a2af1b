// The hidden layers on the GPU.
// linear_forward: y = relu(x W^T + b) as one cuBLASLt GEMM with the RELU_BIAS epilogue (TF32 or
// fp32 for fp32 activations, fp16 Tensor Cores with fp32 accumulation under --amp), then the
// dropout kernel in place: one thread per 8 features, whose keep decisions come from one Philox
// block drawn through cuRAND's device API (core/dropout.h), reading and writing 16 or 32 bytes.
// If cuBLASLt offers no algorithm with the epilogue, a plain GEMM is followed by the same kernel
// doing bias + ReLU + dropout.
// linear_backward: one kernel turns dy into dz = dy * (y > 0) * scale in place (y > 0 exactly
// where ReLU passed and dropout kept) and sums its columns into grad_b (per-thread column sums,
// one atomic add per column per block); then grad_w = dz^T x (fp32 output) and dx = dz W.
// The dropout mask forbids cuBLASLt's DRELU_BGRAD epilogue, which knows only the ReLU mask.
#include "../core/dropout.h"
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

// For each row and group of 8 features: optional bias + ReLU, then optional dropout.
__global__ void bias_relu_dropout_kernel(void* y, DType t, int rows, int cols, const float* bias, Dropout d) {
  const int groups = (cols + 7) / 8;
  const int64_t total = int64_t(rows) * groups;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = q / groups;
    const int g = int(q - row * groups);
    const U32x4 blk = d.active ? dropout_block(d, uint64_t(row), uint32_t(g)) : U32x4{0, 0, 0, 0};
    const int j0 = g * 8, lanes = min(8, cols - j0);
    if (t == DType::F16 && lanes == 8 && cols % 8 == 0) {
      // 8 halves = one 16-byte load and store.
      Half8 p8;
      p8.raw = *reinterpret_cast<const uint4*>(static_cast<const __half*>(y) + row * cols + j0);
      __half2* h = p8.h2;
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        float2 v = __half22float2(h[p]);
        if (bias) {
          v.x = fmaxf(v.x + bias[j0 + 2 * p], 0.0f);
          v.y = fmaxf(v.y + bias[j0 + 2 * p + 1], 0.0f);
        }
        if (d.active) {
          v.x = dropout_keep(d, blk, 2 * p) ? v.x * d.scale : 0.0f;
          v.y = dropout_keep(d, blk, 2 * p + 1) ? v.y * d.scale : 0.0f;
        }
        h[p] = __floats2half2_rn(v.x, v.y);
      }
      *reinterpret_cast<uint4*>(static_cast<__half*>(y) + row * cols + j0) = p8.raw;
      continue;
    }
    for (int l = 0; l < lanes; ++l) {
      const int64_t i = row * cols + j0 + l;
      float v = load(y, t, i);
      if (bias) v = fmaxf(v + bias[j0 + l], 0.0f);
      if (d.active) v = dropout_keep(d, blk, l) ? v * d.scale : 0.0f;
      store(y, t, i, v);
    }
  }
}

// dz = dy * (y > 0) * scale in place, and grad_b[j] += sum over the block's rows of dz[:, j].
// Threads of a block cover consecutive columns of the same rows, so loads are coalesced.
__global__ void relu_dropout_backward_kernel(void* dy, const void* y, DType t, int rows, int cols, float scale,
                                             int rows_per_block, float* grad_b) {
  const int64_t r0 = int64_t(blockIdx.x) * rows_per_block;
  const int64_t r1 = min(int64_t(rows), r0 + rows_per_block);
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    float sum = 0.0f;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r * cols + j;
      const float g = load(y, t, i) > 0.0f ? load(dy, t, i) * scale : 0.0f;
      store(dy, t, i, g);
      sum += g;
    }
    atomicAdd(&grad_b[j], sum);
  }
}

}  // namespace

void CudaBackend::linear_forward(Mat x, const LinearParams& p, const Dropout& d, Mat y) {
  const int n = int(x.rows);
  if (n <= 0) return;
  use_device(device_);
  const bool half = x.dtype == DType::F16;
  if (half && (!p.w_half || !p.b_half)) fail(ErrorCode::InvalidArgument, "linear_forward: fp16 activations need fp16 weights");
  // y [n x out] = x [n x in] W^T, W [out x in]
  GemmCall g = gemm_call(n, p.out, p.in, x.data, x.dtype, p.in, false, half ? p.w_half : p.w, x.dtype, p.in, true, y.data,
                         y.dtype, p.out);
  g.epilogue = Epilogue::ReluBias;
  g.bias = half ? p.b_half : p.b;  // the epilogue's bias has the output's type
  const float* bias_in_kernel = nullptr;
  if (!gemm_->run(g, stream_)) {
    g.epilogue = Epilogue::None;
    g.bias = nullptr;
    gemm_->run(g, stream_);
    bias_in_kernel = p.b;
  }
  if (bias_in_kernel || d.active) {
    bias_relu_dropout_kernel<<<blocks_for(int64_t(n) * ((p.out + 7) / 8)), kThreads, 0, stream_>>>(
        y.data, y.dtype, n, p.out, bias_in_kernel, d);
    NCF_LAUNCHED();
  }
}

void CudaBackend::linear_backward(Mat dy, Mat y, Mat x, const LinearParams& p, const Dropout& d, Mat dx, float* grad_w,
                                  float* grad_b) {
  const int n = int(dy.rows);
  use_device(device_);
  NCF_CUDA(cudaMemsetAsync(grad_b, 0, sizeof(float) * size_t(p.out), stream_));
  if (n <= 0) {
    NCF_CUDA(cudaMemsetAsync(grad_w, 0, sizeof(float) * size_t(p.out) * size_t(p.in), stream_));
    return;
  }
  const int rows_per_block = 256;
  relu_dropout_backward_kernel<<<unsigned((n + rows_per_block - 1) / rows_per_block), min(p.out, 256), 0, stream_>>>(
      dy.data, y.data, dy.dtype, n, p.out, d.active ? d.scale : 1.0f, rows_per_block, grad_b);
  NCF_LAUNCHED();
  const bool half = dy.dtype == DType::F16;
  linear_weight_grad(dy, x, grad_w);
  if (dx.empty()) return;
  // dx [n x in] = dz [n x out] W [out x in]
  gemm_->run(gemm_call(n, p.in, p.out, dy.data, dy.dtype, p.out, false, half ? p.w_half : p.w, dy.dtype, p.in, false, dx.data,
                       dx.dtype, p.in),
             stream_);
}

void CudaBackend::linear_weight_grad(Mat dz, Mat x, float* grad_w) {
  const int n = int(dz.rows), out = int(dz.cols), in = int(x.cols);
  use_device(device_);
  if (n <= 0) {
    NCF_CUDA(cudaMemsetAsync(grad_w, 0, sizeof(float) * size_t(out) * size_t(in), stream_));
    return;
  }
  // grad_w [out x in] = dz^T [out x n] x [n x in], accumulated and stored in fp32
  gemm_->run(gemm_call(out, in, n, dz.data, dz.dtype, out, true, x.data, x.dtype, in, false, grad_w, DType::F32, in), stream_);
}

}  // namespace ncf::cuda
