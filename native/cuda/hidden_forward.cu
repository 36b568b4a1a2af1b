// hidden_forward: hidden layers 1 .. L - 1 forward in one kernel (Backend::hidden_forward), the
// fused form of the chain's linear_forward per layer (a RELU_BIAS GEMM, then the dropout pass that
// also writes the live units). fp16 activations (--amp), or fp32 ones with TF32 GEMMs.
//
// A block keeps the layers' weights and biases in shared memory and loops over tiles of R
// consecutive rows:
//   1. the tile's rows of act[0] arrived in one of two staging buffers by cp.async while the block
//      worked on the previous tile;
//   2. per layer l: act[l - 1] W_l^T on Tensor Cores (block_mma, fp32 accumulation), each 16 x 16
//      result taken through bias and ReLU and rounded as the GEMM's epilogue stores it (fp16),
//      then through dropout exactly as the chain's pass (relu_dropout8_half for fp16, or
//      relu_dropout8: the same Philox block per row and 8 features), stored to act[l] with its
//      live-unit byte and, unless it is the last layer, to a shared tile that the next layer
//      multiplies.
// The kernel takes the leading layers whose weights fit in shared memory beside the tiles: at
// ml-20m's layers 256-128-64 both in fp16 (180 KB with 64-row tiles), the first alone in fp32
// (210 KB with 32-row tiles; the last layer stays a cuBLASLt GEMM). The one-buffer form
// (KernelForms::forward_one_buffer, NCF_CUDA_HIDDEN_FORWARD=one-buffer) stages act[0]'s tiles in
// one buffer, refilled once the first product has read it (so the next tile's rows arrive during
// the later layers only), where that fits more layers or, as many, larger tiles (twice the warps
// to hide latency with): at that shape in fp32 both layers (228 KB, 222.75 KiB, with 32-row
// tiles), in fp16 128-row tiles of 16 warps (204 KiB). It declines where two buffers fit as much.
// Memory pattern per row: act[0] read once, each later layer's output (and live units) written
// once; the chain also wrote each pre-dropout output, read and rewrote it in the dropout pass, and
// read it again for the next GEMM (about 0.77 KB a row less at ml-20m's shape in fp16; 1 KB for
// the first layer alone in fp32).
// With the first layer's parts (FirstLayerParts), the staging buffer takes the row's item-side
// part row b[ib[r]] instead of act[0]'s row, and the block adds the user-side row a[ia[r]] (read
// through L1: a user's rows are consecutive) and takes ReLU and the first layer's dropout in place
// before the first product, rounding as gather_add_relu does. act[0] is never read:
//   - evaluation and serving: nor written, and of the later layers only the last one's output
//     (what the caller reads next: the output unit, or the chain's next layer). At ml-20m's shape
//     that saves gather_add_relu's write of act[0] and the kernel's read of it, 1 KB a row in fp16
//     and 2 KB in fp32, and in fp16 the write of act[1], 0.25 KB (of about 1.5 / 3.5 KB a row
//     through the chain);
//   - training: act[0] and its live units are written as gather_add_relu wrote them (the backward
//     pass reads them), which saves the read of act[0], 0.5 KB a row in fp16 and 1 KB in fp32.
// The item-side rows (14 MB in fp16, 27 MB in fp32) come from L2. NCF_CUDA_HIDDEN_PARTS=0 leaves
// the first layer to gather_add_relu.
#include <algorithm>

#include "cuda_backend.cuh"
#include "mlp_tiles.cuh"
#include "relu_dropout8.cuh"

