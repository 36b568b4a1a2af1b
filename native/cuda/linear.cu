// The hidden layers on the GPU.
// linear_forward: y = relu(x W^T + b) as one cuBLASLt GEMM with the RELU_BIAS epilogue (TF32 or
// fp32 for fp32 activations, fp16 Tensor Cores with fp32 accumulation under --amp), then the
// dropout kernel in place: one thread per 8 features, whose keep decisions come from one Philox
// block drawn through cuRAND's device API (core/dropout.h), reading and writing 16 or 32 bytes.
// If cuBLASLt offers no algorithm with the epilogue, a plain GEMM is followed by the same kernel
// doing bias + ReLU + dropout. Asked for the live units, the kernel also writes them: one byte
// per thread (its 8 features), 1/16 of an fp16 output's bytes.
// relu_dropout_backward: one kernel turns dy into dz = dy * live * scale in place (live from the
// mask, or y > 0, exactly where ReLU passed and dropout kept) and sums its columns into grad_b
// (per-thread column sums, one atomic add per column per block).
// linear_backward: grad_w = dz^T x (fp32 output), then dx = dz W and, for the layer below,
// relu_dropout_backward of dx (the default), or, with NCF_CUDA_DRELU=1, the mask in the dx GEMM's
// DRELU_BGRAD epilogue (dropout's scale as alpha, the bias gradient from the epilogue): the
// gradient at the layer below's pre-activation comes out of the GEMM, with no pass over it; with
// NCF_CUDA_DRELU=mask the DRELU epilogue, then a pass that only reads dx for the bias gradient.
// cuBLASLt documents the bit-mask as a column-major matrix of bits (UnitMask's
// layout) but not the bit order in memory, so before its first use per precision the epilogue is
// checked against the GEMM + relu_dropout_backward pair on random data (check_drelu_epilogue);
// where it differs, or cuBLASLt has no algorithm for it, that pair runs instead.
#include "cuda_backend.cuh"
#include "relu_dropout8.cuh"

namespace ncf::cuda {

namespace {

// For each row and group of 8 features: optional bias + ReLU, then optional dropout
// (relu_dropout8). With vec8 (cols % 8 == 0, y 16-byte aligned) a thread moves its 8 values as one
// 16-byte fp16 or two 16-byte fp32 loads and stores; otherwise value by value.
template <typename T>
__global__ void bias_relu_dropout_kernel(T* y, int rows, int cols, const float* bias, Dropout d, bool vec8,
                                         UnitMask mask, bool half_math) {
  // half_math (fp16 only; vec8 and no bias: the pass after a RELU_BIAS GEMM, dropout alone): in
  // half2 arithmetic.
  const __half2 scale = half_scale(d);
  for (RowGroupWalk w((cols + 7) / 8); w.row < rows; w.next()) {
    const int64_t row = w.row;
    const int g = w.g;
    const int j0 = g * 8, lanes = min(8, cols - j0);
    T* const at = y + row * cols + j0;
    if constexpr (std::is_same<T, __half>::value) {
      if (half_math) {
        uint4 raw = *reinterpret_cast<const uint4*>(at);
        store_live(mask, row, g, relu_dropout8_half(raw, false, d, scale, row, g));
        *reinterpret_cast<uint4*>(at) = raw;
        continue;
      }
    }
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (vec8) load8(at, v);
    else
      for (int l = 0; l < lanes; ++l) v[l] = load(at, dtype_of<T>(), l);
    const uint32_t live = relu_dropout8<T>(v, lanes, bias ? bias + j0 : nullptr, bias != nullptr, d, row, g);
    if (vec8) store8(at, v);
    else
      for (int l = 0; l < lanes; ++l) store(at, dtype_of<T>(), l, v[l]);
    store_live(mask, row, g, live);
  }
}

// dz = dy * live * scale in place (live: the mask's bit, or y > 0 when mask.bits is null), and
// grad_b[j] += the column sums of dz; with kMasked false, only grad_b[j] += the column sums of dy
// (dy read, not written). A block takes
// rows_per_block rows; with vec8 (cols % 8 == 0, 16-byte aligned rows, cols / 8 <= blockDim.x)
// thread t owns the 8 columns of group t % (cols / 8) in every (blockDim.x / (cols / 8))-th row,
// moving 16 or 32 bytes per load and store, else column j in every row, value by value. Column
// sums collect in registers, then in shared memory, then one global atomic per column and block.
template <typename T, bool kMasked>
__global__ void relu_dropout_backward_kernel(T* dy, const T* y, UnitMask mask, int rows, int cols, float scale,
                                             int rows_per_block, bool vec8, float* grad_b) {
  extern __shared__ float col_sums[];  // [cols]
  for (int j = threadIdx.x; j < cols; j += blockDim.x) col_sums[j] = 0.0f;
  __syncthreads();
  const int64_t r0 = int64_t(blockIdx.x) * rows_per_block;
  const int64_t r1 = min(int64_t(rows), r0 + rows_per_block);
  if (vec8) {
    const int groups = cols / 8, stride = int(blockDim.x) / groups, g = int(threadIdx.x) % groups;
    float sum[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (int(threadIdx.x) < groups * stride) {
#pragma unroll 4
      for (int64_t r = r0 + int(threadIdx.x) / groups; r < r1; r += stride) {
        const int64_t i = r * cols + g * 8;
        float vd[8];
        uint32_t live = 0xffu;
        if constexpr (kMasked) {
          if (mask.bits) {
            live = mask.bits[r * (mask.ld / 8) + g];
          } else {
            float vy[8];
            load8(y + i, vy);
            live = 0;
#pragma unroll
            for (int k = 0; k < 8; ++k) live |= uint32_t(vy[k] > 0.0f) << k;
          }
        }
        load8(dy + i, vd);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          if constexpr (kMasked) vd[k] = (live >> k) & 1 ? vd[k] * scale : 0.0f;
          sum[k] += vd[k];
        }
        if constexpr (kMasked) store8(dy + i, vd);
      }
      for (int k = 0; k < 8; ++k) atomicAdd(&col_sums[g * 8 + k], sum[k]);
    }
  } else {
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      float sum = 0.0f;
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t i = r * cols + j;
        float g = load(dy, dtype_of<T>(), i);
        if constexpr (kMasked) {
          const bool live = mask.bits ? unit_live(mask.bits, mask.ld, r, j) : load(y, dtype_of<T>(), i) > 0.0f;
          g = live ? g * scale : 0.0f;
          store(dy, dtype_of<T>(), i, g);
        }
        sum += g;
      }
      col_sums[j] += sum;
    }
  }
  __syncthreads();
  for (int j = threadIdx.x; j < cols; j += blockDim.x) atomicAdd(&grad_b[j], col_sums[j]);
}

