// The output unit on the GPU: one warp per row. head_forward: logit = w . [gmf ; mlp] + b (lanes
// take strided features, a shuffle reduction sums them). head_forward_backward also computes the
// sigmoid-BCE loss and its gradient in the same pass: g = (sigmoid(z) - y) * grad_scale (times
// the loss scale under --amp), writes d_gmf = g w_gmf and d_mlp = g w_mlp, and accumulates the
// weight gradients in shared memory (one global atomic per weight per block).
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

__device__ __forceinline__ float row_logit(const float* gmf, const void* mlp, DType mt, int64_t row, HeadParams p, int lane) {
  float s = 0.0f;
  for (int j = lane; j < p.factors; j += 32) s += p.w[j] * gmf[row * p.factors + j];
  for (int j = lane; j < p.mlp_width; j += 32) s += p.w[p.factors + j] * load(mlp, mt, row * p.mlp_width + j);
  return warp_sum(s) + p.b[0];
}

__global__ void head_forward_kernel(const float* gmf, const void* mlp, DType mt, int rows, HeadParams p, float* logits) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t row = warp; row < rows; row += warps) {
    const float z = row_logit(gmf, mlp, mt, row, p, lane);
    if (lane == 0) logits[row] = z;
  }
}

__global__ void head_loss_kernel(const float* gmf, const void* mlp, DType mt, const float* labels, int rows, HeadParams p,
                                 float grad_scale, const float* loss_scale, float* d_gmf, void* d_mlp, float* grad_w,
                                 float* grad_b, double* loss_sum) {
  extern __shared__ float acc[];  // [factors + mlp_width + 1] weight-gradient sums, then the loss
  const int width = p.factors + p.mlp_width;
  for (int j = threadIdx.x; j <= width + 1; j += blockDim.x) acc[j] = 0.0f;
  __syncthreads();
  const float scale = grad_scale * (loss_scale ? *loss_scale : 1.0f);
  const int lane = threadIdx.x & 31;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  float loss = 0.0f;
  for (int64_t row = warp; row < rows; row += warps) {
    const float z = row_logit(gmf, mlp, mt, row, p, lane);
    const float y = labels[row];
    loss += fmaxf(z, 0.0f) - z * y + log1pf(expf(-fabsf(z)));
    const float g = (1.0f / (1.0f + expf(-z)) - y) * scale;
    for (int j = lane; j < p.factors; j += 32) {
      d_gmf[row * p.factors + j] = g * p.w[j];
      atomicAdd(&acc[j], g * gmf[row * p.factors + j]);
    }
    for (int j = lane; j < p.mlp_width; j += 32) {
      store(d_mlp, mt, row * p.mlp_width + j, g * p.w[p.factors + j]);
      atomicAdd(&acc[p.factors + j], g * load(mlp, mt, row * p.mlp_width + j));
    }
    if (lane == 0) atomicAdd(&acc[width], g);
  }
  if (lane == 0) atomicAdd(&acc[width + 1], loss);  // every lane computed the same loss
  __syncthreads();
  for (int j = threadIdx.x; j < width; j += blockDim.x) atomicAdd(&grad_w[j], acc[j]);
  if (threadIdx.x == 0) {
    atomicAdd(grad_b, acc[width]);
    atomicAdd(loss_sum, double(acc[width + 1]));
  }
}

unsigned head_blocks(int rows) {
  const int64_t warps_needed = rows;
  const int64_t b = (warps_needed + (kThreads / 32) - 1) / (kThreads / 32);
  return unsigned(b < 1 ? 1 : (b > 4096 ? 4096 : b));  // at most 4096 blocks: fewer global atomics
}

}  // namespace

void CudaBackend::head_forward(Mat gmf, Mat mlp, const HeadParams& p, float* logits) {
  const int rows = int(gmf.rows);
  if (rows <= 0) return;
  use_device(device_);
  head_forward_kernel<<<blocks_for(int64_t(rows) * 32), kThreads, 0, stream_>>>(gmf.f32(), mlp.data, mlp.dtype, rows, p,
                                                                                logits);
  NCF_LAUNCHED();
}

void CudaBackend::head_forward_backward(Mat gmf, Mat mlp, const float* labels, const HeadParams& p, float grad_scale,
                                        const LossScaler* scaler, Mat d_gmf, Mat d_mlp, float* grad_w, float* grad_b,
                                        double* loss_sum) {
  const int rows = int(gmf.rows);
  use_device(device_);
  NCF_CUDA(cudaMemsetAsync(grad_w, 0, sizeof(float) * size_t(p.factors + p.mlp_width), stream_));
  NCF_CUDA(cudaMemsetAsync(grad_b, 0, sizeof(float), stream_));
  if (rows <= 0) return;
  const size_t smem = sizeof(float) * size_t(p.factors + p.mlp_width + 2);
  head_loss_kernel<<<head_blocks(rows), kThreads, smem, stream_>>>(gmf.f32(), mlp.data, mlp.dtype, labels, rows, p,
                                                                  grad_scale, scaler ? scaler->scale : nullptr,
                                                                  d_gmf.f32(), d_mlp.data, grad_w, grad_b, loss_sum);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
