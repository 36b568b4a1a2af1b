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
//
// The per-user sums of dz[0] (pair_row_sums' user side, for a batch in ascending user order), as
// the last product's epilogue holds dz[0]: saves pair_row_sums' read of it (0.5 KB a row in fp16,
// 1 KB in fp32 at ml-20m's shape). A block takes consecutive tiles (TileRange), so it meets its
// rows in order:
//   - per 16 x 16 result, a segmented sum down its 16 rows by user (4 shuffle steps); a run that
//     starts and ends inside those rows is a user's whole range, stored at once; their first and
//     last runs go to the tile's partials in shared memory;
//   - after the tile, one thread per column adds the partials in row order into the thread
//     block's open run, storing each run as it ends; the thread block's first run (which may have
//     begun in the one before) and its last go to two edge slots in device memory, and
//     edge_user_sums stores those users' sums after the kernel, adding each user's slots in row
//     order.
// Every sum is taken in one fixed order (the same on every run), as the values are stored in dz[0].
// The users without rows get zeros: where the batch has at least two rows a user, the kernel
// writes them, row r's thread the users between users[r - 1] and users[r] (the last row's also
// those after it), short gaps at once and longer ones (kOwnGap) listed for edge_user_sums, so no
// thread writes more than a few rows; that replaces a memset of all the sums (71 MB in fp16 at
// ml-20m's users, 142 in fp32) with the rows of the users a batch leaves out. Smaller batches,
// whose gaps are wide, take the memset.
// Shared memory at that shape (of an H100's 227 KiB): 196.5 KiB with 128-row tiles in fp16, 214.75
// KiB with the sums; 213.5 KiB with 32-row tiles in fp32, 219 KiB with the sums.
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
  // The per-user sums of dz[0] (users null: none): the batch's users (ascending), the sums
  // [n_users x width[0]] in the activations' type, and each block's edge slots: 2b its range's
  // first run, 2b + 1 its last (width[0] floats each, user kNoUser: none).
  const uint32_t* users;
  void* user_sums;
  float* edge_sums;
  uint32_t* edge_users;
  // The users without rows: n_users > 0, the kernel zeroes their sums (gaps of more than kOwnGap
  // users listed as [first, end) pairs in gaps, *gap_count of them, for edge_user_sums); 0, the
  // caller did.
  uint32_t n_users;
  uint32_t* gaps;
  uint32_t* gap_count;
  int stage_users_off;  // within a staging buffer: the row before the tile's, then the tile's users (1 + R words)
  int part_off;         // the tile's run partials, [R / 16][first, last][width[0]] floats
  int carry_off;        // the block's open run, width[0] floats
};

// The user of a row past the batch's end (and of an empty edge slot, and of the row before the
// batch's first).
constexpr uint32_t kNoUser = 0xffffffffu;
// The most users without rows that one thread of hidden_backward zeroes itself; a longer gap goes
// to edge_user_sums, whose threads share it.
constexpr uint32_t kOwnGap = 8;

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
  if (a.users) {  // plain loads: 1 + R words, from the row before the tile's
    uint32_t* u = reinterpret_cast<uint32_t*>(base + a.stage_users_off);
    for (int i = int(threadIdx.x); i <= R; i += int(blockDim.x)) {
      const int64_t r = r0 + i - 1;
      u[i] = r >= 0 && r < a.n ? a.users[r] : kNoUser;
    }
  }
}

// The sums of users [lo, hi), which have no rows: zeros, from the calling thread for up to
// kOwnGap users (16-byte stores), else listed for edge_user_sums.
template <typename T>
__device__ void zero_users(const BackwardArgs& a, uint32_t lo, uint32_t hi) {
  if (lo >= hi) return;
  if (hi - lo > kOwnGap) {
    // Gaps of more than kOwnGap users are disjoint: at most n_users / (kOwnGap + 1) of them, the
    // list's capacity (hidden_backward).
    const uint32_t k = atomicAdd(a.gap_count, 1u);
    a.gaps[2 * k] = lo;
    a.gaps[2 * k + 1] = hi;
    return;
  }
  const int chunks = a.width[0] * int(sizeof(T)) / 16;  // per row (widths are multiples of 16)
  uint4* row = reinterpret_cast<uint4*>(static_cast<T*>(a.user_sums) + int64_t(lo) * a.width[0]);
  for (int64_t i = 0; i < int64_t(hi - lo) * chunks; ++i) row[i] = make_uint4(0, 0, 0, 0);
}