bool vec8_ok(const void* p, int cols) { return cols % 8 == 0 && aligned_to(p, 16); }

}  // namespace

void CudaBackend::linear_forward(Mat x, const LinearParams& p, const Dropout& d, Mat y, UnitMask mask) {
  const OpSpan span(&op_times_, "linear_forward", stream_);
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
  if (bias_in_kernel || d.active || !mask.empty()) bias_relu_dropout(y.head(n), bias_in_kernel, d, mask);
}

bool CudaBackend::half_math(const Dropout& d) const { return half_math_ && half_dropout_ok(d); }

void CudaBackend::bias_relu_dropout(Mat y, const float* bias, const Dropout& d, UnitMask mask) {
  const OpSpan span(&op_times_, "bias_relu_dropout", stream_);
  const int n = int(y.rows), cols = int(y.cols);
  if (n <= 0) return;
  const unsigned blocks = grid(int64_t(n) * ((cols + 7) / 8));
  const bool vec8 = vec8_ok(y.data, cols);
  if (y.dtype == DType::F16)
    bias_relu_dropout_kernel<__half><<<blocks, kThreads, 0, stream_>>>(static_cast<__half*>(y.data), n, cols, bias, d, vec8,
                                                                       mask, vec8 && !bias && half_math(d));
  else
    bias_relu_dropout_kernel<float><<<blocks, kThreads, 0, stream_>>>(y.f32(), n, cols, bias, d, vec8, mask, false);
  NCF_LAUNCHED();
}

namespace {
// relu_dropout_backward_kernel over dy's rows: masked (kMasked) or its column sums alone.
template <bool kMasked>
void launch_row_pass(Mat dy, const void* y, UnitMask mask, float scale, float* grad_b, cudaStream_t stream) {
  const int n = int(dy.rows), cols = int(dy.cols);
  const int rows_per_block = 256;
  const bool vec8 = vec8_ok(dy.data, cols) && (!kMasked || mask.bits || vec8_ok(y, cols)) && cols / 8 <= kThreads;
  const unsigned blocks = unsigned((n + rows_per_block - 1) / rows_per_block);
  const int threads = vec8 ? kThreads / (cols / 8) * (cols / 8) : min(cols, kThreads);
  const size_t smem = sizeof(float) * size_t(cols);
  if (dy.dtype == DType::F16)
    relu_dropout_backward_kernel<__half, kMasked><<<blocks, threads, smem, stream>>>(
        static_cast<__half*>(dy.data), static_cast<const __half*>(y), mask, n, cols, scale, rows_per_block, vec8, grad_b);
  else
    relu_dropout_backward_kernel<float, kMasked><<<blocks, threads, smem, stream>>>(
        dy.f32(), static_cast<const float*>(y), mask, n, cols, scale, rows_per_block, vec8, grad_b);
  NCF_LAUNCHED();
}
}  // namespace

