// The output unit on the GPU: eight lanes per row, four rows per warp at once. Lane s of a row's
// group takes MLP features s, s + 8, s + 16, ..., so each load instruction of the group reads
// whole 32-byte sectors of the row (in training, for widths 8..64 in steps of 8 and 16-byte rows,
// features 8s..8s+7 instead, as one 16-byte load and store: fewer instructions in a kernel that
// issue limits), and three shuffles sum the group's partial dot products. The
// GMF product is formed from the two table rows in the same way, or, with kChunks > 0 (factors =
// 32 kChunks, 16-byte aligned rows), lane s takes the four factors 4s..4s+3 of each 32-factor
// chunk as one 16-byte load (and one 16-byte vector atomic in the backward pass).
// head_forward: logit = w . [mf_user[u] * mf_item[v] ; mlp] + b.
// head_forward_backward: the same logit, the sigmoid-BCE loss and its gradient
// g = (sigmoid(z) - y) * grad_scale (times the loss scale under --amp); writes d_mlp = g w_mlp
// (taken through the last hidden layer's ReLU and dropout when asked: that layer's output comes
// before its dropout, which is applied here, to the logit's inputs as to the gradient, from keep
// bits that keep_bits_kernel draws first: an 8-byte word a row (bit j: feature j), against the
// 264 bytes a dropout pass over the layer's fp16 output moved, and no
// Philox in this kernel, whose registers are spoken for; live where the dropped value is > 0;
// that layer's bias gradient summed like the weights'),
// adds (g w_gmf) * mf_item[v] into the gradient of mf_user[u] and (g w_gmf) * mf_user[u] into
// mf_item[v]'s with global atomics (the rows are read again for it, from L1), and sums the weight
// gradients g x over the rows: in registers per lane (its features are fixed; beyond kRegGmf /
// kRegMlp, in shared memory atomics), then over the warp by shuffles, the block in
// shared memory, and one global atomic per weight per block. No GMF value or gradient is
// written per row.
#include <initializer_list>

#include "../core/dropout.h"
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

constexpr int kRowLanes = 8;
constexpr int kRowsPerWarp = 32 / kRowLanes;
// Weight-gradient sums in registers per lane: the GMF part's features (4 kChunks, or up to
// kRegGmf), the MLP part's (up to kRegMlp: widths up to 64); the rest go to shared memory.
constexpr int kRegGmf = 16;
constexpr int kRegMlp = 8;
constexpr int kMaxChunks = kRegGmf / 4;

// The sum of v over the 8 lanes of a row's group, in each of them.
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = kRowLanes / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The GMF factor that lane `sub` holds in its k-th register slot.
template <int kChunks>
__device__ __forceinline__ int gmf_feature(int sub, int k) {
  return kChunks > 0 ? 32 * (k / 4) + 4 * sub + (k % 4) : sub + kRowLanes * k;
}

// The lane's share of w_gmf . (mu * mi).
template <int kChunks>
__device__ __forceinline__ float gmf_dot(const float* mu, const float* mi, const HeadParams& p, int sub) {
  float s = 0.0f;
  if constexpr (kChunks > 0) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = 32 * c + 4 * sub;
      const float4 a = *reinterpret_cast<const float4*>(mu + j), b = *reinterpret_cast<const float4*>(mi + j);
      s += p.w[j] * (a.x * b.x) + p.w[j + 1] * (a.y * b.y) + p.w[j + 2] * (a.z * b.z) + p.w[j + 3] * (a.w * b.w);
    }
  } else {
    for (int j = sub; j < p.factors; j += kRowLanes) s += p.w[j] * (mu[j] * mi[j]);
  }
  return s;
}

// v as it reads back after a store in t.
__device__ __forceinline__ float as_stored(float v, DType t) {
  return t == DType::F16 ? __half2float(__float2half_rn(v)) : v;
}

// A value of the last hidden layer's output after its dropout (kept or not), rounded as that
// layer's dropout pass would have stored it.
__device__ __forceinline__ float dropped(float v, bool kept, const Dropout& d, DType t) {
  return d.active ? (kept ? as_stored(v * d.scale, t) : 0.0f) : v;
}

// Whether feature j is kept by the row's keep word (bit j; features past 64 have no bits: their
// dropout, if any, was a pass before the unit).
__device__ __forceinline__ bool kept_bit(uint64_t kept, int j) { return j >= 64 || ((kept >> j) & 1u); }