namespace ncf::cuda {

namespace {

struct ForwardArgs {
  int64_t n;
  int layers;                            // the kernel computes act[1] .. act[layers - 1]
  int rows;                              // R, rows per tile (a multiple of 32)
  int buffers;                           // staging buffers for act[0]'s tiles: 2, or 1 (for_each_tile)
  int width[kMaxFusedLayers];            // hidden layer l's output width
  const void* w[kMaxFusedLayers];        // l >= 1: [width[l] x width[l - 1]], in the activations' type
  const void* b[kMaxFusedLayers];        // l >= 1: the bias as the chain's GEMM epilogue takes it (that type)
  void* act[kMaxFusedLayers];            // [n x width[l]]; act[0] is read, the others written
  uint8_t* mask[kMaxFusedLayers];        // live units of act[l] (UnitMask bits), null where not kept
  int mask_bytes[kMaxFusedLayers];       // bytes per row of mask[l]
  Dropout drop[kMaxFusedLayers];
  bool half_math[kMaxFusedLayers];       // fp16: the dropout in half2 arithmetic (CudaBackend::half_math)
  // act[0] from the first layer's parts (part_a null: act[0] given): relu(part_a[ia[r]] +
  // part_b[ib[r]]) through drop[0], with its live units into mask[0]; keep_all: every layer's
  // output written (training), else the last alone.
  const void* part_a;
  const uint32_t* ia;
  const void* part_b;
  const uint32_t* ib;
  bool keep_all;
  // Shared memory, byte offsets: weights, biases (fp32), one or two staging buffers for act[0]'s
  // tile, two tiles for the layers in between, each warp's accumulator scratch.
  int w_off[kMaxFusedLayers];
  int bias_off[kMaxFusedLayers];
  int stage_off[2];
  int buf_off[2];
  int scratch_off;
};

// Bias, ReLU and dropout of 8 accumulated values v as the chain's GEMM epilogue and dropout pass
// take them, for row `row` and features 8g..8g+7; v becomes the stored values (in T) as floats,
// packed into `out` (16 bytes of fp16, or 32 of fp32). Returns the live-unit byte.
template <typename T>
__device__ __forceinline__ uint32_t bias_relu_dropout8(float* v, const float* bias, const ForwardArgs& a, int l, int64_t row,
                                                      int g, __half2 scale, uint4* out);
template <>
__device__ __forceinline__ uint32_t bias_relu_dropout8<__half>(float* v, const float* bias, const ForwardArgs& a, int l,
                                                              int64_t row, int g, __half2 scale, uint4* out) {
  Half8 h;  // rounded to fp16 as the GEMM stores them
#pragma unroll
  for (int j = 0; j < 4; ++j)
    h.h2[j] = __floats2half2_rn(fmaxf(v[2 * j] + bias[2 * j], 0.0f), fmaxf(v[2 * j + 1] + bias[2 * j + 1], 0.0f));
  uint32_t live;
  if (a.half_math[l]) {
    live = relu_dropout8_half(h.raw, false, a.drop[l], scale, row, g);
  } else {
    unpack8(h.raw, v);
    live = relu_dropout8<__half>(v, 8, nullptr, false, a.drop[l], row, g);
#pragma unroll
    for (int j = 0; j < 4; ++j) h.h2[j] = __floats2half2_rn(v[2 * j], v[2 * j + 1]);
  }
  out[0] = h.raw;
  return live;
}
#ifdef NCF_WARP_TF32  // (the fp32 body runs only where TF32 WMMA exists: sm_80 and later)
template <>
__device__ __forceinline__ uint32_t bias_relu_dropout8<float>(float* v, const float* bias, const ForwardArgs& a, int l,
                                                             int64_t row, int g, __half2, uint4* out) {
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = fmaxf(v[j] + bias[j], 0.0f);
  const uint32_t live = relu_dropout8<float>(v, 8, nullptr, false, a.drop[l], row, g);
  float4* f = reinterpret_cast<float4*>(out);
  f[0] = make_float4(v[0], v[1], v[2], v[3]);
  f[1] = make_float4(v[4], v[5], v[6], v[7]);
  return live;
}
#endif

// act[0]'s values at row `row`, columns c .. c + 7, from the parts by gather_add_relu's step
// (add_relu_dropout8, with drop[0]; scale: half_scale of it): the item-side values staged at
// `tile` become dropout(relu(user side + item side)); in training also stored to act[0] with their
// live-unit byte.
template <typename T>
__device__ __forceinline__ void first_layer8(const ForwardArgs& a, int64_t row, int c, T* tile, __half2 scale) {
  const T* const user_side = static_cast<const T*>(a.part_a) + int64_t(a.ia[row]) * a.width[0] + c;
  const int g = c / 8;
  const uint32_t live = add_relu_dropout8(user_side, tile, tile, a.drop[0], scale, a.half_math[0], row, g);
  if (!a.keep_all) return;
  const uint4* const v = reinterpret_cast<const uint4*>(tile);
  uint4* const out = reinterpret_cast<uint4*>(static_cast<T*>(a.act[0]) + row * a.width[0] + c);
#pragma unroll
  for (int q = 0; q < int(sizeof(T) / 2); ++q) out[q] = v[q];
  if (a.mask[0]) a.mask[0][row * a.mask_bytes[0] + g] = uint8_t(live);
}

template <typename T>
struct ForwardTiles {
  __device__ static void run(const ForwardArgs& a, char* shared);
};

template <typename T>
__device__ void ForwardTiles<T>::run(const ForwardArgs& a, char* shared) {
  const int L = a.layers, R = a.rows, lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  stage_weights(shared, reinterpret_cast<const T* const*>(a.w), a.width, a.w_off, 1, L);
  for (int l = 1; l < L; ++l)
    for (int j = int(threadIdx.x); j < a.width[l]; j += int(blockDim.x))
      reinterpret_cast<float*>(shared + a.bias_off[l])[j] = float(static_cast<const T*>(a.b[l])[j]);
  // Tile t's rows of act[0], or of the item-side part, into staging buffer s.
  auto stage_input = [&](int64_t t, int s) {
    T* const tile = reinterpret_cast<T*>(shared + a.stage_off[s]);
    if (a.part_a) stage_rows(tile, static_cast<const T*>(a.part_b), a.n, a.width[0], t * R, R, a.ib);
    else stage_rows(tile, static_cast<const T*>(a.act[0]), a.n, a.width[0], t * R, R);
  };
  float* const scratch = reinterpret_cast<float*>(shared + a.scratch_off) + warp * kTileRows * kAccLd;
  for_each_tile(a.n, R, a.buffers, stage_input, [&](int64_t t, int stage, const auto& release) {
    const int64_t r0 = t * R;
    if (a.part_a) {  // act[0] = dropout(relu(user-side row + the staged item-side row)), in place
      T* const tile = reinterpret_cast<T*>(shared + a.stage_off[stage]);
      const int groups = a.width[0] / 8, ld = tile_ld<T>(a.width[0]);
      const __half2 scale = half_scale(a.drop[0]);
      for (int i = int(threadIdx.x); i < R * groups; i += int(blockDim.x)) {
        const int r = i / groups, c = (i - r * groups) * 8;
        if (r0 + r >= a.n) continue;  // (staged as zeros)
        first_layer8(a, r0 + r, c, tile + r * ld + c, scale);
      }
      __syncthreads();
    }
    for (int l = 1; l < L; ++l) {
      const int in = a.width[l - 1], out = a.width[l];
      const T* x = reinterpret_cast<const T*>(shared + (l == 1 ? a.stage_off[stage] : a.buf_off[(l - 1) % 2]));
      // act[l] also to a shared tile while a later layer needs it.
      T* const next = l < L - 1 ? reinterpret_cast<T*>(shared + a.buf_off[l % 2]) : nullptr;
      const float* const bias = reinterpret_cast<const float*>(shared + a.bias_off[l]);
      const __half2 scale = half_scale(a.drop[l]);
      T* const dst = static_cast<T*>(a.act[l]);
      const bool store_act = l == L - 1 || !a.part_a || a.keep_all;  // (evaluation from the parts: the last alone)
      uint8_t* const mask = a.mask[l];
      const int mask_bytes = a.mask_bytes[l];
      const T* const w = reinterpret_cast<const T*>(shared + a.w_off[l]);
      // Lane: row tr + lane / 2, columns tc + 8 (lane % 2) .. + 7 of a 16 x 16 block.
      auto epilogue = [&](int tr, int tc, const float* acc) {
        const int r = tr + lane / 2, c = tc + 8 * (lane % 2), g = c / 8;
        const int64_t row = r0 + r;
        float v[8];
        lane_values8(acc, lane, v);
        uint4 out8[sizeof(T) / 2];  // the 8 values as stored: 16 or 32 bytes
        const uint32_t live = bias_relu_dropout8<T>(v, bias + c, a, l, row, g, scale, out8);
        uint4* const in_tile = next ? reinterpret_cast<uint4*>(next + r * tile_ld<T>(out) + c) : nullptr;
        uint4* const in_act = reinterpret_cast<uint4*>(dst + row * out + c);
#pragma unroll
        for (int q = 0; q < int(sizeof(T) / 2); ++q) {
          if (in_tile) in_tile[q] = out8[q];
          if (row < a.n && store_act) in_act[q] = out8[q];
        }
        if (mask && row < a.n) mask[row * mask_bytes + g] = uint8_t(live);
      };
      block_mma<T, true>(x, tile_ld<T>(in), R, in, w, tile_ld<T>(in), out, scratch, epilogue);
      __syncthreads();  // act[l]'s shared tile is complete before the next layer reads it
      if (l == 1) release();  // (the staging buffer is read: one buffer, the next tile's copies now)
    }
  });
}

}  // namespace

int CudaBackend::hidden_forward(const std::vector<Mat>& act, const std::vector<LinearParams>& layers,
                                const std::vector<Dropout>& drop, const std::vector<UnitMask>& masks,
                                const FirstLayerParts* parts) {
  const int L = int(act.size());
  if (!forms_.hidden_forward || !hidden_forward_ok_ || L < 2 || L > kMaxFusedLayers || layers.size() != size_t(L) || drop.size() != size_t(L) ||
      masks.size() != size_t(L))
    return 0;
  // fp16 activations, or fp32 ones with TF32 GEMMs (the same rounding as the chain's).
  const DType type = act[0].dtype;
  const bool half = type == DType::F16;
  if (!tensor_cores_allowed(half)) return 0;
  const int64_t n = act[0].rows;
  const int elem = half ? 2 : 4;
  auto ld = [&](int cols) { return half ? tile_ld<__half>(cols) : tile_ld<float>(cols); };
  ForwardArgs a{};
  a.n = n;
  if (!tile_matrices(act, type, n, a.width, a.act)) return 0;
  if (parts) {  // both parts of act[0]'s type and width, 16-byte aligned rows (NCF_CUDA_HIDDEN_PARTS=0: none)
    if (!hidden_parts_) return 0;
    for (const Mat* m : {&parts->a, &parts->b})
      if (m->dtype != type || m->cols != a.width[0] || !aligned_to(m->data, 16)) return 0;
    if (!parts->ia || !parts->ib) return 0;
    a.part_a = parts->a.data;
    a.ia = parts->ia;
    a.part_b = parts->b.data;
    a.ib = parts->ib;
    a.keep_all = parts->training;
    a.mask[0] = masks[0].bits;
    a.mask_bytes[0] = int(masks[0].ld / 8);
    a.drop[0] = drop[0];
    a.half_math[0] = half && half_math(drop[0]);
  }
  for (int l = 1; l < L; ++l) {
    const LinearParams& p = layers[size_t(l)];
    a.w[l] = half ? p.w_half : static_cast<const void*>(p.w);
    a.b[l] = half ? p.b_half : static_cast<const void*>(p.b);
    if (!a.w[l] || !a.b[l] || !aligned_to(a.w[l], 16) || p.out != a.width[l] || p.in != a.width[l - 1]) return 0;
    const UnitMask& m = masks[size_t(l)];
    a.mask[l] = m.bits;
    a.mask_bytes[l] = int(m.ld / 8);
    a.drop[l] = drop[size_t(l)];
    a.half_math[l] = half && half_math(drop[size_t(l)]);
  }
  // The shared memory for layers 1 .. K - 1, tiles of R rows and `buffers` staging buffers.
  auto layout = [&](int K, int R, int buffers) {
    SharedLayout at;
    for (int l = 1; l < K; ++l) {
      a.w_off[l] = at.take(a.width[l] * ld(a.width[l - 1]) * elem);
      a.bias_off[l] = at.take(a.width[l] * 4);
    }
    for (int s = 0; s < buffers; ++s) a.stage_off[s] = at.take(R * ld(a.width[0]) * elem);
    int widest[2] = {0, 0};  // the tiles for act[1] .. act[K - 2], by parity
    for (int l = 1; l < K - 1; ++l) widest[l % 2] = std::max(widest[l % 2], a.width[l]);
    for (int p = 0; p < 2; ++p) a.buf_off[p] = at.take(R * ld(widest[p]) * elem);
    a.scratch_off = at.take(tile_warps(R) * kTileRows * kAccLd * 4);
    return size_t(at.bytes);
  };
  // The most leading layers that fit with `buffers` staging buffers, with the largest R (128, else
  // 64, else 32); none: 0 layers.
  struct Fit {
    int layers = 0, rows = 0;
  };
  auto most_layers = [&](int buffers) {
    for (int K = L; K >= 2; --K)
      for (int R : {128, 64, 32})
        if (layout(K, R, buffers) <= shared_optin_) return Fit{K, R};
    return Fit{};
  };
  // Two buffers (the next tile's rows arrive during the whole tile's work), or with the one-buffer
  // form one (they arrive during the layers after the first), where that takes more layers or
  // larger tiles: at ml-20m's 256-128-64, in TF32 both layers in 222.75 KiB with 32-row tiles
  // instead of the first alone, in fp16 128-row tiles (16 warps) instead of 64. Where one buffer
  // fits no more, that form declines (it would be the two-buffer one).
  Fit fit = most_layers(2);
  a.buffers = 2;
  if (forms_.forward_one_buffer) {
    const Fit one = most_layers(1);  // (never fewer layers, nor smaller tiles at as many)
    if (one.layers == fit.layers && one.rows == fit.rows) return 0;
    fit = one;
    a.buffers = 1;
  }
  if (!fit.layers) return 0;
  a.layers = fit.layers;
  a.rows = fit.rows;
  const size_t shared = layout(fit.layers, fit.rows, a.buffers);  // (a's offsets: this layout's)

  const OpSpan span(&op_times_, "hidden_forward", stream_);
  if (n > 0) {
    use_device(device_);
    const TileLaunch launch{(n + a.rows - 1) / a.rows, a.rows, shared, shared_optin_, persistent_blocks(), stream_};
    if (!launch_tiles<ForwardTiles>("hidden_forward", half, a, launch, hidden_forward_opted_in_, hidden_forward_ok_)) return 0;
  }
  ++hidden_forward_runs_;
  if (a.part_a) ++hidden_parts_runs_;
  if (a.buffers == 1) ++hidden_one_buffer_runs_;
  return a.layers - 1;
}

}  // namespace ncf::cuda