void CudaBackend::relu_dropout_backward(Mat dy, Mat y, UnitMask mask, const Dropout& d, float* grad_b) {
  const OpSpan span(&op_times_, "relu_dropout_backward", stream_);
  use_device(device_);
  NCF_CUDA(cudaMemsetAsync(grad_b, 0, sizeof(float) * size_t(dy.cols), stream_));
  if (dy.rows <= 0) return;
  launch_row_pass<true>(dy, y.data, mask, d.active ? d.scale : 1.0f, grad_b, stream_);
}

void CudaBackend::add_column_sums(Mat x, float* sums) {
  const OpSpan span(&op_times_, "add_column_sums", stream_);
  if (x.rows > 0) launch_row_pass<false>(x, nullptr, UnitMask{}, 1.0f, sums, stream_);
}

GemmCall CudaBackend::input_grad_gemm(Mat dz, const LinearParams& p, Mat dx) const {
  // dx [n x in] = dz [n x out] W [out x in]
  const bool half = dz.dtype == DType::F16;
  return gemm_call(int(dz.rows), p.in, p.out, dz.data, dz.dtype, p.out, false, half ? p.w_half : p.w, dz.dtype, p.in,
                   false, dx.data, dx.dtype, p.in);
}

bool CudaBackend::input_grad_drelu(Mat dz, const LinearParams& p, Mat dx, const LayerBelow& below) {
  GemmCall g = input_grad_gemm(dz, p, dx);
  g.epilogue = drelu_mode_ == DreluMode::Mask ? Epilogue::DRelu : Epilogue::DReluBgrad;
  g.alpha = below.dropout.active ? below.dropout.scale : 1.0f;
  g.aux = below.mask.bits;
  g.aux_ld = below.mask.ld;
  if (g.epilogue == Epilogue::DRelu) {
    if (!gemm_->run(g, stream_)) return false;
    NCF_CUDA(cudaMemsetAsync(below.grad_b, 0, sizeof(float) * size_t(p.in), stream_));
    add_column_sums(dx.head(dz.rows), below.grad_b);
    return true;
  }
  if (dx.dtype == DType::F32) {
    g.bias = below.grad_b;  // the bias gradient has the output's type
    return gemm_->run(g, stream_);
  }
  const size_t bytes = sizeof(__half) * size_t(p.in);
  if (bgrad_half_.size() < bytes) bgrad_half_ = BackendArray<unsigned char>(*this, bytes);
  g.bias = bgrad_half_.get();
  if (!gemm_->run(g, stream_)) return false;
  from_half(bgrad_half_.get(), below.grad_b, size_t(p.in));
  return true;
}

void CudaBackend::linear_backward(Mat dz, Mat x, const LinearParams& p, Mat dx, float* grad_w, const LayerBelow* below) {
  const OpSpan span(&op_times_, "linear_backward", stream_);
  use_device(device_);
  linear_weight_grad(dz, x, grad_w, int(x.cols));
  if (dx.empty()) return;
  if (dz.dtype == DType::F16 && !p.w_half) fail(ErrorCode::InvalidArgument, "linear_backward: fp16 activations need fp16 weights");
  if (below && dz.rows > 0 && !below->mask.empty() && drelu_epilogue_ok(dz.dtype) && input_grad_drelu(dz, p, dx, *below))
    return;
  if (dz.rows > 0) gemm_->run(input_grad_gemm(dz, p, dx), stream_);
  if (below) relu_dropout_backward(dx, below->y, below->mask, below->dropout, below->grad_b);
}

void CudaBackend::linear_weight_grad(Mat dz, Mat x, float* grad_w, int ld_grad) {
  const OpSpan span(&op_times_, "linear_weight_grad", stream_);
  const int n = int(dz.rows), out = int(dz.cols), in = int(x.cols);
  if (ld_grad < in) fail(ErrorCode::InvalidArgument, "linear_weight_grad: ld_grad below x's columns");
  use_device(device_);
  if (n <= 0) {
    for (int r = 0; r < out; ++r)
      NCF_CUDA(cudaMemsetAsync(grad_w + size_t(r) * size_t(ld_grad), 0, sizeof(float) * size_t(in), stream_));
    return;
  }
  // grad_w [out x in] = dz^T [out x n] x [n x in], accumulated and stored in fp32
  gemm_->run(gemm_call(out, in, n, dz.data, dz.dtype, out, true, x.data, x.dtype, in, false, grad_w, DType::F32, ld_grad),
             stream_);
}

}  // namespace ncf::cuda
