// Block-level pieces of the kernels that carry a tile of rows through several hidden layers in one
// pass (hidden_forward.cu, hidden_backward.cu): 16-byte asynchronous copies from device to shared
// memory, the layers' weights staged there, and a block GEMM on fp16 Tensor Cores (WMMA) whose
// operands are both in shared memory.
//
// Unlike the warp tiles of the older fused kernels (warp_tile.cuh: 16 rows per warp, every
// weight read from L1/L2 per 16 rows, which left them bound by on-chip bandwidth), a block keeps
// the layers' weights in shared memory for its whole life and each warp computes 32 x 32 blocks:
// a weight fragment read from shared memory serves two row blocks, an activation fragment two
// column blocks. (32 x 64 blocks, 8 accumulators, made ptxas spill up to 52 bytes a thread at
// the 128-register cap of 512-thread blocks; 32 x 32 blocks use 101-110 registers, no spills.)
#pragma once
#include "warp_tile.cuh"

namespace ncf::cuda {

// 16 bytes from device memory to shared memory: cp.async (through L2 only, no registers) on sm_80
// and later, a plain copy on older architectures. (The host emulation holds the copy until the
// thread's copies_wait, the latest a GPU may land it.)
__device__ __forceinline__ void copy16_async(void* shared, const void* global) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = unsigned(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global) : "memory");
#elif defined(NCF_CUDA_EMULATION)
  ::emu::async_copy16(shared, global);
#else
  *static_cast<uint4*>(shared) = *static_cast<const uint4*>(global);
#endif
}

// Waits for the calling thread's copy16_async copies; a __syncthreads after it makes every
// thread's copies visible to the block.
__device__ __forceinline__ void copies_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#elif defined(NCF_CUDA_EMULATION)
  ::emu::async_copies_wait();
#endif
}

// Row stride, in elements of T (__half, or float for TF32), of a tile of `cols` columns in shared
// memory: 16 bytes of padding per row against bank conflicts of the fragment loads (as
// warp_tile.cuh's).
template <typename T>
__host__ __device__ inline int tile_ld(int cols) {
  return cols + int(16 / sizeof(T));
}

// Warps per block for tiles of R rows: R / 8 (two 32 x 32 jobs per warp in a 256-wide layer), at
// least 8.
__host__ __device__ inline int tile_warps(int rows) { return rows / 8 > 8 ? rows / 8 : 8; }

// Copies rows [r0, r0 + R) of an [n x cols] matrix of T (or, with idx, rows idx[r0] .. idx[r0 +
// R - 1] of a table of cols columns) into a shared tile with rows of tile_ld<T>(cols) elements, by
// copy16_async (the caller waits); rows past n become zeros. cols * sizeof(T) is a multiple of 16.
template <typename T>
__device__ __forceinline__ void stage_rows(T* tile, const T* m, int64_t n, int cols, int64_t r0, int R,
                                           const uint32_t* idx = nullptr) {
  constexpr int kPer = 16 / int(sizeof(T));  // elements per 16-byte chunk
  const int chunks = cols / kPer;
  for (int c = int(threadIdx.x); c < R * chunks; c += int(blockDim.x)) {
    const int r = c / chunks, q = c - r * chunks;
    T* dst = tile + r * tile_ld<T>(cols) + q * kPer;
    if (r0 + r < n) copy16_async(dst, m + (idx ? int64_t(idx[r0 + r]) : r0 + r) * cols + q * kPer);
    else *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
  }
}

// Stages hidden layers first .. last - 1's weights w[l] (as stored: [width[l] x width[l - 1]]) in
// shared memory at byte offsets w_off[l], rows padded to tile_ld<T>(width[l - 1]) (the caller waits).
template <typename T>
__device__ __forceinline__ void stage_weights(char* shared, const T* const* w, const int* width, const int* w_off, int first,
                                              int last) {
  for (int l = first; l < last; ++l)
    stage_rows(reinterpret_cast<T*>(shared + w_off[l]), w[l], width[l], width[l - 1], 0, width[l]);
}

