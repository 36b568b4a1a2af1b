// train_pass: a training step's data path in one kernel; the weight gradients stay cuBLASLt GEMMs
// (linear_weight_grad), whose reduction over the batch a per-tile kernel cannot do cheaply.
// For each sampled row, one warp per 16 rows:
//   1. the MLP input [mlp_user[u] ; mlp_item[v]] (written out for the first weight gradient);
//   2. per layer y = dropout(relu(x W^T + b)) on Tensor Cores (WMMA, fp16 or TF32), 16 output
//      columns at a time; each lane then finishes 8 columns of one row with one Philox block
//      (core/dropout.h), and y goes to the other shared buffer and to act[l];
//   3. the output unit, sigmoid-BCE loss and logit gradient g per row (lanes over the features),
//      the GMF tables' gradients (16-byte atomics on sm_90), and dz = g w * (y > 0) * dropout scale for the last
//      layer into shared memory and d_act;
//   4. per layer from the last: dz W on Tensor Cores, masked by the previous layer's output (read
//      back from act[l - 1]) into the previous dz, or at the first layer added into the MLP
//      tables' gradients (16-byte atomics on sm_90).
// Each value is rounded where its op in the chain rounds it (linear_forward, head_forward_backward,
// linear_backward, embed_backward), so the two paths differ only by summation order.
// Memory pattern: per row the kernel reads its table rows and writes its MLP input, each layer's
// output and masked gradient once (what the weight gradients read); nothing else goes through
// device memory. The chain also writes and re-reads the GMF values and their gradient, every
// pre-dropout output, every unmasked gradient and the MLP input's gradient. Bias, output-unit and
// loss sums collect in the block's shared memory (bias sums first over a warp's rows by shuffles)
// and reach device memory once per block.
#include <algorithm>

#include "../core/dropout.h"
#include "cuda_backend.cuh"
#include "warp_tile.cuh"

