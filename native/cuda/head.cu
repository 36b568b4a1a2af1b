// The output unit on the GPU: eight lanes per row, four rows per warp at once. Lane s of a row's
// group takes features s, s + 8, s + 16, ... of [gmf ; mlp], so each load instruction of the group
// reads whole 32-byte sectors of the row, and three shuffles sum the group's partial dot products.
// head_forward: logit = w . [mf_user[u] * mf_item[v] ; mlp] + b, the GMF product formed from the
// table rows (evaluation and serving never write it out). head_forward_backward takes the logit
// from a stored gmf and computes in the same pass the sigmoid-BCE loss and its gradient
// g = (sigmoid(z) - y) * grad_scale (times the loss scale under --amp), writes d_gmf = g w_gmf and
// d_mlp = g w_mlp, and sums the weight gradients g x over the rows: in registers per lane (its features are fixed; beyond kRegFeatures per part, in
// shared memory atomics), then over the warp by shuffles, the block in shared memory, and one
// global atomic per weight per block.
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

constexpr int kRowLanes = 8;
constexpr int kRowsPerWarp = 32 / kRowLanes;
constexpr int kRegFeatures = 16;  // per lane and part (GMF, MLP): weight-gradient sums in registers

// The sum of v over the 8 lanes of a row's group, in each of them.
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = kRowLanes / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Row `row`'s logit in every lane of its group (sub: the lane's index in the group), its GMF
// values read from gmf, or (gmf null) formed as mu * mi; rows past the end (valid false) take
// part in the shuffles with zeros.
__device__ __forceinline__ float row_logit(const float* gmf, const float* mu, const float* mi, const void* mlp, DType mt,
                                          int64_t row, bool valid, HeadParams p, int sub) {
  float s = 0.0f;
  if (valid) {
    if (gmf)
      for (int j = sub; j < p.factors; j += kRowLanes) s += p.w[j] * gmf[row * p.factors + j];
    else
      for (int j = sub; j < p.factors; j += kRowLanes) s += p.w[j] * (mu[j] * mi[j]);
    for (int j = sub; j < p.mlp_width; j += kRowLanes) s += p.w[p.factors + j] * load(mlp, mt, row * p.mlp_width + j);
  }
  return group_sum(s) + p.b[0];
}

__global__ void head_forward_kernel(EmbedTables t, const uint32_t* users, const uint32_t* items, const void* mlp, DType mt,
                                    int rows, HeadParams p, float* logits) {
  const int lane = threadIdx.x & 31, sub = lane % kRowLanes;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t base = warp * kRowsPerWarp; base < rows; base += warps * kRowsPerWarp) {
    const int64_t row = base + lane / kRowLanes;
    const bool valid = row < rows;
    const float* mu = valid ? t.mf_user + int64_t(users[row]) * p.factors : nullptr;
    const float* mi = valid ? t.mf_item + int64_t(items[row]) * p.factors : nullptr;
    const float z = row_logit(nullptr, mu, mi, mlp, mt, row, valid, p, sub);
    if (valid && sub == 0) logits[row] = z;
  }
}

__global__ void head_loss_kernel(const float* gmf, const void* mlp, DType mt, const float* labels, int rows, HeadParams p,
                                 float grad_scale, const float* loss_scale, float* d_gmf, void* d_mlp, float* grad_w,
                                 float* grad_b, double* loss_sum) {
  extern __shared__ float acc[];  // [factors + mlp_width] weight-gradient sums, the bias's, the loss
  const int f = p.factors, m = p.mlp_width, width = f + m;
  for (int j = threadIdx.x; j < width + 2; j += blockDim.x) acc[j] = 0.0f;
  __syncthreads();
  const float scale = grad_scale * (loss_scale ? *loss_scale : 1.0f);
  const int lane = threadIdx.x & 31, sub = lane % kRowLanes;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  float sum_g[kRegFeatures], sum_m[kRegFeatures];  // features sub + 8k of the GMF and MLP parts
#pragma unroll
  for (int k = 0; k < kRegFeatures; ++k) sum_g[k] = sum_m[k] = 0.0f;
  float loss = 0.0f, bias = 0.0f;
  for (int64_t base = warp * kRowsPerWarp; base < rows; base += warps * kRowsPerWarp) {
    const int64_t row = base + lane / kRowLanes;
    const bool valid = row < rows;
    const float z = row_logit(gmf, nullptr, nullptr, mlp, mt, row, valid, p, sub);
    if (!valid) continue;
    const float y = labels[row];
    const float g = (1.0f / (1.0f + expf(-z)) - y) * scale;
    if (sub == 0) {
      loss += fmaxf(z, 0.0f) - z * y + log1pf(expf(-fabsf(z)));
      bias += g;
    }
#pragma unroll
    for (int k = 0; k < kRegFeatures; ++k) {
      const int j = sub + kRowLanes * k;
      if (j < f) {
        d_gmf[row * f + j] = g * p.w[j];
        sum_g[k] += g * gmf[row * f + j];
      }
      if (j < m) {
        store(d_mlp, mt, row * m + j, g * p.w[f + j]);
        sum_m[k] += g * load(mlp, mt, row * m + j);
      }
    }
    for (int j = sub + kRowLanes * kRegFeatures; j < f; j += kRowLanes) {
      d_gmf[row * f + j] = g * p.w[j];
      atomicAdd(&acc[j], g * gmf[row * f + j]);
    }
    for (int j = sub + kRowLanes * kRegFeatures; j < m; j += kRowLanes) {
      store(d_mlp, mt, row * m + j, g * p.w[f + j]);
      atomicAdd(&acc[f + j], g * load(mlp, mt, row * m + j));
    }
  }
  // The warp's four row groups hold sums of the same features: add them up, then into the block's.
#pragma unroll
  for (int k = 0; k < kRegFeatures; ++k)
    for (int o = kRowLanes; o < 32; o <<= 1) {
      sum_g[k] += __shfl_xor_sync(0xffffffffu, sum_g[k], o);
      sum_m[k] += __shfl_xor_sync(0xffffffffu, sum_m[k], o);
    }
  if (lane < kRowLanes)
#pragma unroll
    for (int k = 0; k < kRegFeatures; ++k) {
      const int j = lane + kRowLanes * k;
      if (j < f) atomicAdd(&acc[j], sum_g[k]);
      if (j < m) atomicAdd(&acc[f + j], sum_m[k]);
    }
  if (sub == 0) {
    atomicAdd(&acc[width], bias);
    atomicAdd(&acc[width + 1], loss);
  }
  __syncthreads();
  for (int j = threadIdx.x; j < width; j += blockDim.x) atomicAdd(&grad_w[j], acc[j]);
  if (threadIdx.x == 0) {
    atomicAdd(grad_b, acc[width]);
    atomicAdd(loss_sum, double(acc[width + 1]));
  }
}

unsigned head_blocks(int rows) {
  const int64_t warps_needed = (int64_t(rows) + kRowsPerWarp - 1) / kRowsPerWarp;
  const int64_t b = (warps_needed + (kThreads / 32) - 1) / (kThreads / 32);
  return unsigned(b < 1 ? 1 : (b > 4096 ? 4096 : b));  // at most 4096 blocks: fewer global atomics
}

}  // namespace

void CudaBackend::head_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp,
                               const HeadParams& p, float* logits) {
  const int rows = int(mlp.rows);
  if (rows <= 0) return;
  use_device(device_);
  head_forward_kernel<<<blocks_for(int64_t(rows) * kRowLanes), kThreads, 0, stream_>>>(t, users, items, mlp.data, mlp.dtype,
                                                                                       rows, p, logits);
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