// The tiles [first, end) of n rows in tiles of R that persistent block b of `blocks` takes: a
// contiguous share (sizes differing by at most one), so that a block walks its rows in order.
struct TileRange {
  int64_t first, end;
  __host__ __device__ TileRange(int64_t n, int R, int64_t b, int64_t blocks) {
    const int64_t tiles = (n + R - 1) / R;
    first = tiles * b / blocks;
    end = tiles * (b + 1) / blocks;
  }
};

// A persistent block's loop over its tiles of R rows (TileRange: consecutive tiles) with one or
// two staging buffers: stage(t, s) issues tile t's copies into buffer s (copy16_async), and
// body(t, s, release) works on tile t in buffer s.
//   - Two buffers: the next tile's copies go to the other buffer as body starts and arrive while it
//     works; release() does nothing.
//   - One buffer (where two do not fit beside the rest of the block's shared memory): body calls
//     release() once it has read the buffer for the last time, after a barrier that orders every
//     thread's reads before it, and every thread calls it; release() issues the next tile's copies
//     into the buffer, to arrive while the rest of body works. A body that never calls it gets a
//     barrier and the copies after it returns (no overlap).
// The barrier at each tile's start makes its copies (and any the block issued before the loop)
// visible, and (two buffers) orders the last tile's reads of the other buffer before its refill.
template <typename Stage, typename Body>
__device__ void for_each_tile(int64_t n, int R, int buffers, Stage stage, Body body) {
  const TileRange range(n, R, blockIdx.x, gridDim.x);
  int s = 0;
  if (range.first < range.end) stage(range.first, s);
  for (int64_t t = range.first; t < range.end; ++t) {
    copies_wait();
    __syncthreads();
    const int next = buffers == 2 ? s ^ 1 : s;
    bool issued = false;  // (the same in every thread: each calls release alike)
    auto release = [&]() {
      if (!issued && t + 1 < range.end) stage(t + 1, next);
      issued = true;
    };
    if (buffers == 2) release();
    body(t, s, release);
    if (!issued) {
      __syncthreads();
      release();
    }
    s = next;
  }
}

// Whether each matrix is of `type`, has n rows, a width the tile kernels take (fused_width) and
// 16-byte aligned rows; if so, their widths and data into width[] and data[].
inline bool tile_matrices(const std::vector<Mat>& m, DType type, int64_t n, int* width, void** data) {
  for (size_t l = 0; l < m.size(); ++l) {
    if (m[l].dtype != type || m[l].rows != n || !fused_width(int(m[l].cols)) || !aligned_to(m[l].data, 16)) return false;
    width[l] = int(m[l].cols);
    data[l] = m[l].data;
  }
  return true;
}

// Byte offsets in a block's dynamic shared memory, handed out in order, each 128-byte aligned.
struct SharedLayout {
  int bytes = 0;
  int take(int n) {
    const int off = bytes;
    bytes += (n + 127) / 128 * 128;
    return off;
  }
};