// The users without rows before each of tile r0's rows (users[-1]: the row before the tile's), and
// after the batch's last row.
template <typename T>
__device__ void zero_absent_users(const BackwardArgs& a, const uint32_t* users, int64_t r0) {
  for (int i = int(threadIdx.x); i < a.rows && r0 + i < a.n; i += int(blockDim.x)) {
    const uint32_t prev = users[i - 1], u = users[i];
    zero_users<T>(a, prev == kNoUser ? 0u : prev + 1, u);
    if (r0 + i == a.n - 1) zero_users<T>(a, u + 1, a.n_users);
  }
}

// The per-user sums of one 16 x 16 block of dz[0] (its rows tr .. tr + 15 of the tile, users[] the
// tile's users; the calling lane's row tr + lane / 2 and columns c .. c + 7, v as stored): a
// segmented inclusive sum down the block's rows by user (rows ascend by user, so a user's rows are
// one run), then the lane at each run's last row stores it: a run that starts and ends inside the
// block is the user's whole range, stored in T; the block's first run and its last (the one at its
// last row, or at the batch's end) go to the tile's partials (parts: [2 (tr / 16) + {0, 1}][width]).
template <typename T>
__device__ __forceinline__ void block_user_runs(const uint32_t* users, float* parts, int width, T* user_sums, int tr,
                                                int c, int lane, float* v) {
  const int br = lane / 2;  // the lane's row in the block; lanes of one parity hold one column group
  const uint32_t u = users[tr + br];
#pragma unroll
  for (int d = 1; d < 16; d *= 2) {
    const uint32_t up = __shfl_up_sync(0xffffffffu, u, 2 * d);
    float t[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) t[j] = __shfl_up_sync(0xffffffffu, v[j], 2 * d);
    if (br >= d && up == u)
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] += t[j];
  }
  const uint32_t next = __shfl_down_sync(0xffffffffu, u, 2), first = __shfl_sync(0xffffffffu, u, lane % 2);
  if (u == kNoUser || (br < 15 && next == u)) return;  // not a run's last row
  if (br == 15 || next == kNoUser) store8(parts + (2 * (tr / 16) + 1) * width + c, v);
  else if (u == first) store8(parts + 2 * (tr / 16) * width + c, v);
  else store8(user_sums + int64_t(u) * width + c, v);
}

// A block's open run of dz[0]'s per-user sums across its tiles: its user (kNoUser: none yet), its
// columns' sums in shared memory (carry), and whether the block's first run has gone to its edge slot.
struct OpenRun {
  uint32_t user = kNoUser;
  uint32_t head_user = kNoUser;
  bool head_done = false;
};

