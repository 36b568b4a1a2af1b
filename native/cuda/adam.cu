// Optimizer and precision kernels.
// adam_step: one fused pass over the whole flat parameter buffer (grid-stride, four elements per
// thread per iteration: reads p, g, m, v and writes p, m, v once each, and the fp16 mirror's copy
// where one is kept: 2 bytes more per mirrored parameter), unscaling each gradient as it reads
// it and applying the same fmaf-written rule as the CPU (core/adam_rule.h), so both backends
// update bit-identically. It reads the overflow flag on the device and does nothing after an
// fp16 overflow, so no host synchronisation is needed per step.
// overflow_check / update_loss_scale: dynamic (or static) loss scaling state kept on the device;
// the check only reads the gradients (4 bytes a parameter; unscaling them in place, as before,
// read and wrote them: 8).
// to_half / from_half: fp32 <-> fp16 with round-to-nearest-even.
#include "../core/adam_rule.h"
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

// With vec4 (p, g, m and v 16-byte aligned) four consecutive parameters per thread per
// iteration, as 16-byte loads and stores (four times the bytes in flight per thread of one
// element at a time, which measured 2.7 TB/s on an H100), the last n % 4 one by one.
__global__ void adam_kernel(float* p, const float* g, float* m, float* v, size_t n, bool vec4, AdamScalars s,
                            const float* loss_scale, const int32_t* skip, HalfMirror mirror) {
  if (skip && *skip) return;
  const float inv = loss_scale ? 1.0f / *loss_scale : 1.0f;
  __half* const half = static_cast<__half*>(mirror.dst);
  const size_t first = blockIdx.x * size_t(blockDim.x) + threadIdx.x, stride = size_t(gridDim.x) * blockDim.x;
  const size_t n4 = vec4 ? n / 4 : 0;
  for (size_t q = first; q < n4; q += stride) {
    float4 pq = reinterpret_cast<const float4*>(p)[q], mq = reinterpret_cast<const float4*>(m)[q],
           vq = reinterpret_cast<const float4*>(v)[q];
    const float4 gq = reinterpret_cast<const float4*>(g)[q];
    adam_update(s, gq.x * inv, &pq.x, &mq.x, &vq.x);
    adam_update(s, gq.y * inv, &pq.y, &mq.y, &vq.y);
    adam_update(s, gq.z * inv, &pq.z, &mq.z, &vq.z);
    adam_update(s, gq.w * inv, &pq.w, &mq.w, &vq.w);
    reinterpret_cast<float4*>(p)[q] = pq;
    reinterpret_cast<float4*>(m)[q] = mq;
    reinterpret_cast<float4*>(v)[q] = vq;
    const size_t i = 4 * q;
    if (half && i + 4 > mirror.begin && i < mirror.end) {
      const float pk[4] = {pq.x, pq.y, pq.z, pq.w};
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (i + k >= mirror.begin && i + k < mirror.end) half[i + k - mirror.begin] = __float2half_rn(pk[k]);
    }
  }
  for (size_t i = 4 * n4 + first; i < n; i += stride) {
    adam_update(s, g[i] * inv, &p[i], &m[i], &v[i]);
    if (half && i >= mirror.begin && i < mirror.end) half[i - mirror.begin] = __float2half_rn(p[i]);
  }
}

// Whether any g[i] / scale is not finite, 16 bytes a load with vec4 (g 16-byte aligned; the last
// n % 4 values one by one), else value by value.
__global__ void overflow_kernel(const float* g, size_t n, bool vec4, const float* scale, int32_t* found_inf) {
  const float inv = 1.0f / *scale;
  bool bad = false;
  const size_t n4 = vec4 ? n / 4 : 0, first = blockIdx.x * size_t(blockDim.x) + threadIdx.x, stride = size_t(gridDim.x) * blockDim.x;
  const float4* g4 = reinterpret_cast<const float4*>(g);
  for (size_t i = first; i < n4; i += stride) {
    const float4 v = g4[i];
    bad |= !isfinite(v.x * inv) | !isfinite(v.y * inv) | !isfinite(v.z * inv) | !isfinite(v.w * inv);
  }
  for (size_t i = 4 * n4 + first; i < n; i += stride) bad |= !isfinite(g[i] * inv);
  if (bad) *found_inf = 1;  // any writer stores the same value
}

__global__ void update_scale_kernel(LossScaler s) {
  if (*s.found_inf) {
    if (s.dynamic) *s.scale = fmaxf(*s.scale * 0.5f, 1.0f);
    *s.good_steps = 0;
  } else if (s.dynamic && ++*s.good_steps >= s.growth_interval) {
    *s.scale = fminf(*s.scale * 2.0f, 16777216.0f);
    *s.good_steps = 0;
  }
  *s.found_inf = 0;
}

__global__ void to_half_kernel(const float* src, __half* dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = __float2half_rn(src[i]);
}

__global__ void from_half_kernel(const __half* src, float* dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = __half2float(src[i]);
}

}  // namespace

void CudaBackend::adam_step(float* params, const float* grads, float* m, float* v, size_t n, const AdamScalars& s,
                            const float* loss_scale, const int32_t* skip_if, const HalfMirror& mirror) {
  const OpSpan span(&op_times_, "adam_step", stream_);
  use_device(device_);
  const bool vec4 = aligned_to(params, 16) && aligned_to(grads, 16) && aligned_to(m, 16) && aligned_to(v, 16);
  adam_kernel<<<grid(int64_t(vec4 ? n / 4 + 1 : n)), kThreads, 0, stream_>>>(params, grads, m, v, n, vec4, s, loss_scale,
                                                                             skip_if, mirror);
  NCF_LAUNCHED();
}

void CudaBackend::overflow_check(const float* grads, size_t n, const LossScaler& scaler) {
  const OpSpan span(&op_times_, "overflow_check", stream_);
  use_device(device_);
  const bool vec4 = aligned_to(grads, 16);
  overflow_kernel<<<grid(int64_t(vec4 ? n / 4 + 1 : n)), kThreads, 0, stream_>>>(grads, n, vec4, scaler.scale,
                                                                                 scaler.found_inf);
  NCF_LAUNCHED();
}

void CudaBackend::update_loss_scale(const LossScaler& scaler) {
  const OpSpan span(&op_times_, "update_loss_scale", stream_);
  use_device(device_);
  update_scale_kernel<<<1, 1, 0, stream_>>>(scaler);
  NCF_LAUNCHED();
}

void CudaBackend::to_half(const float* src, void* dst, size_t n) {
  const OpSpan span(&op_times_, "to_half", stream_);
  if (!n) return;
  use_device(device_);
  to_half_kernel<<<grid(int64_t(n)), kThreads, 0, stream_>>>(src, static_cast<__half*>(dst), n);
  NCF_LAUNCHED();
}

void CudaBackend::from_half(const void* src, float* dst, size_t n) {
  const OpSpan span(&op_times_, "from_half", stream_);
  if (!n) return;
  use_device(device_);
  from_half_kernel<<<grid(int64_t(n)), kThreads, 0, stream_>>>(static_cast<const __half*>(src), dst, n);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
