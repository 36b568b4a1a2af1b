// The fused embedding kernels.
// embed_forward: one pass per sample row: gathers mf_user[u], mf_item[v], mlp_user[u],
// mlp_item[v] (fp32 tables) and writes gmf = mf_user * mf_item (fp32; left out, with its two
// gathers, when gmf is empty) and the MLP input
// [mlp_user ; mlp_item] (fp32, or fp16 under --amp) without intermediate buffers. One thread per
// 4 output elements (when widths are multiples of 4), so each warp reads and writes contiguous
// 16-byte pieces of each row.
// embed_backward: the gradient of each output element goes straight into the dense table
// gradients with atomic adds (4-wide vector atomics on sm_90), so no per-sample intermediate or
// sort is needed.
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

struct EmbedShape {
  int f, h;      // factors, half of the MLP input
  int g;         // GMF elements per row: f, or 0 when the GMF values are not written
  int width;     // elements per row: g + 2h
};

__global__ void embed_forward_kernel(EmbedTables t, const uint32_t* users, const uint32_t* items, int n, EmbedShape sh,
                                     float* gmf, void* mlp_in, DType mlp_type) {
  const int64_t total = int64_t(n) * sh.width;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = q / sh.width;
    const int j = int(q - row * sh.width);
    const uint32_t u = users[row], v = items[row];
    if (j < sh.g) {
      gmf[row * sh.f + j] = t.mf_user[int64_t(u) * sh.f + j] * t.mf_item[int64_t(v) * sh.f + j];
    } else {
      const int k = j - sh.g;
      const float x = k < sh.h ? t.mlp_user[int64_t(u) * sh.h + k] : t.mlp_item[int64_t(v) * sh.h + (k - sh.h)];
      store(mlp_in, mlp_type, row * 2 * sh.h + k, x);
    }
  }
}

// Four consecutive elements per thread (f and h multiples of 4, so a thread never straddles the
// GMF / user / item boundaries).
__global__ void embed_forward_vec4(EmbedTables t, const uint32_t* users, const uint32_t* items, int n, EmbedShape sh,
                                   float* gmf, void* mlp_in, DType mlp_type) {
  const int w4 = sh.width / 4;
  const int64_t total = int64_t(n) * w4;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = q / w4;
    const int j = int(q - row * w4) * 4;
    const uint32_t u = users[row], v = items[row];
    if (j < sh.g) {
      const float4 a = *reinterpret_cast<const float4*>(t.mf_user + int64_t(u) * sh.f + j);
      const float4 b = *reinterpret_cast<const float4*>(t.mf_item + int64_t(v) * sh.f + j);
      *reinterpret_cast<float4*>(gmf + row * sh.f + j) = make_float4(a.x * b.x, a.y * b.y, a.z * b.z, a.w * b.w);
    } else {
      const int k = j - sh.g;
      const float4 x = k < sh.h ? *reinterpret_cast<const float4*>(t.mlp_user + int64_t(u) * sh.h + k)
                                : *reinterpret_cast<const float4*>(t.mlp_item + int64_t(v) * sh.h + (k - sh.h));
      const int64_t o = row * 2 * sh.h + k;
      if (mlp_type == DType::F32) {
        *reinterpret_cast<float4*>(static_cast<float*>(mlp_in) + o) = x;
      } else {
        __half2* dst = reinterpret_cast<__half2*>(static_cast<__half*>(mlp_in) + o);
        dst[0] = __floats2half2_rn(x.x, x.y);
        dst[1] = __floats2half2_rn(x.z, x.w);
      }
    }
  }
}

__global__ void embed_backward_kernel(EmbedTables t, const uint32_t* users, const uint32_t* items, int n, EmbedShape sh,
                                      const float* d_gmf, const void* d_mlp, DType mlp_type, EmbedGrads g) {
  const int64_t total = int64_t(n) * sh.width;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = q / sh.width;
    const int j = int(q - row * sh.width);
    const uint32_t u = users[row], v = items[row];
    if (j < sh.g) {
      const float dg = d_gmf[row * sh.f + j];
      atomicAdd(&g.mf_user[int64_t(u) * sh.f + j], dg * t.mf_item[int64_t(v) * sh.f + j]);
      atomicAdd(&g.mf_item[int64_t(v) * sh.f + j], dg * t.mf_user[int64_t(u) * sh.f + j]);
    } else {
      const int k = j - sh.g;
      const float dx = load(d_mlp, mlp_type, row * 2 * sh.h + k);
      if (k < sh.h) atomicAdd(&g.mlp_user[int64_t(u) * sh.h + k], dx);
      else atomicAdd(&g.mlp_item[int64_t(v) * sh.h + (k - sh.h)], dx);
    }
  }
}

