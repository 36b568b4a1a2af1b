// hidden_backward: the hidden layers' input gradients in one kernel (Backend::hidden_backward), the
// fused form of the chain's linear_backward input GEMM (dx = dz W) and the layer below's
// relu_dropout_backward (dz_below = dx * live * scale, and its column sums as the bias gradient),
// for every layer from the last down to the second. fp16 activations (--amp), or fp32 ones with
// TF32 GEMMs (TF32 Tensor Cores here too).
//
// A block keeps every layer's weights in shared memory (W_l as stored, [out x in], is the
// right-hand operand of dz W as it is) and loops over tiles of R consecutive rows:
//   1. the tile's rows of the last layer's gradient and every live-unit mask below it arrived in
//      one of two staging buffers by cp.async while the block worked on the previous tile;
//   2. per layer l from the last: dz[l] W_l on Tensor Cores (block_mma, fp32 accumulation),
//      each 16 x 16 result rounded as the chain's GEMM stores dx (fp16), masked and scaled as
//      relu_dropout_backward does, stored to dz[l - 1] in device memory and, unless it is the
//      last product, to a shared tile that the next layer multiplies; its column sums add up in
//      shared memory per block (column_sum16 over a 16-row block, then one shared atomic per column).
// Memory pattern per row: the last layer's gradient and the masks read once, each lower layer's
// gradient written once; the chain also wrote every unmasked dx, read it back and wrote it
// masked, and read it again for the next GEMM (about 0.74 KB a row less at ml-20m's layers
// 256-128-64 in fp16, 1.5 KB in fp32). The bias sums reach device memory once per block (atomics).
// Shared memory at that shape: 191 KB with 128-row tiles in fp16; 211 KB with 32-row tiles in fp32.
#include <algorithm>

#include "cuda_backend.cuh"
#include "mlp_tiles.cuh"
#include "relu_dropout8.cuh"