// The lane's share of w_mlp . dropout(mlp[row]) (features sub + 8k), with the row's keep word;
// without dropout (d inactive) the plain w_mlp . mlp[row].
__device__ __forceinline__ float mlp_dot(const void* mlp, DType mt, int64_t row, const HeadParams& p, int sub,
                                         uint64_t kept, const Dropout& d) {
  float s = 0.0f;
  for (int j = sub; j < p.mlp_width; j += kRowLanes)
    s += p.w[p.factors + j] * dropped(load(mlp, mt, row * p.mlp_width + j), kept_bit(kept, j), d, mt);
  return s;
}

// The last layer's keep bits, 8 bytes a row: bit j of the row's 64-bit word is set where the
// dropout keeps feature j (byte g from Philox block g, core/dropout.h). One thread per row. For
// widths up to 64.
__global__ void keep_bits_kernel(Dropout d, int64_t rows, int width, uint2* keep) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    uint32_t word[2] = {0, 0};
    for (int g = 0; g * 8 < width; ++g) {
      const U32x4 blk = dropout_block(d, uint64_t(r), uint32_t(g));
      uint32_t byte = 0;
#pragma unroll
      for (int l = 0; l < 8; ++l) byte |= uint32_t(dropout_keep(d, blk, l)) << l;
      word[g / 4] |= byte << (8 * (g % 4));
    }
    keep[r] = make_uint2(word[0], word[1]);
  }
}

// The row's keep word (all kept without keep bits).
__device__ __forceinline__ uint64_t keep_word(const uint8_t* keep, int64_t row) {
  if (!keep) return ~uint64_t(0);
  const uint2 k = reinterpret_cast<const uint2*>(keep)[row];
  return uint64_t(k.x) | (uint64_t(k.y) << 32);
}

template <int kChunks>
__global__ void head_forward_kernel(EmbedTables t, const uint32_t* users, const uint32_t* items, const void* mlp, DType mt,
                                    int rows, HeadParams p, float* logits) {
  const int lane = threadIdx.x & 31, sub = lane % kRowLanes;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t base = warp * kRowsPerWarp; base < rows; base += warps * kRowsPerWarp) {
    const int64_t row = base + lane / kRowLanes;
    const bool valid = row < rows;
    float s = 0.0f;
    if (valid)
      s = gmf_dot<kChunks>(t.mf_user + int64_t(users[row]) * p.factors, t.mf_item + int64_t(items[row]) * p.factors, p,
                           sub) +
          mlp_dot(mlp, mt, row, p, sub, ~uint64_t(0), Dropout{});
    const float z = group_sum(s) + p.b[0];  // rows past the end take part with zeros
    if (valid && sub == 0) logits[row] = z;
  }
}

// Blocks per SM the register budget is set for: 3 (80 registers a thread: no spills with the
// default 64 factors, where 4 blocks' 64 registers spilled 52 bytes), 4 for one chunk.
constexpr int head_loss_min_blocks(int chunks) { return chunks == 1 ? 4 : 3; }

// The last hidden layer, when the output unit applies its dropout and takes the gradient back
// through it and the ReLU (grad_b null: it does not).
struct TopLayer {
  Dropout drop;          // applied here when active (keep: keep_bits_kernel's words, 8 bytes a row)
  const uint8_t* keep;
  float scale;           // the dropout's 1 / (1 - p) for the gradient (also when mlp comes dropped), or 1
  float* grad_b;         // its bias gradient: the column sums of the masked gradient
};

// The MLP feature that lane `sub` holds in its k-th register slot: features sub + 8k (M
// StridedMlp: one 2- or 4-byte load each, any width), or 8 sub + k (M the MLP's element type: the
// lane's 8 features as one 16-byte fp16 or two fp32 loads, for widths of 8, 16, ..., 64 and
// 16-byte rows).
struct StridedMlp {};
template <typename M>
constexpr bool strided_mlp = std::is_same<M, StridedMlp>::value;
template <typename M>
__device__ __forceinline__ int mlp_feature(int sub, int k) {
  return strided_mlp<M> ? sub + kRowLanes * k : 8 * sub + k;
}