namespace ncf::cuda {

namespace {

struct TrainArgs {
  const uint32_t* users;
  const uint32_t* items;
  const float* labels;
  int64_t n;
  int layers;
  int width[kMaxFusedLayers + 1];  // width[0]: the MLP input; width[l + 1]: layer l's output
  const void* w[kMaxFusedLayers];  // [width[l + 1], width[l]] in the activations' type
  const void* b[kMaxFusedLayers];
  Dropout drop[kMaxFusedLayers];
  float* grad_b[kMaxFusedLayers];
  int bias_sum[kMaxFusedLayers];   // offset of layer l's bias sums in the block's accumulators
  void* mlp_in;
  void* act[kMaxFusedLayers];
  void* d_act[kMaxFusedLayers];
  EmbedTables t;
  EmbedGrads g;
  const float* head_w;
  const float* head_b;
  float* head_grad_w;
  float* head_grad_b;
  float grad_scale;
  const float* loss_scale;         // null without loss scaling
  double* loss_sum;
  bool gmf_vec4;                   // factors % 4 == 0 and the GMF tables 16-byte aligned
  int block_floats;                // the block's accumulators: head weights, head bias, loss, biases
  int block_bytes;
  int buf_bytes;                   // per warp: two activation buffers of this size, then the accumulator tile
  int warp_bytes;
};

template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return Tc<T>::to_float(Tc<T>::from_float(v));
}

template <typename T>
struct TrainTiles {
  __device__ static void run(const TrainArgs& a, float4* shared);
};

template <typename T>
__device__ void TrainTiles<T>::run(const TrainArgs& a, float4* shared) {
  const int warps = int(blockDim.x) / 32, warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int L = a.layers, f = a.t.factors, h = a.t.half, wl = a.width[L];
  float* const sums = reinterpret_cast<float*>(shared);  // head weights [f + wl], head bias, loss, biases
  for (int i = int(threadIdx.x); i < a.block_floats; i += int(blockDim.x)) sums[i] = 0.0f;
  __syncthreads();
  char* mine = reinterpret_cast<char*>(shared) + a.block_bytes + size_t(warp) * size_t(a.warp_bytes);
  T* const buf0 = reinterpret_cast<T*>(mine);
  T* const buf1 = reinterpret_cast<T*>(mine + a.buf_bytes);
  float* const acc = reinterpret_cast<float*>(mine + 2 * a.buf_bytes);
  const float scale = a.grad_scale * (a.loss_scale ? *a.loss_scale : 1.0f);
  // In every epilogue a lane finishes one row and 8 consecutive columns of the 16 x 16 tile.
  const int er = lane >> 1, ec = (lane & 1) * 8;
  float loss = 0.0f;

  const int64_t tiles = (a.n + kTileRows - 1) / kTileRows;
  for (int64_t tile = int64_t(blockIdx.x) * warps + warp; tile < tiles; tile += int64_t(gridDim.x) * warps) {
    const int64_t r0 = tile * kTileRows;
    const int rows = int(min(int64_t(kTileRows), a.n - r0));

    // 1. MLP input rows into buf0 and mlp_in; rows past n are zero.
    {
      const int w = a.width[0], ld = w + Tc<T>::pad, q4 = w / 4;
      T* out = static_cast<T*>(a.mlp_in);
#pragma unroll 4
      for (int q = lane; q < kTileRows * q4; q += 32) {
        const int rr = q / q4, j = (q - rr * q4) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (rr < rows)
          x = j < h ? *reinterpret_cast<const float4*>(a.t.mlp_user + int64_t(a.users[r0 + rr]) * h + j)
                    : *reinterpret_cast<const float4*>(a.t.mlp_item + int64_t(a.items[r0 + rr]) * h + (j - h));
        const T v[4] = {Tc<T>::from_float(x.x), Tc<T>::from_float(x.y), Tc<T>::from_float(x.z), Tc<T>::from_float(x.w)};
        for (int k = 0; k < 4; ++k) buf0[rr * ld + j + k] = v[k];
        if (rr < rows)
          for (int k = 0; k < 4; ++k) out[(r0 + rr) * w + j + k] = v[k];
      }
    }
    __syncwarp();

    // 2. Forward through the layers, alternating buffers.
    int cur = 0;
    for (int l = 0; l < L; ++l) {
      const int in = a.width[l], out = a.width[l + 1], ldx = in + Tc<T>::pad, ldy = out + Tc<T>::pad;
      const T* x = cur ? buf1 : buf0;
      T* y = cur ? buf0 : buf1;
      const T* bias = static_cast<const T*>(a.b[l]);
      const Dropout& d = a.drop[l];
      for (int n0 = 0; n0 < out; n0 += 16) {
        tile_mma<T, true>(x, ldx, in, static_cast<const T*>(a.w[l]), in, n0, acc);
        const int c0 = n0 + ec;
        const U32x4 blk = d.active ? dropout_block(d, uint64_t(r0 + er), uint32_t(c0 / 8)) : U32x4{0, 0, 0, 0};
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          // As linear_forward: the epilogue's relu(acc + b) in the activations' type, then dropout.
          float z = round_to<T>(fmaxf(acc[er * kAccLd + ec + k] + Tc<T>::to_float(bias[c0 + k]), 0.0f));
          if (d.active) z = dropout_keep(d, blk, k) ? z * d.scale : 0.0f;
          v[k] = z;
        }
        store8(y + er * ldy + c0, v);
        if (er < rows) store8(static_cast<T*>(a.act[l]) + (r0 + er) * out + c0, v);
        __syncwarp();
      }
      cur ^= 1;
    }

    // 3. Output unit, loss and logit gradient per row; the last layer's dz into the free buffer.
    {
      const T* y = cur ? buf1 : buf0;
      T* dz = cur ? buf0 : buf1;
      const int ld = wl + Tc<T>::pad;
      const Dropout& d = a.drop[L - 1];
      const float keep_scale = d.active ? d.scale : 1.0f;
      float* bias_sums = sums + a.bias_sum[L - 1];
      T* dz_out = static_cast<T*>(a.d_act[L - 1]);
      for (int rr = 0; rr < kTileRows; ++rr) {
        if (rr >= rows) {
          for (int j = lane; j < wl; j += 32) dz[rr * ld + j] = Tc<T>::from_float(0.0f);
          continue;
        }
        const int64_t u = a.users[r0 + rr], v = a.items[r0 + rr];
        const float* mu = a.t.mf_user + u * f;
        const float* mi = a.t.mf_item + v * f;
        // GMF features: 4 per lane (16-byte atomics) where the tables allow, else 1.
        float s = 0.0f;
        for (int j = lane; j < f; j += 32) s += a.head_w[j] * (mu[j] * mi[j]);
        for (int j = lane; j < wl; j += 32) s += a.head_w[f + j] * Tc<T>::to_float(y[rr * ld + j]);
        const float z = warp_sum(s) + a.head_b[0];
        const float label = a.labels[r0 + rr];
        loss += fmaxf(z, 0.0f) - z * label + log1pf(expf(-fabsf(z)));
        const float g = (1.0f / (1.0f + expf(-z)) - label) * scale;
        if (a.gmf_vec4) {
          for (int j = lane * 4; j < f; j += 128) {
            float du[4], di[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              const float dg = g * a.head_w[j + k];
              atomicAdd(&sums[j + k], g * (mu[j + k] * mi[j + k]));
              du[k] = dg * mi[j + k];
              di[k] = dg * mu[j + k];
            }
            atomic_add4(a.g.mf_user + u * f + j, du[0], du[1], du[2], du[3]);
            atomic_add4(a.g.mf_item + v * f + j, di[0], di[1], di[2], di[3]);
          }
        } else {
          for (int j = lane; j < f; j += 32) {
            const float dg = g * a.head_w[j];
            atomicAdd(&sums[j], g * (mu[j] * mi[j]));
            atomicAdd(a.g.mf_user + u * f + j, dg * mi[j]);
            atomicAdd(a.g.mf_item + v * f + j, dg * mu[j]);
          }
        }
        for (int j = lane; j < wl; j += 32) {
          const float yv = Tc<T>::to_float(y[rr * ld + j]);
          atomicAdd(&sums[f + j], g * yv);
          // As head_forward_backward then linear_backward: dy in the activations' type, masked.
          const float dzv = yv > 0.0f ? round_to<T>(g * a.head_w[f + j]) * keep_scale : 0.0f;
          const T dzt = Tc<T>::from_float(dzv);
          dz[rr * ld + j] = dzt;
          dz_out[(r0 + rr) * wl + j] = dzt;
          atomicAdd(&bias_sums[j], dzv);
        }
        if (lane == 0) atomicAdd(&sums[f + wl], g);
      }
      __syncwarp();
    }

    // 4. Backward through the layers: dz W, masked by the previous layer's output.
    int dcur = cur ^ 1;  // the buffer holding the current dz
    for (int l = L - 1; l >= 0; --l) {
      const int in = a.width[l], out = a.width[l + 1], ldz = out + Tc<T>::pad, ldx = in + Tc<T>::pad;
      const T* dzl = dcur ? buf1 : buf0;
      T* dx = dcur ? buf0 : buf1;
      for (int n0 = 0; n0 < in; n0 += 16) {
        tile_mma<T, false>(dzl, ldz, out, static_cast<const T*>(a.w[l]), in, n0, acc);
        const int c0 = n0 + ec;
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = round_to<T>(acc[er * kAccLd + ec + k]);  // dx in the activations' type
        if (l > 0) {
          // dz of layer l - 1 = dx * (y > 0) * its dropout scale, y read back from act[l - 1].
          const Dropout& d = a.drop[l - 1];
          const float keep_scale = d.active ? d.scale : 1.0f;
          float y[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          if (er < rows) load8(static_cast<const T*>(a.act[l - 1]) + (r0 + er) * in + c0, y);
#pragma unroll
          for (int k = 0; k < 8; ++k) v[k] = y[k] > 0.0f ? v[k] * keep_scale : 0.0f;
          store8(dx + er * ldx + c0, v);
          if (er < rows) store8(static_cast<T*>(a.d_act[l - 1]) + (r0 + er) * in + c0, v);
          // Its bias gradient: the 16 lanes of a column group (lanes of one parity) sum their
          // rows by shuffles (rows past n hold 0), then lanes 0 and 1 add to the block's sums.
          float col[8];
#pragma unroll
          for (int k = 0; k < 8; ++k) {
            col[k] = v[k];
            for (int o = 2; o < 32; o <<= 1) col[k] += __shfl_xor_sync(0xffffffffu, col[k], o);
          }
          if (lane < 2)
            for (int k = 0; k < 8; ++k) atomicAdd(&sums[a.bias_sum[l - 1] + c0 + k], col[k]);
        } else if (er < rows) {
          // The MLP input's gradient into the user and item tables' gradients.
          float* dst = c0 < h ? a.g.mlp_user + int64_t(a.users[r0 + er]) * h + c0
                              : a.g.mlp_item + int64_t(a.items[r0 + er]) * h + (c0 - h);
          atomic_add4(dst, v[0], v[1], v[2], v[3]);
          atomic_add4(dst + 4, v[4], v[5], v[6], v[7]);
        }
        __syncwarp();
      }
      dcur ^= 1;
    }
  }

  // The block's sums into the gradients, once.
  if (lane == 0) atomicAdd(&sums[f + wl + 1], loss);
  __syncthreads();
  for (int j = int(threadIdx.x); j < f + wl; j += int(blockDim.x)) atomicAdd(&a.head_grad_w[j], sums[j]);
  if (threadIdx.x == 0) {
    atomicAdd(a.head_grad_b, sums[f + wl]);
    atomicAdd(a.loss_sum, double(sums[f + wl + 1]));
  }
  for (int l = 0; l < L; ++l)
    for (int j = int(threadIdx.x); j < a.width[l + 1]; j += int(blockDim.x)) atomicAdd(&a.grad_b[l][j], sums[a.bias_sum[l] + j]);
}

}  // namespace