// After tile r0's dz[0]: its 16-row blocks' first and last runs (partials) in row order into the
// open run, each run that ends stored (the block's first to its head edge slot); the calling
// thread's columns j = threadIdx.x, + blockDim.x, ... Every thread takes the same decisions.
template <typename T>
__device__ void add_tile_runs(const BackwardArgs& a, const uint32_t* users, const float* parts, float* carry, OpenRun& open,
                              int64_t r0) {
  const int W = a.width[0];
  auto close = [&]() {
    if (open.user == kNoUser) return;
    float* const head = a.edge_sums + int64_t(2 * blockIdx.x) * W;
    T* const sums = static_cast<T*>(a.user_sums) + int64_t(open.user) * W;
    for (int j = int(threadIdx.x); j < W; j += int(blockDim.x)) {
      if (open.head_done) store(sums, dtype_of<T>(), j, carry[j]);
      else head[j] = carry[j];
    }
    if (!open.head_done) open.head_user = open.user;
    open.head_done = true;
  };
  auto take = [&](uint32_t u, const float* p) {
    const bool same = u == open.user;
    if (!same) close();
    for (int j = int(threadIdx.x); j < W; j += int(blockDim.x)) carry[j] = same ? carry[j] + p[j] : p[j];
    open.user = u;
  };
  for (int b = 0; b < a.rows / 16 && r0 + 16 * b < a.n; ++b) {
    const int last_row = int(min(int64_t(16), a.n - r0 - 16 * b)) - 1;
    const uint32_t uf = users[16 * b], ul = users[16 * b + last_row];
    const float* first = parts + 2 * b * W;
    if (uf == ul) {  // one run: its partial is the last
      take(uf, first + W);
    } else {
      take(uf, first);
      take(ul, first + W);
    }
  }
}

// The users whose runs reached a block's range edge (hidden_backward's edge slots, in row order;
// a user's slots are consecutive): for each slot that opens a user's slots, the sum of them stored
// as the user's. One thread per slot and column.
// Then zeros for the listed gaps of users without rows (gap_count null: none listed), the grid's
// threads over each gap's values.
template <typename T>
__global__ void edge_user_sums(const float* edge_sums, const uint32_t* edge_users, int slots, int width, T* user_sums,
                               const uint32_t* gaps, const uint32_t* gap_count) {
  const int64_t total = int64_t(slots) * width;
  const int64_t start = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const uint32_t listed = gap_count ? *gap_count : 0;
  for (uint32_t g = 0; g < listed; ++g) {
    const int64_t first = int64_t(gaps[2 * g]) * width, end = int64_t(gaps[2 * g + 1]) * width;
    for (int64_t i = first + start; i < end; i += stride) store(user_sums, dtype_of<T>(), i, 0.0f);
  }
  for (int64_t i = start; i < total; i += stride) {
    const int s = int(i / width), j = int(i - int64_t(s) * width);
    const uint32_t u = edge_users[s];
    if (u == kNoUser) continue;
    int p = s - 1;
    while (p >= 0 && edge_users[p] == kNoUser) --p;
    if (p >= 0 && edge_users[p] == u) continue;  // an earlier slot opens u's
    float sum = 0.0f;
    for (int q = s; q < slots; ++q) {
      const uint32_t v = edge_users[q];
      if (v == kNoUser) continue;
      if (v != u) break;
      sum += edge_sums[int64_t(q) * width + j];
    }
    store(user_sums, dtype_of<T>(), int64_t(u) * width + j, sum);  // (Tc<float> is sm_80's and later)
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
  float* const parts = reinterpret_cast<float*>(shared + a.part_off);
  float* const carry = reinterpret_cast<float*>(shared + a.carry_off);
  OpenRun open;
  auto stage = [&](int64_t t, int s) { stage_tile<T>(a, shared, t, s); };
  for_each_tile(a.n, R, 2, stage, [&](int64_t t, int s, const auto&) {
    const char* st = shared + a.stage_off[s];
    const uint32_t* const users = reinterpret_cast<const uint32_t*>(st + a.stage_users_off) + 1;  // users[-1]: the row before
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
        if (l == 1 && a.users) {  // dz[0]'s per-user sums, of the values as stored
#pragma unroll
          for (int j = 0; j < 8; ++j) v[j] = stored<T>(v[j]);
          block_user_runs(users, parts, out, static_cast<T*>(a.user_sums), tr, c, lane, v);
        }
      };
      block_mma<T, false>(x, tile_ld<T>(k), R, k, w, tile_ld<T>(out), out, scratch, epilogue);
      __syncthreads();  // dz[l - 1]'s shared tile (and dz[0]'s partials) complete before they are read
    }
    // (The next tile's partials are written after the barrier at its start.)
    if (a.users) add_tile_runs<T>(a, users, parts, carry, open, r0);
    if (a.users && a.n_users) zero_absent_users<T>(a, users, r0);
  });
  __syncthreads();
  if (a.users) {  // the open run to the tail edge slot; both slots' users
    const int W = a.width[0];
    float* const tail = a.edge_sums + int64_t(2 * blockIdx.x + 1) * W;
    for (int j = int(threadIdx.x); j < W; j += int(blockDim.x)) tail[j] = open.user == kNoUser ? 0.0f : carry[j];
    if (threadIdx.x == 0) {
      a.edge_users[2 * blockIdx.x] = open.head_user;
      a.edge_users[2 * blockIdx.x + 1] = open.user;
    }
  }
  for (int l = 0; l < L - 1; ++l)
    for (int j = int(threadIdx.x); j < a.width[l]; j += int(blockDim.x))
      atomicAdd(&a.grad_b[l][j], bias_sums[a.sum_off[l] + j]);
}

}  // namespace