template <int kChunks, typename M>
__global__ void __launch_bounds__(kThreads, head_loss_min_blocks(kChunks))
    head_loss_kernel(EmbedTables t, const uint32_t* users, const uint32_t* items, const void* mlp, DType mt,
                     const float* labels, int rows, HeadParams p, float grad_scale, const float* loss_scale, void* d_mlp,
                     TopLayer top, EmbedGrads gt, float* grad_w, float* grad_b, double* loss_sum) {
  // [factors + mlp_width] weight-gradient sums, the bias's, the loss, [mlp_width] the top layer's
  // bias-gradient sums
  extern __shared__ float acc[];
  const int f = p.factors, m = p.mlp_width, width = f + m;
  float* acc_top = acc + width + 2;
  for (int j = threadIdx.x; j < width + 2 + m; j += blockDim.x) acc[j] = 0.0f;
  __syncthreads();
  const float scale = grad_scale * (loss_scale ? *loss_scale : 1.0f);
  const int lane = threadIdx.x & 31, sub = lane % kRowLanes;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  constexpr int kG = kChunks > 0 ? 4 * kChunks : kRegGmf;
  // The lane's GMF (gmf_feature) and MLP (mlp_feature) features' sums, and the top layer's.
  float sum_g[kG], sum_m[kRegMlp], sum_t[kRegMlp];
#pragma unroll
  for (int k = 0; k < kG; ++k) sum_g[k] = 0.0f;
#pragma unroll
  for (int k = 0; k < kRegMlp; ++k) sum_m[k] = sum_t[k] = 0.0f;
  float loss = 0.0f, bias = 0.0f;
  for (int64_t base = warp * kRowsPerWarp; base < rows; base += warps * kRowsPerWarp) {
    const int64_t row = base + lane / kRowLanes;
    const bool valid = row < rows;
    const uint32_t u = valid ? users[row] : 0, v = valid ? items[row] : 0;
    const float* mu = t.mf_user + int64_t(u) * f;
    const float* mi = t.mf_item + int64_t(v) * f;
    const uint64_t kept = valid ? keep_word(top.keep, row) : 0;
    float s = 0.0f;
    if (valid) {
      s = gmf_dot<kChunks>(mu, mi, p, sub);
      if constexpr (strided_mlp<M>) {
        s += mlp_dot(mlp, mt, row, p, sub, kept, top.drop);
      } else if (8 * sub < m) {
        float a[8];
        load8(static_cast<const M*>(mlp) + row * m + 8 * sub, a);
#pragma unroll
        for (int k = 0; k < 8; ++k) s += p.w[f + 8 * sub + k] * dropped(a[k], kept_bit(kept, 8 * sub + k), top.drop, mt);
      }
    }
    const float z = group_sum(s) + p.b[0];
    // Whether the warp's four rows are one user's (a batch grouped by user has ~8 rows per user):
    // then their GMF user-row gradients are summed across the groups first, and one group adds
    // them, instead of four groups adding to the same addresses in one atomic instruction.
    bool one_user = false;
    if constexpr (kChunks > 0) {  // every lane, before any lane leaves for a row past the end
      const uint32_t lead_user = __shfl_sync(0xffffffffu, u, 0);
      one_user = __all_sync(0xffffffffu, valid && u == lead_user);
    }
    if (!valid) continue;
    const float label = labels[row];
    const float g = (1.0f / (1.0f + expf(-z)) - label) * scale;
    if (sub == 0) {
      loss += fmaxf(z, 0.0f) - z * label + log1pf(expf(-fabsf(z)));
      bias += g;
    }
    float* gu = gt.mf_user + int64_t(u) * f;
    float* gi = gt.mf_item + int64_t(v) * f;
    if constexpr (kChunks > 0) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const int j = 32 * c + 4 * sub;
        const float4 a = *reinterpret_cast<const float4*>(mu + j), b = *reinterpret_cast<const float4*>(mi + j);
        const float d0 = g * p.w[j], d1 = g * p.w[j + 1], d2 = g * p.w[j + 2], d3 = g * p.w[j + 3];
        sum_g[4 * c] += g * (a.x * b.x);
        sum_g[4 * c + 1] += g * (a.y * b.y);
        sum_g[4 * c + 2] += g * (a.z * b.z);
        sum_g[4 * c + 3] += g * (a.w * b.w);
        float4 du = make_float4(d0 * b.x, d1 * b.y, d2 * b.z, d3 * b.w);
        if (one_user) {  // warp-uniform: every lane is here
          for (int o = kRowLanes; o < 32; o <<= 1) {
            du.x += __shfl_xor_sync(0xffffffffu, du.x, o);
            du.y += __shfl_xor_sync(0xffffffffu, du.y, o);
            du.z += __shfl_xor_sync(0xffffffffu, du.z, o);
            du.w += __shfl_xor_sync(0xffffffffu, du.w, o);
          }
        }
        if (!one_user || lane < kRowLanes) atomic_add4(gu + j, du.x, du.y, du.z, du.w);
        atomic_add4(gi + j, d0 * a.x, d1 * a.y, d2 * a.z, d3 * a.w);
      }
    } else {
#pragma unroll
      for (int k = 0; k < kG; ++k) {
        const int j = sub + kRowLanes * k;
        if (j < f) {
          const float d = g * p.w[j];
          sum_g[k] += g * (mu[j] * mi[j]);
          atomicAdd(gu + j, d * mi[j]);
          atomicAdd(gi + j, d * mu[j]);
        }
      }
      for (int j = sub + kRowLanes * kG; j < f; j += kRowLanes) {
        const float d = g * p.w[j];
        atomicAdd(&acc[j], g * (mu[j] * mi[j]));
        atomicAdd(gu + j, d * mi[j]);
        atomicAdd(gi + j, d * mu[j]);
      }
    }
    // d_mlp = g w_mlp, through the top layer's dropout and ReLU (live where its output after
    // dropout is > 0) when asked, rounded as the separate pass would see it.
    // The gradient of feature j from the top layer's stored value x: its output after dropout
    // `act`, and d, into the register sums of slot k.
    auto mlp_grad = [&](int k, int j, float x) {
      const float act = dropped(x, kept_bit(kept, j), top.drop, mt);
      float d = g * p.w[f + j];
      if (top.grad_b) {
        d = act > 0.0f ? as_stored(d, mt) * top.scale : 0.0f;
        sum_t[k] += d;
      }
      sum_m[k] += g * act;
      return d;
    };
    if constexpr (strided_mlp<M>) {
#pragma unroll
      for (int k = 0; k < kRegMlp; ++k) {
        const int j = sub + kRowLanes * k;
        if (j < m) store(d_mlp, mt, row * m + j, mlp_grad(k, j, load(mlp, mt, row * m + j)));
      }
    } else if (8 * sub < m) {
      float a[8], d[8];
      load8(static_cast<const M*>(mlp) + row * m + 8 * sub, a);  // again (L1): no registers held
#pragma unroll
      for (int k = 0; k < 8; ++k) d[k] = mlp_grad(k, 8 * sub + k, a[k]);
      store8(static_cast<M*>(d_mlp) + row * m + 8 * sub, d);
    }
    for (int j = sub + kRowLanes * kRegMlp; strided_mlp<M> && j < m; j += kRowLanes) {  // (no dropout here: widths over 64 get a pass)
      const float act = load(mlp, mt, row * m + j);
      float d = g * p.w[f + j];
      if (top.grad_b) {
        d = act > 0.0f ? as_stored(d, mt) * top.scale : 0.0f;
        atomicAdd(&acc_top[j], d);
      }
      store(d_mlp, mt, row * m + j, d);
      atomicAdd(&acc[f + j], g * act);
    }
  }
  // The warp's four row groups hold sums of the same features: add them up, then into the block's.