bool CudaBackend::train_pass(const TrainPass& p, int n) {
  const OpSpan span(&op_times_, "train_pass", stream_);
  const bool half = p.mlp_in.dtype == DType::F16;
  const int L = int(p.layers.size());
  if (!fused_allowed(half)) return false;
  if (L < 1 || L > kMaxFusedLayers || p.dropout.size() != size_t(L) || p.grad_b.size() != size_t(L) ||
      p.act.size() != size_t(L) || p.d_act.size() != size_t(L))
    return false;
  TrainArgs a{};
  a.layers = L;
  a.width[0] = p.tables.half * 2;
  const int elem = half ? 2 : 4, pad = half ? kPadHalf : kPadFloat;
  int widest = 0, sum_floats = p.head.factors + p.head.mlp_width + 2;
  for (int l = 0; l < L; ++l) {
    const LinearParams& q = p.layers[size_t(l)];
    if (q.in != a.width[l] || !fused_layer(q, half, &a.w[l], &a.b[l])) return false;
    a.width[l + 1] = q.out;
    a.drop[l] = p.dropout[size_t(l)];
    a.grad_b[l] = p.grad_b[size_t(l)];
    a.bias_sum[l] = sum_floats;
    sum_floats += q.out;
    a.act[l] = p.act[size_t(l)].data;
    a.d_act[l] = p.d_act[size_t(l)].data;
    if (p.act[size_t(l)].dtype != p.mlp_in.dtype || p.d_act[size_t(l)].dtype != p.mlp_in.dtype) return false;
    if (!aligned_to(a.act[l], 16) || !aligned_to(a.d_act[l], 16)) return false;
  }
  for (int l = 0; l <= L; ++l) widest = std::max(widest, a.width[l]);
  if (p.head.mlp_width != a.width[L] || p.head.factors != p.tables.factors) return false;
  for (const void* q : {static_cast<const void*>(p.tables.mlp_user), static_cast<const void*>(p.tables.mlp_item),
                        static_cast<const void*>(p.embed_grads.mlp_user), static_cast<const void*>(p.embed_grads.mlp_item),
                        static_cast<const void*>(p.mlp_in.data)})
    if (!aligned_to(q, 16)) return false;
  a.gmf_vec4 = p.tables.factors % 4 == 0;
  for (const void* q : {static_cast<const void*>(p.tables.mf_user), static_cast<const void*>(p.tables.mf_item),
                        static_cast<const void*>(p.embed_grads.mf_user), static_cast<const void*>(p.embed_grads.mf_item)})
    a.gmf_vec4 = a.gmf_vec4 && aligned_to(q, 16);
  a.block_floats = sum_floats;
  a.block_bytes = round_up(sum_floats * 4, 128);
  a.buf_bytes = round_up(kTileRows * (widest + pad) * elem, 128);
  a.warp_bytes = 2 * a.buf_bytes + kAccBytes;
  const size_t shared = size_t(a.block_bytes) + size_t(kFusedWarps) * size_t(a.warp_bytes);
  if (shared > shared_optin_) return false;
  if (n <= 0) return true;

  a.users = p.users;
  a.items = p.items;
  a.labels = p.labels;
  a.n = n;
  a.mlp_in = p.mlp_in.data;
  a.t = p.tables;
  a.g = p.embed_grads;
  a.head_w = p.head.w;
  a.head_b = p.head.b;
  a.head_grad_w = p.head_grad_w;
  a.head_grad_b = p.head_grad_b;
  a.grad_scale = p.grad_scale;
  a.loss_scale = p.scaler ? p.scaler->scale : nullptr;
  a.loss_sum = p.loss_sum;
  use_device(device_);
  // One wave of resident blocks (as many per multiprocessor as its shared memory holds, at most
  // 8), each looping over tiles: each block adds its sums to the gradients once.
  const int64_t tiles = (int64_t(n) + kTileRows - 1) / kTileRows;
  const int64_t per_sm = std::max<int64_t>(1, std::min<int64_t>(8, int64_t(shared_per_sm_ / (shared + 1024))));
  const unsigned blocks = capped(std::min<int64_t>((tiles + kFusedWarps - 1) / kFusedWarps, int64_t(sm_count_) * per_sm));
  if (half) launch_fused<__half, TrainArgs, TrainTiles>(a, blocks, shared, stream_, shared_optin_, train_opted_in_[0]);
  else launch_fused<float, TrainArgs, TrainTiles>(a, blocks, shared, stream_, shared_optin_, train_opted_in_[1]);
  return fused_launch_ok("train_pass", fused_);
}

}  // namespace ncf::cuda
