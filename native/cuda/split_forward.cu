// split_forward: the forward pass of evaluation and serving from the first layer's parts, in one
// kernel. For each pair r: h = relu(user_part[users[r]] + item_part[items[r]]); then each later
// hidden layer h = relu(h W^T + b) on Tensor Cores through WMMA (fp16 inputs with fp32
// accumulation when the activations are fp16, TF32 when they are fp32); then
// logit = w . [mf_user[u] * mf_item[v] ; h] + b. Each step rounds as its op in the chain does
// (gather_add_relu, linear_forward's RELU_BIAS epilogue, head_forward).
// Memory pattern: a warp owns 16 pairs at a time and keeps their activations in its slice of
// shared memory (two buffers of 16 rows, each row padded by 16 bytes against bank conflicts, and
// a 16 x 16 fp32 accumulator tile); the weights are read as WMMA fragments through L1/L2. Per
// pair the kernel reads two part rows and two GMF rows (the item-side rows stay in L2) and writes
// one float, where the op chain writes and reads every layer's output in device memory.
// It returns false (the chain runs) for widths that are not multiples of 16, more than 7
// later layers, fp32 without TF32, misaligned tables or more shared memory than the GPU has.
#include <algorithm>

#include "cuda_backend.cuh"
#include "warp_tile.cuh"