#pragma unroll
  for (int o = kRowLanes; o < 32; o <<= 1) {
#pragma unroll
    for (int k = 0; k < kG; ++k) sum_g[k] += __shfl_xor_sync(0xffffffffu, sum_g[k], o);
#pragma unroll
    for (int k = 0; k < kRegMlp; ++k) {
      sum_m[k] += __shfl_xor_sync(0xffffffffu, sum_m[k], o);
      sum_t[k] += __shfl_xor_sync(0xffffffffu, sum_t[k], o);
    }
  }
  if (lane < kRowLanes) {
#pragma unroll
    for (int k = 0; k < kG; ++k)
      if (gmf_feature<kChunks>(lane, k) < f) atomicAdd(&acc[gmf_feature<kChunks>(lane, k)], sum_g[k]);
#pragma unroll
    for (int k = 0; k < kRegMlp; ++k) {
      const int j = mlp_feature<M>(lane, k);
      if (j < m) {
        atomicAdd(&acc[f + j], sum_m[k]);
        atomicAdd(&acc_top[j], sum_t[k]);
      }
    }
  }
  if (sub == 0) {
    atomicAdd(&acc[width], bias);
    atomicAdd(&acc[width + 1], loss);
  }
  __syncthreads();
  for (int j = threadIdx.x; j < width; j += blockDim.x) atomicAdd(&grad_w[j], acc[j]);
  if (top.grad_b)
    for (int j = threadIdx.x; j < m; j += blockDim.x) atomicAdd(&top.grad_b[j], acc_top[j]);
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

// The GMF layout the kernels take: kChunks = factors / 32 when that is 1..kMaxChunks and every
// table (and gradient) row is 16-byte aligned, else 0 (one factor per lane and load).
int gmf_chunks(int factors, std::initializer_list<const void*> tables) {
  if (factors % 32 != 0 || factors / 32 > kMaxChunks) return 0;
  for (const void* p : tables)
    if (!aligned_to(p, 16)) return 0;
  return factors / 32;
}