namespace ncf::cuda {

namespace {

struct BackwardArgs {
  int64_t n;
  int layers;                               // L: the kernel computes dz[L-2] .. dz[0]
  int rows;                                 // R, rows per tile (a multiple of 32)
  int width[kMaxFusedLayers];               // hidden layer l's output width
  const void* w[kMaxFusedLayers];           // l >= 1: [width[l] x width[l - 1]], in the activations' type
  void* dz[kMaxFusedLayers];                // [n x width[l]]; dz[L - 1] is read, the others written
  const uint8_t* mask[kMaxFusedLayers];     // l <= L - 2: live units (UnitMask bits)
  int mask_bytes[kMaxFusedLayers];          // bytes per row of mask[l] (its ld / 8, a multiple of 16)
  float scale[kMaxFusedLayers];             // dropout's scale of layer l (1 without dropout)
  float* grad_b[kMaxFusedLayers];           // layer l's bias gradient (zeroed by the caller)
  // Shared memory, byte offsets: the bias sums (at 0); weights (rows padded to tile_ld), per
  // layer; two staging buffers (the last layer's gradient tile, then each mask's tile); two tiles
  // for the gradients in between; each warp's accumulator scratch.
  int w_off[kMaxFusedLayers];
  int sum_off[kMaxFusedLayers];             // floats from the start of the sums
  int sums_bytes;
  int stage_off[2];
  int stage_mask_off[kMaxFusedLayers];      // within a staging buffer
  int buf_off[2];
  int scratch_off;
};

// The copies of tile t's inputs into staging buffer `stage`: the last layer's gradient rows and
// every mask's (rows past n: zeros).
template <typename T>
__device__ void stage_tile(const BackwardArgs& a, char* shared, int64_t t, int stage) {
  const int L = a.layers, R = a.rows;
  char* base = shared + a.stage_off[stage];
  const int64_t r0 = t * R;
  stage_rows(reinterpret_cast<T*>(base), static_cast<const T*>(a.dz[L - 1]), a.n, a.width[L - 1], r0, R);
  for (int l = 0; l < L - 1; ++l) {
    // A mask's rows as 16-byte chunks (rows of mask_bytes + 16 bytes in the tile: tile_ld<uint4>).
    const int chunks = a.mask_bytes[l] / 16;
    uint4* m = reinterpret_cast<uint4*>(base + a.stage_mask_off[l]);
    stage_rows(m, reinterpret_cast<const uint4*>(a.mask[l]), a.n, chunks, r0, R);
  }
}

// The sums of v[0..7] over the 16 lanes of the calling lane's parity (lane / 2: a 16 x 16 block's
// rows), by recursive halving: 8 shuffles where a butterfly per value takes 32. Returns, in each
// lane, the sum for column 4 b1 + 2 b2 + b3 of its 8 (b1, b2, b3: lane bits 1 to 3); lanes that
// differ only in bit 4 hold the same sum.
__device__ __forceinline__ float column_sum16(const float* v, int lane) {
  const bool h1 = lane & 2, h2 = lane & 4, h3 = lane & 8;
  float a[4], b[2];
#pragma unroll
  for (int i = 0; i < 4; ++i) a[i] = (h1 ? v[i + 4] : v[i]) + __shfl_xor_sync(0xffffffffu, h1 ? v[i] : v[i + 4], 2);
#pragma unroll
  for (int i = 0; i < 2; ++i) b[i] = (h2 ? a[i + 2] : a[i]) + __shfl_xor_sync(0xffffffffu, h2 ? a[i] : a[i + 2], 4);
  float c = (h3 ? b[1] : b[0]) + __shfl_xor_sync(0xffffffffu, h3 ? b[0] : b[1], 8);
  return c + __shfl_xor_sync(0xffffffffu, c, 16);
}

template <typename T>
struct BackwardTiles {
  __device__ static void run(const BackwardArgs& a, char* shared);
};

template <typename T>
__device__ void BackwardTiles<T>::run(const BackwardArgs& a, char* shared) {
  const int L = a.layers, R = a.rows, lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  float* const bias_sums = reinterpret_cast<float*>(shared);  // at offset 0 (layout in hidden_backward)
  // The weights, once per block (rows padded), and zeroed bias sums.
  stage_weights(shared, reinterpret_cast<const T* const*>(a.w), a.width, a.w_off, 1, L);
  for (int i = int(threadIdx.x); i < a.sums_bytes / 4; i += int(blockDim.x)) bias_sums[i] = 0.0f;
  float* const scratch = reinterpret_cast<float*>(shared + a.scratch_off) + warp * kTileRows * kAccLd;
  auto stage = [&](int64_t t, int s) { stage_tile<T>(a, shared, t, s); };
  for_each_tile(a.n, R, stage, [&](int64_t t, int s) {
    const char* st = shared + a.stage_off[s];
    const int64_t r0 = t * R;
    for (int l = L - 1; l >= 1; --l) {
      const int k = a.width[l], out = a.width[l - 1];
      const T* x = reinterpret_cast<const T*>(l == L - 1 ? st : shared + a.buf_off[l % 2]);
      // dz[l - 1] also to a shared tile while a layer below needs it.
      T* const next = l - 1 >= 1 ? reinterpret_cast<T*>(shared + a.buf_off[(l - 1) % 2]) : nullptr;
      const uint8_t* const mask = reinterpret_cast<const uint8_t*>(st + a.stage_mask_off[l - 1]);
      const int mask_ld = tile_ld<uint4>(a.mask_bytes[l - 1] / 16) * 16;  // the staged rows' bytes
      const float scale = a.scale[l - 1];
      T* const dst = static_cast<T*>(a.dz[l - 1]);
      float* const col_sums = bias_sums + a.sum_off[l - 1];
      const T* const w = reinterpret_cast<const T*>(shared + a.w_off[l]);
      // Lane: row tr + lane / 2, columns tc + 8 (lane % 2) .. + 7 of a 16 x 16 block.
      auto epilogue = [&](int tr, int tc, const float* acc) {
        const int r = tr + lane / 2, c = tc + 8 * (lane % 2);
        const uint32_t live = mask[r * mask_ld + c / 8];
        float v[8];
        lane_values8(acc, lane, v);
#pragma unroll
        for (int j = 0; j < 8; ++j)  // dx as the chain's GEMM stores it, then masked
          v[j] = (live >> j) & 1u ? stored<T>(v[j]) * scale : 0.0f;
        if (next) store8(next + r * tile_ld<T>(out) + c, v);
        if (r0 + r < a.n) store8(dst + (r0 + r) * out + c, v);
        // The column's sum over the block's rows (column_sum16's column for this lane).
        const float sum = column_sum16(v, lane);
        if (lane < 16) atomicAdd(&col_sums[c + 4 * ((lane >> 1) & 1) + 2 * ((lane >> 2) & 1) + ((lane >> 3) & 1)], sum);
      };
      block_mma<T, false>(x, tile_ld<T>(k), R, k, w, tile_ld<T>(out), out, scratch, epilogue);
      __syncthreads();  // dz[l - 1]'s shared tile is complete before the next layer reads it
    }
  });
  __syncthreads();
  for (int l = 0; l < L - 1; ++l)
    for (int j = int(threadIdx.x); j < a.width[l]; j += int(blockDim.x))
      atomicAdd(&a.grad_b[l][j], bias_sums[a.sum_off[l] + j]);
}

}  // namespace

bool CudaBackend::hidden_backward(const std::vector<Mat>& dz, const std::vector<LinearParams>& layers,
                                  const std::vector<LayerBelow>& below) {
  const int L = int(dz.size());
  if (!hidden_backward_ || L < 2 || L > kMaxFusedLayers || layers.size() != size_t(L) || below.size() != size_t(L - 1))
    return false;
  // fp16 activations, or fp32 ones with TF32 GEMMs (the same rounding as the chain's).
  const DType type = dz[0].dtype;
  const bool half = type == DType::F16;
  if (!tensor_cores_allowed(half)) return false;
  const int64_t n = dz[0].rows;
  const int elem = half ? 2 : 4;
  auto ld = [&](int cols) { return half ? tile_ld<__half>(cols) : tile_ld<float>(cols); };
  BackwardArgs a{};
  a.n = n;
  a.layers = L;
  if (!tile_matrices(dz, type, n, a.width, a.dz)) return false;
  for (int l = 1; l < L; ++l) {
    const LinearParams& p = layers[size_t(l)];
    a.w[l] = half ? p.w_half : static_cast<const void*>(p.w);
    if (!a.w[l] || !aligned_to(a.w[l], 16) || p.out != a.width[l] || p.in != a.width[l - 1]) return false;
  }
  for (int l = 0; l < L - 1; ++l) {
    const LayerBelow& b = below[size_t(l)];
    if (b.mask.empty() || b.mask.ld % 128 != 0 || !aligned_to(b.mask.bits, 16) || !b.grad_b) return false;
    a.mask[l] = b.mask.bits;
    a.mask_bytes[l] = int(b.mask.ld / 8);
    a.scale[l] = b.dropout.active ? b.dropout.scale : 1.0f;
    a.grad_b[l] = b.grad_b;
  }
  // The shared memory a tile of R rows takes; the largest R (128, else 64, else 32) that fits.
  auto layout = [&](int R) {
    SharedLayout at;
    int sum_floats = 0;
    for (int l = 0; l < L - 1; ++l) {
      a.sum_off[l] = sum_floats;
      sum_floats += a.width[l];
    }
    a.sums_bytes = round_up(sum_floats * 4, 16);
    at.take(a.sums_bytes);  // first: the kernel finds the sums at offset 0
    for (int l = 1; l < L; ++l) a.w_off[l] = at.take(a.width[l] * ld(a.width[l - 1]) * elem);
    int stage_bytes = round_up(R * ld(a.width[L - 1]) * elem, 128);
    for (int l = 0; l < L - 1; ++l) {
      a.stage_mask_off[l] = stage_bytes;
      stage_bytes += round_up(R * tile_ld<uint4>(a.mask_bytes[l] / 16) * 16, 128);
    }
    a.stage_off[0] = at.take(stage_bytes);
    a.stage_off[1] = at.take(stage_bytes);
    int widest[2] = {0, 0};  // the tiles for dz[1] .. dz[L - 2], by parity
    for (int l = 1; l < L - 1; ++l) widest[l % 2] = std::max(widest[l % 2], a.width[l]);
    for (int p = 0; p < 2; ++p) a.buf_off[p] = at.take(R * ld(widest[p]) * elem);
    a.scratch_off = at.take(tile_warps(R) * kTileRows * kAccLd * 4);
    return size_t(at.bytes);
  };
  size_t shared = 0;
  for (int R : {128, 64, 32}) {
    shared = layout(R);
    a.rows = R;
    if (shared <= shared_optin_) break;
  }
  if (shared > shared_optin_) return false;

  const OpSpan span(&op_times_, "hidden_backward", stream_);
  use_device(device_);
  for (int l = 0; l < L - 1; ++l) NCF_CUDA(cudaMemsetAsync(a.grad_b[l], 0, sizeof(float) * size_t(a.width[l]), stream_));
  if (n > 0) {
    const TileLaunch launch{(n + a.rows - 1) / a.rows, a.rows, shared, shared_optin_, persistent_blocks(), stream_};
    if (!launch_tiles<BackwardTiles>("hidden_backward", half, a, launch, hidden_backward_opted_in_, hidden_backward_)) return false;
  }
  ++hidden_backward_runs_;
  return true;
}

}  // namespace ncf::cuda