__global__ void embed_backward_vec4(EmbedTables t, const uint32_t* users, const uint32_t* items, int n, EmbedShape sh,
                                    const float* d_gmf, const void* d_mlp, DType mlp_type, EmbedGrads g) {
  const int w4 = sh.width / 4;
  const int64_t total = int64_t(n) * w4;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = q / w4;
    const int j = int(q - row * w4) * 4;
    const uint32_t u = users[row], v = items[row];
    if (j < sh.g) {
      const float4 dg = *reinterpret_cast<const float4*>(d_gmf + row * sh.f + j);
      const float4 mu = *reinterpret_cast<const float4*>(t.mf_user + int64_t(u) * sh.f + j);
      const float4 mi = *reinterpret_cast<const float4*>(t.mf_item + int64_t(v) * sh.f + j);
      atomic_add4(&g.mf_user[int64_t(u) * sh.f + j], dg.x * mi.x, dg.y * mi.y, dg.z * mi.z, dg.w * mi.w);
      atomic_add4(&g.mf_item[int64_t(v) * sh.f + j], dg.x * mu.x, dg.y * mu.y, dg.z * mu.z, dg.w * mu.w);
    } else {
      const int k = j - sh.g;
      const int64_t o = row * 2 * sh.h + k;
      float4 dx;
      if (mlp_type == DType::F32) {
        dx = *reinterpret_cast<const float4*>(static_cast<const float*>(d_mlp) + o);
      } else {
        const __half2* s = reinterpret_cast<const __half2*>(static_cast<const __half*>(d_mlp) + o);
        const float2 a = __half22float2(s[0]), b = __half22float2(s[1]);
        dx = make_float4(a.x, a.y, b.x, b.y);
      }
      float* dst = k < sh.h ? &g.mlp_user[int64_t(u) * sh.h + k] : &g.mlp_item[int64_t(v) * sh.h + (k - sh.h)];
      atomic_add4(dst, dx.x, dx.y, dx.z, dx.w);
    }
  }
}

bool vec4_ok(const EmbedTables& t) { return t.factors % 4 == 0 && t.half % 4 == 0; }

}  // namespace

void CudaBackend::embed_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, int n, Mat gmf,
                                Mat mlp_in) {
  if (n <= 0) return;
  if (gmf.dtype != DType::F32) fail(ErrorCode::InvalidArgument, "embed_forward: gmf must be fp32");
  use_device(device_);
  const int g = gmf.empty() ? 0 : t.factors;
  const EmbedShape sh{t.factors, t.half, g, g + 2 * t.half};
  if (vec4_ok(t))
    embed_forward_vec4<<<blocks_for(int64_t(n) * sh.width / 4), kThreads, 0, stream_>>>(t, users, items, n, sh, gmf.f32(),
                                                                                       mlp_in.data, mlp_in.dtype);
  else
    embed_forward_kernel<<<blocks_for(int64_t(n) * sh.width), kThreads, 0, stream_>>>(t, users, items, n, sh, gmf.f32(),
                                                                                    mlp_in.data, mlp_in.dtype);
  NCF_LAUNCHED();
}

void CudaBackend::embed_backward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, int n, Mat d_gmf,
                                 Mat d_mlp_in, const EmbedGrads& g) {
  if (n <= 0) return;
  use_device(device_);
  const EmbedShape sh{t.factors, t.half, t.factors, t.factors + 2 * t.half};
  if (vec4_ok(t))
    embed_backward_vec4<<<blocks_for(int64_t(n) * sh.width / 4), kThreads, 0, stream_>>>(
        t, users, items, n, sh, d_gmf.f32(), d_mlp_in.data, d_mlp_in.dtype, g);
  else
    embed_backward_kernel<<<blocks_for(int64_t(n) * sh.width), kThreads, 0, stream_>>>(
        t, users, items, n, sh, d_gmf.f32(), d_mlp_in.data, d_mlp_in.dtype, g);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