HiddenBackwardRun CudaBackend::hidden_backward(const std::vector<Mat>& dz, const std::vector<LinearParams>& layers,
                                               const std::vector<LayerBelow>& below, const UserRowSums* user_sums) {
  const int L = int(dz.size());
  if (!forms_.hidden_backward || !hidden_backward_ok_ || L < 2 || L > kMaxFusedLayers || layers.size() != size_t(L) || below.size() != size_t(L - 1))
    return {};
  // fp16 activations, or fp32 ones with TF32 GEMMs (the same rounding as the chain's).
  const DType type = dz[0].dtype;
  const bool half = type == DType::F16;
  if (!tensor_cores_allowed(half)) return {};
  const int64_t n = dz[0].rows;
  const int elem = half ? 2 : 4;
  auto ld = [&](int cols) { return half ? tile_ld<__half>(cols) : tile_ld<float>(cols); };
  BackwardArgs a{};
  a.n = n;
  a.layers = L;
  if (!tile_matrices(dz, type, n, a.width, a.dz)) return {};
  for (int l = 1; l < L; ++l) {
    const LinearParams& p = layers[size_t(l)];
    a.w[l] = half ? p.w_half : static_cast<const void*>(p.w);
    if (!a.w[l] || !aligned_to(a.w[l], 16) || p.out != a.width[l] || p.in != a.width[l - 1]) return {};
  }
  for (int l = 0; l < L - 1; ++l) {
    const LayerBelow& b = below[size_t(l)];
    if (b.mask.empty() || b.mask.ld % 128 != 0 || !aligned_to(b.mask.bits, 16) || !b.grad_b) return {};
    a.mask[l] = b.mask.bits;
    a.mask_bytes[l] = int(b.mask.ld / 8);
    a.scale[l] = b.dropout.active ? b.dropout.scale : 1.0f;
    a.grad_b[l] = b.grad_b;
  }
  // dz[0]'s per-user sums here where pair_row_sums would take them by user and by the item sort
  // (NCF_CUDA_HIDDEN_SUMS=0: there).
  const bool sums_wanted = user_sums && user_sums->users && hidden_sums_ && group_batches_ && sums_by_user_ && item_sort_ &&
                           user_sums->sums.dtype == type && user_sums->sums.cols == a.width[0] &&
                           aligned_to(user_sums->sums.data, 16);
  // The shared memory a tile of R rows takes, with or without the sums' staging and partials.
  auto layout = [&](int R, bool with_sums) {
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
    a.stage_users_off = stage_bytes;
    if (with_sums) stage_bytes += round_up((R + 1) * 4, 128);
    a.stage_off[0] = at.take(stage_bytes);
    a.stage_off[1] = at.take(stage_bytes);
    int widest[2] = {0, 0};  // the tiles for dz[1] .. dz[L - 2], by parity
    for (int l = 1; l < L - 1; ++l) widest[l % 2] = std::max(widest[l % 2], a.width[l]);
    for (int p = 0; p < 2; ++p) a.buf_off[p] = at.take(R * ld(widest[p]) * elem);
    a.scratch_off = at.take(tile_warps(R) * kTileRows * kAccLd * 4);
    a.part_off = with_sums ? at.take(R / 16 * 2 * a.width[0] * 4) : 0;
    a.carry_off = with_sums ? at.take(a.width[0] * 4) : 0;
    return size_t(at.bytes);
  };
  // The largest R (128, else 64, else 32) that fits (a's offsets then that layout's); 0 if none.
  auto fit = [&](bool with_sums) {
    for (int R : {128, 64, 32}) {
      a.rows = R;
      const size_t bytes = layout(R, with_sums);
      if (bytes <= shared_optin_) return bytes;
    }
    return size_t(0);
  };
  // With the sums if they are wanted and fit at some R, else without.
  bool sums = sums_wanted;
  size_t shared = sums ? fit(true) : 0;
  if (!shared) {
    sums = false;
    shared = fit(false);
  }
  if (!shared) return {};

  const OpSpan span(&op_times_, "hidden_backward", stream_);
  use_device(device_);
  for (int l = 0; l < L - 1; ++l) NCF_CUDA(cudaMemsetAsync(a.grad_b[l], 0, sizeof(float) * size_t(a.width[l]), stream_));
  const int64_t tiles = (n + a.rows - 1) / a.rows;
  const int blocks = int(std::min<int64_t>(tiles, persistent_blocks()));
  if (sums) {
    // Each block's two edge slots; zeros for the users without rows, from the kernel (with a list
    // of long gaps and its count) where the batch has at least two rows a user, else here.
    const Mat& us = user_sums->sums;
    const bool kernel_zeroes = n >= 2 * us.rows;
    const size_t slots = 2 * size_t(std::max(blocks, 1));
    const size_t gap_pairs = kernel_zeroes ? size_t(us.rows) / (kOwnGap + 1) + 1 : 0;
    const size_t bytes = slots * (sizeof(float) * size_t(a.width[0]) + sizeof(uint32_t)) + sizeof(uint32_t) * (1 + 2 * gap_pairs);
    if (edge_scratch_.size() < bytes) edge_scratch_ = BackendArray<unsigned char>(*this, bytes);
    a.edge_sums = reinterpret_cast<float*>(edge_scratch_.get());
    a.edge_users = reinterpret_cast<uint32_t*>(a.edge_sums + slots * size_t(a.width[0]));
    a.users = user_sums->users;
    a.user_sums = us.data;
    if (kernel_zeroes) {
      a.n_users = uint32_t(us.rows);
      a.gap_count = a.edge_users + slots;
      a.gaps = a.gap_count + 1;
      NCF_CUDA(cudaMemsetAsync(a.gap_count, 0, sizeof(uint32_t), stream_));
    } else {
      NCF_CUDA(cudaMemsetAsync(us.data, 0, us.bytes(), stream_));
    }
  }
  if (n > 0) {
    const TileLaunch launch{tiles, a.rows, shared, shared_optin_, blocks, stream_};  // (the edge slots' count)
    if (!launch_tiles<BackwardTiles>("hidden_backward", half, a, launch, hidden_backward_opted_in_, hidden_backward_ok_)) return {};
    if (sums) {
      const int slots = 2 * blocks, W = a.width[0];
      const unsigned edge_blocks = grid(int64_t(slots) * W);
      if (half)
        edge_user_sums<__half><<<edge_blocks, kThreads, 0, stream_>>>(a.edge_sums, a.edge_users, slots, W,
                                                                     static_cast<__half*>(a.user_sums), a.gaps, a.gap_count);
      else
        edge_user_sums<float><<<edge_blocks, kThreads, 0, stream_>>>(a.edge_sums, a.edge_users, slots, W,
                                                                    static_cast<float*>(a.user_sums), a.gaps, a.gap_count);
      NCF_LAUNCHED();
    }
  }
  ++hidden_backward_runs_;
  if (sums) ++hidden_sums_runs_;
  return {true, sums};
}

}  // namespace ncf::cuda