// Runs launch(std::integral_constant<int, kChunks>) for the runtime chunk count.
template <typename Launch>
void with_chunks(int chunks, Launch launch) {
  switch (chunks) {
    case 1: launch(std::integral_constant<int, 1>()); break;
    case 2: launch(std::integral_constant<int, 2>()); break;
    case 3: launch(std::integral_constant<int, 3>()); break;
    case 4: launch(std::integral_constant<int, 4>()); break;
    default: launch(std::integral_constant<int, 0>()); break;
  }
}

}  // namespace

void CudaBackend::head_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp,
                               const HeadParams& p, float* logits) {
  const OpSpan span(&op_times_, "head_forward", stream_);
  const int rows = int(mlp.rows);
  if (rows <= 0) return;
  use_device(device_);
  with_chunks(gmf_chunks(p.factors, {t.mf_user, t.mf_item}), [&](auto chunks) {
    constexpr int kChunks = decltype(chunks)::value;
    head_forward_kernel<kChunks><<<grid(int64_t(rows) * kRowLanes), kThreads, 0, stream_>>>(
        t, users, items, mlp.data, mlp.dtype, rows, p, logits);
  });
  NCF_LAUNCHED();
}

void CudaBackend::head_forward_backward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp,
                                        const float* labels, const HeadParams& p, float grad_scale,
                                        const LossScaler* scaler, Mat d_mlp, const LayerBelow* below,
                                        const EmbedGrads& g_tables, float* grad_w, float* grad_b, double* loss_sum) {
  const OpSpan span(&op_times_, "head_forward_backward", stream_);
  const int rows = int(mlp.rows);
  use_device(device_);
  if (below && below->y.data != mlp.data)
    fail(ErrorCode::InvalidArgument, "head_forward_backward: the layer below's output must be the MLP input");
  NCF_CUDA(cudaMemsetAsync(grad_w, 0, sizeof(float) * size_t(p.factors + p.mlp_width), stream_));
  NCF_CUDA(cudaMemsetAsync(grad_b, 0, sizeof(float), stream_));
  TopLayer top{below ? below->dropout : Dropout{}, nullptr,
               below && below->dropout.active ? below->dropout.scale : 1.0f, below ? below->grad_b : nullptr};
  if (top.grad_b) NCF_CUDA(cudaMemsetAsync(top.grad_b, 0, sizeof(float) * size_t(p.mlp_width), stream_));
  if (rows <= 0) return;
  if (top.drop.active && p.mlp_width <= kRowLanes * 8 && head_dropout_) {
    // The keep bits first, a 64-bit word per row.
    const size_t bytes = size_t(rows) * sizeof(uint2);
    if (keep_bits_.size() < bytes) keep_bits_ = BackendArray<unsigned char>(*this, bytes);
    const OpSpan keep_span(&op_times_, "keep_bits", stream_);
    keep_bits_kernel<<<grid(rows), kThreads, 0, stream_>>>(top.drop, rows, p.mlp_width,
                                                           reinterpret_cast<uint2*>(keep_bits_.get()));
    NCF_LAUNCHED();
    top.keep = keep_bits_.get();
  } else if (top.drop.active) {
    // Wider (or NCF_CUDA_HEAD_DROPOUT=0): the dropout applied to mlp in place by linear_forward's
    // pass, then the kernel takes mlp as the layer's output after dropout (live where > 0, times
    // the scale).
    bias_relu_dropout(mlp, nullptr, top.drop, UnitMask{});
    top.drop = Dropout{};
  }
  const size_t smem = sizeof(float) * size_t(p.factors + 2 * p.mlp_width + 2);
  const float* ls = scaler ? scaler->scale : nullptr;
  // The lane's 8 MLP features by 16-byte loads where the width and alignment allow.
  const bool vec_mlp = p.mlp_width % 8 == 0 && p.mlp_width <= 8 * kRowLanes && aligned_to(mlp.data, 16) &&
                       aligned_to(d_mlp.data, 16) && d_mlp.dtype == mlp.dtype;
  with_chunks(gmf_chunks(p.factors, {t.mf_user, t.mf_item, g_tables.mf_user, g_tables.mf_item}), [&](auto chunks) {
    constexpr int kChunks = decltype(chunks)::value;
    auto launch = [&](auto mlp_type) {
      using M = decltype(mlp_type);
      head_loss_kernel<kChunks, M><<<capped(head_blocks(rows)), kThreads, smem, stream_>>>(
          t, users, items, mlp.data, mlp.dtype, labels, rows, p, grad_scale, ls, d_mlp.data, top, g_tables, grad_w, grad_b,
          loss_sum);
    };
    if (!vec_mlp) launch(StridedMlp());
    else if (mlp.dtype == DType::F16) launch(__half());
    else launch(float());
  });
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