namespace ncf::cuda {

namespace {

struct SplitArgs {
  const float* user_part;
  const float* item_part;
  const uint32_t* users;
  const uint32_t* items;
  int64_t n;
  int tail;                      // later layers
  int width[kMaxFusedLayers];       // width[0]: the first layer's output; width[l + 1]: later layer l's
  const void* w[kMaxFusedLayers];       // [width[l + 1], width[l]] in the activations' type
  const void* b[kMaxFusedLayers];       // [width[l + 1]] in the activations' type
  const float* mf_user;
  const float* mf_item;
  int factors;
  const float* head_w;           // [factors + width[tail]]
  const float* head_b;
  int buf_bytes[2];              // per warp: buffer 0 holds widths 0, 2, ...; buffer 1 widths 1, 3, ...
  int warp_bytes;
  float* logits;
};

template <typename T>
struct SplitTiles {
  __device__ static void run(const SplitArgs& a, float4* split_shared);
};

template <typename T>
__device__ void SplitTiles<T>::run(const SplitArgs& a, float4* split_shared) {
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  char* mine = reinterpret_cast<char*>(split_shared) + size_t(warp) * size_t(a.warp_bytes);
  T* const buf0 = reinterpret_cast<T*>(mine);
  T* const buf1 = reinterpret_cast<T*>(mine + a.buf_bytes[0]);
  float* const acc = reinterpret_cast<float*>(mine + a.buf_bytes[0] + a.buf_bytes[1]);
  const int64_t tiles = (a.n + kTileRows - 1) / kTileRows;
  for (int64_t t = int64_t(blockIdx.x) * kFusedWarps + warp; t < tiles; t += int64_t(gridDim.x) * kFusedWarps) {
    const int64_t r0 = t * kTileRows;
    const int rows = int(min(int64_t(kTileRows), a.n - r0));

    // The first layer from its parts, 4 columns per lane and step (16-byte loads); rows past n are 0.
    {
      const int w = a.width[0], ld = w + Tc<T>::pad, q4 = w / 4;
#pragma unroll 4  // several rows' loads in flight per lane
      for (int q = lane; q < kTileRows * q4; q += 32) {
        const int rr = q / q4, j = (q - rr * q4) * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (rr < rows) {
          const float4 x = *reinterpret_cast<const float4*>(a.user_part + int64_t(a.users[r0 + rr]) * w + j);
          const float4 y = *reinterpret_cast<const float4*>(a.item_part + int64_t(a.items[r0 + rr]) * w + j);
          v = make_float4(fmaxf(x.x + y.x, 0.0f), fmaxf(x.y + y.y, 0.0f), fmaxf(x.z + y.z, 0.0f), fmaxf(x.w + y.w, 0.0f));
        }
        T* o = buf0 + rr * ld + j;
        o[0] = Tc<T>::from_float(v.x);
        o[1] = Tc<T>::from_float(v.y);
        o[2] = Tc<T>::from_float(v.z);
        o[3] = Tc<T>::from_float(v.w);
      }
    }
    __syncwarp();

    // Later layers: 16 output columns at a time, then bias + ReLU from the accumulator tile
    // into the other buffer.
    int cur = 0;
    for (int l = 0; l < a.tail; ++l) {
      const int in = a.width[l], out = a.width[l + 1];
      const int ldx = in + Tc<T>::pad, ldy = out + Tc<T>::pad;
      const T* x = cur ? buf1 : buf0;
      T* y = cur ? buf0 : buf1;
      const T* bias = static_cast<const T*>(a.b[l]);
      for (int n0 = 0; n0 < out; n0 += 16) {
        tile_mma<T, true>(x, ldx, in, static_cast<const T*>(a.w[l]), in, n0, acc);
        for (int e = lane; e < kTileRows * 16; e += 32) {
          const int rr = e / 16, cc = e % 16;
          y[rr * ldy + n0 + cc] = Tc<T>::from_float(fmaxf(acc[rr * kAccLd + cc] + Tc<T>::to_float(bias[n0 + cc]), 0.0f));
        }
        __syncwarp();
      }
      cur ^= 1;
    }

    // GMF and the output unit, one pair at a time over the warp's lanes.
    const int w = a.width[a.tail], ld = w + Tc<T>::pad, f = a.factors;
    const T* h = cur ? buf1 : buf0;
    for (int rr = 0; rr < rows; ++rr) {
      const int64_t u = a.users[r0 + rr], v = a.items[r0 + rr];
      float s = 0.0f;
      for (int j = lane; j < f; j += 32) s += a.head_w[j] * (a.mf_user[u * f + j] * a.mf_item[v * f + j]);
      for (int j = lane; j < w; j += 32) s += a.head_w[f + j] * Tc<T>::to_float(h[rr * ld + j]);
      s = warp_sum(s);
      if (lane == 0) a.logits[r0 + rr] = s + a.head_b[0];
    }
    __syncwarp();  // every lane is done with the buffers before the next tile writes them
  }
}

}  // namespace

bool CudaBackend::split_forward(const SplitNet& net, const uint32_t* users, const uint32_t* items, int64_t n,
                                float* logits) {
  const OpSpan span(&op_times_, "split_forward", stream_);
  const bool half = net.act == DType::F16;
  const int tail = int(net.layers.size());
  if (!fused_allowed(half) || tail + 1 > kMaxFusedLayers || !fused_width(net.width)) return false;
  SplitArgs a{};
  a.width[0] = net.width;
  for (int l = 0; l < tail; ++l) {
    const LinearParams& p = net.layers[size_t(l)];
    if (p.in != a.width[l] || !fused_layer(p, half, &a.w[l], &a.b[l])) return false;
    a.width[l + 1] = p.out;
  }
  if (net.head.mlp_width != a.width[tail] || net.head.factors != net.tables.factors) return false;
  if (!aligned_to(net.user_part, 16) || !aligned_to(net.item_part, 16)) return false;

  // Shared memory per warp: the two activation buffers (rounded to 128 bytes) and the accumulator tile.
  const int elem = half ? 2 : 4, pad = half ? kPadHalf : kPadFloat;
  int widest[2] = {0, 0};
  for (int l = 0; l <= tail; ++l) widest[l % 2] = std::max(widest[l % 2], a.width[l] + pad);
  a.buf_bytes[0] = round_up(kTileRows * widest[0] * elem, 128);
  a.buf_bytes[1] = round_up(kTileRows * widest[1] * elem, 128);
  a.warp_bytes = a.buf_bytes[0] + a.buf_bytes[1] + kAccBytes;
  const size_t shared = size_t(kFusedWarps) * size_t(a.warp_bytes);
  if (shared > shared_optin_) return false;
  if (n <= 0) return true;

  a.user_part = net.user_part;
  a.item_part = net.item_part;
  a.users = users;
  a.items = items;
  a.n = n;
  a.tail = tail;
  a.mf_user = net.tables.mf_user;
  a.mf_item = net.tables.mf_item;
  a.factors = net.tables.factors;
  a.head_w = net.head.w;
  a.head_b = net.head.b;
  a.logits = logits;
  use_device(device_);
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  const unsigned blocks = capped(std::min<int64_t>((tiles + kFusedWarps - 1) / kFusedWarps, int64_t(1) << 20));
  if (half) launch_fused<__half, SplitArgs, SplitTiles>(a, blocks, shared, stream_, shared_optin_, split_opted_in_[0]);
  else launch_fused<float, SplitArgs, SplitTiles>(a, blocks, shared, stream_, shared_optin_, split_opted_in_[1]);
  return fused_launch_ok("split_forward", fused_);
}

}  // namespace ncf::cuda