// out = x op(W) for a tile of `rows` rows on Tensor Cores, fp16 (T = __half) or TF32 (T = float,
// rounded as loaded) in and fp32 accumulation, with x [rows x k] row-major in shared memory (row
// stride ldx, in elements) and W in shared memory as a layer stores it, rows of ldw elements:
// op(W) = W for W [k x n] (a layer's input gradient from its output gradient, kTransposeW false)
// or W^T for W [n x k] (a layer's forward product, true). rows % 32 == 0, k and n multiples of 16,
// strides of 16-byte multiples and 32-byte aligned tiles (WMMA's loads).
// Work: jobs of 32 rows x up to 32 columns (4 accumulators), job j to warp j % warps. Each 16 x 16
// accumulator goes through the warp's scratch (16 x kAccLd floats, row-major) to
// epilogue(r0, c0, scratch) for its rows r0..r0 + 15 and columns c0..c0 + 15; the warp reads the
// scratch in the epilogue, which all 32 lanes enter.
template <typename T, bool kTransposeW, typename Epilogue>
__device__ void block_mma(const T* x, int ldx, int rows, int k, const T* W, int ldw, int n, float* scratch,
                          Epilogue epilogue) {
  namespace wmma = nvcuda::wmma;
  using B = typename std::conditional<kTransposeW, typename Tc<T>::Bt, typename Tc<T>::Bn>::type;
  const int warps = int(blockDim.x) / 32, warp = int(threadIdx.x) / 32;
  const int col_groups = (n + 31) / 32, jobs = rows / 32 * col_groups;
  for (int job = warp; job < jobs; job += warps) {
    const int r0 = job / col_groups * 32, c0 = job % col_groups * 32;
    const int blocks = min(2, (n - c0) / 16);
    typename Tc<T>::C acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int k0 = 0; k0 < k; k0 += Tc<T>::K) {
      typename Tc<T>::A a0, a1;
      wmma::load_matrix_sync(a0, x + r0 * ldx + k0, unsigned(ldx));
      wmma::load_matrix_sync(a1, x + (r0 + 16) * ldx + k0, unsigned(ldx));
      Tc<T>::to_tf32(a0);
      Tc<T>::to_tf32(a1);
#pragma unroll
      for (int j = 0; j < 2; ++j)
        if (j < blocks) {
          B b;
          // W^T read column-major has element (i, j) at W[j * ldw + i]; W read row-major at W[i * ldw + j].
          const int c = c0 + 16 * j;
          wmma::load_matrix_sync(b, kTransposeW ? W + c * ldw + k0 : W + k0 * ldw + c, unsigned(ldw));
          Tc<T>::to_tf32(b);
          wmma::mma_sync(acc[0][j], a0, b, acc[0][j]);
          wmma::mma_sync(acc[1][j], a1, b, acc[1][j]);
        }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        if (j < blocks) {
          wmma::store_matrix_sync(scratch, acc[i][j], kAccLd, wmma::mem_row_major);
          __syncwarp();
          epilogue(r0 + 16 * i, c0 + 16 * j, static_cast<const float*>(scratch));
          __syncwarp();  // the epilogue's reads before the next store
        }
  }
}

// The 8 accumulator values a lane takes in a block_mma epilogue: row lane / 2 of the 16 x 16
// block, columns 8 (lane % 2) .. + 7 (two 16-byte reads of the scratch).
__device__ __forceinline__ void lane_values8(const float* scratch, int lane, float* v) {
  const float4* q = reinterpret_cast<const float4*>(scratch + (lane / 2) * kAccLd + 8 * (lane % 2));
  const float4 lo = q[0], hi = q[1];
  v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
}

// A tile kernel: Body<T>::run(args, the block's dynamic shared memory), blocks of up to 512
// threads. Bodies on fp32 activations (TF32) trap on architectures without TF32 WMMA, where they
// are never launched.
template <typename T, typename Args, template <typename> class Body>
__global__ void __launch_bounds__(512, 1) tile_kernel(Args a) {
  extern __shared__ float4 tile_shared[];
#ifndef NCF_WARP_TF32
  if constexpr (std::is_same<T, float>::value) __trap();
  else
#endif
    Body<T>::run(a, reinterpret_cast<char*>(tile_shared));
}

// Where and how a tile kernel launches: `blocks` persistent blocks (one per SM unless capped; at
// most one per tile) of tile_warps(rows) warps, with `shared` bytes of dynamic shared memory.
struct TileLaunch {
  int64_t tiles;
  int rows;
  size_t shared;
  size_t shared_optin;  // the device's limit, which the kernel is opted in to (once: opted_in)
  int blocks;
  cudaStream_t stream;
};

// Launches tile_kernel<T, Args, Body> for fp16 (half) or fp32 activations. Returns whether the
// GPU accepted it (fused_launch_ok: if not, said once, and `enabled` turns false).
template <template <typename> class Body, typename Args>
bool launch_tiles(const char* name, bool half, const Args& a, const TileLaunch& l, bool (&opted_in)[2], bool& enabled) {
  void (*const kernel)(Args) = half ? tile_kernel<__half, Args, Body> : tile_kernel<float, Args, Body>;
  bool& opted = opted_in[half ? 0 : 1];
  if (!opted)
    NCF_CUDA(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(l.shared_optin)));
  opted = true;
  const unsigned blocks = unsigned(l.tiles < l.blocks ? l.tiles : l.blocks);
  kernel<<<blocks, tile_warps(l.rows) * 32, l.shared, l.stream>>>(a);
  return fused_launch_ok(name, enabled);
}

}  // namespace ncf::cuda
