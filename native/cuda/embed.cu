// The embedding kernels of the MLP input (the GMF product and its gradients are formed in the
// output unit, head.cu, straight from the table rows).
// embed_forward: mlp_in[row] = [mlp_user[u] ; mlp_item[v]] (fp32 tables; fp32, or fp16 under
// --amp, output). With vec8 (half % 8 == 0, 16-byte aligned rows) a thread moves 8 consecutive
// columns: two 16-byte loads from its table row, one 16-byte (fp16) or two (fp32) stores, so a
// warp reads and writes whole 32-byte sectors; otherwise one column per thread. With fp16 copies
// of the tables (kept by adam_step under --amp) and an fp16 output, 8 columns are one 16-byte
// copy: half the bytes read, the same values.
// embed_backward: d_mlp_in goes straight into the dense table gradients with atomic adds
// (16-byte vector atomics on sm_90 in the vec8 form), so no per-sample intermediate or sort is
// needed; the vec8 form adds up runs of rows of the same table row first (one atomic per run of a
// 16-row tile: with the batch grouped by user, ~8 rows per user; items rarely repeat).
#include "cuda_backend.cuh"

namespace ncf::cuda {

namespace {

// Group q of the n x (2h / 8) groups of 8 MLP-input columns: its row, first column k, and the
// offset of those columns in the user's (user true) or the item's table row.
struct Group8 {
  int64_t row;
  int k;
  int64_t at;
  bool user;
};
__device__ __forceinline__ Group8 group8(int64_t q, int h, const uint32_t* users, const uint32_t* items) {
  const int groups = 2 * h / 8;
  Group8 g;
  g.row = q / groups;
  g.k = int(q - g.row * groups) * 8;
  g.user = g.k < h;
  g.at = g.user ? int64_t(users[g.row]) * h + g.k : int64_t(items[g.row]) * h + (g.k - h);
  return g;
}

template <typename T>
__global__ void embed_forward_vec8(EmbedTables t, const uint32_t* users, const uint32_t* items, int64_t n, T* mlp_in) {
  const int64_t total = n * (2 * t.half / 8);
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const Group8 g = group8(q, t.half, users, items);
    float v[8];
    load8((g.user ? t.mlp_user : t.mlp_item) + g.at, v);
    store8(mlp_in + g.row * 2 * t.half + g.k, v);
  }
}

// The fp16 output gathered from the fp16 table copies, 8 columns (16 bytes) per thread.
__global__ void embed_forward_half_tables(EmbedTables t, const uint32_t* users, const uint32_t* items, int64_t n,
                                          __half* mlp_in) {
  const int64_t total = n * (2 * t.half / 8);
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const Group8 g = group8(q, t.half, users, items);
    const __half* src = static_cast<const __half*>(g.user ? t.mlp_user_half : t.mlp_item_half) + g.at;
    *reinterpret_cast<uint4*>(mlp_in + g.row * 2 * t.half + g.k) = *reinterpret_cast<const uint4*>(src);
  }
}

__global__ void embed_forward_kernel(EmbedTables t, const uint32_t* users, const uint32_t* items, int64_t n,
                                     void* mlp_in, DType mlp_type) {
  const int h = t.half;
  const int64_t total = n * 2 * h;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = q / (2 * h);
    const int k = int(q - row * 2 * h);
    store(mlp_in, mlp_type, q, k < h ? t.mlp_user[int64_t(users[row]) * h + k] : t.mlp_item[int64_t(items[row]) * h + (k - h)]);
  }
}

template <typename T>
__global__ void embed_backward_vec8(const uint32_t* users, const uint32_t* items, int64_t n, int h, const T* __restrict__ d_mlp,
                                    EmbedGrads grads) {
  const int groups = 2 * h / 8;
  const int64_t total = (n + kRunRows - 1) / kRunRows * groups;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t tile = q / groups;
    const int k = int(q - tile * groups) * 8;
    const bool user = k < h;
    const uint32_t* keys = user ? users : items;
    float* table = user ? grads.mlp_user : grads.mlp_item;
    const int col = user ? k : k - h;
    const int64_t r0 = tile * kRunRows, r1 = min(n, r0 + kRunRows);
    RunSum8 run(keys[r0]);
    for (int64_t r = r0; r < r1; ++r) {
      float d[8];
      load8(d_mlp + r * 2 * h + k, d);
      run.add(keys[r], d, table + col, h);
    }
    run.flush(table + col, h);
  }
}

__global__ void embed_backward_kernel(const uint32_t* users, const uint32_t* items, int64_t n, int h, const void* d_mlp,
                                      DType mlp_type, EmbedGrads g) {
  const int64_t total = n * 2 * h;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = q / (2 * h);
    const int k = int(q - row * 2 * h);
    float* dst = k < h ? g.mlp_user + int64_t(users[row]) * h + k : g.mlp_item + int64_t(items[row]) * h + (k - h);
    atomicAdd(dst, load(d_mlp, mlp_type, q));
  }
}

// The 8-column form applies: whole groups of 8 in each half, 16-byte aligned rows everywhere.
bool vec8_ok(int h, const void* a, const void* b, const void* rows) {
  return h % 8 == 0 && aligned_to(a, 16) && aligned_to(b, 16) && aligned_to(rows, 16);
}

}  // namespace

void CudaBackend::embed_forward(const EmbedTables& t, const uint32_t* users, const uint32_t* items, Mat mlp_in) {
  const OpSpan span(&op_times_, "embed_forward", stream_);
  const int64_t n = mlp_in.rows;
  if (n <= 0) return;
  if (mlp_in.cols != 2 * t.half) fail(ErrorCode::InvalidArgument, "embed_forward: mlp_in must have 2 x half columns");
  use_device(device_);
  if (mlp_in.dtype == DType::F16 && t.mlp_user_half && t.mlp_item_half &&
      vec8_ok(t.half, t.mlp_user_half, t.mlp_item_half, mlp_in.data))
    embed_forward_half_tables<<<grid(n * 2 * t.half / 8), kThreads, 0, stream_>>>(
        t, users, items, n, static_cast<__half*>(mlp_in.data));
  else if (!vec8_ok(t.half, t.mlp_user, t.mlp_item, mlp_in.data))
    embed_forward_kernel<<<grid(n * 2 * t.half), kThreads, 0, stream_>>>(t, users, items, n, mlp_in.data,
                                                                         mlp_in.dtype);
  else if (mlp_in.dtype == DType::F16)
    embed_forward_vec8<__half><<<grid(n * 2 * t.half / 8), kThreads, 0, stream_>>>(
        t, users, items, n, static_cast<__half*>(mlp_in.data));
  else
    embed_forward_vec8<float><<<grid(n * 2 * t.half / 8), kThreads, 0, stream_>>>(t, users, items, n,
                                                                                  mlp_in.f32());
  NCF_LAUNCHED();
}

void CudaBackend::embed_backward(const uint32_t* users, const uint32_t* items, Mat d_mlp_in, const EmbedGrads& g) {
  const OpSpan span(&op_times_, "embed_backward", stream_);
  const int64_t n = d_mlp_in.rows;
  const int h = int(d_mlp_in.cols / 2);
  if (n <= 0) return;
  use_device(device_);
  if (!vec8_ok(h, g.mlp_user, g.mlp_item, d_mlp_in.data))
    embed_backward_kernel<<<grid(n * 2 * h), kThreads, 0, stream_>>>(users, items, n, h, d_mlp_in.data,
                                                                     d_mlp_in.dtype, g);
  else if (d_mlp_in.dtype == DType::F16)
    embed_backward_vec8<__half><<<grid((n + kRunRows - 1) / kRunRows * (2 * h / 8)), kThreads, 0, stream_>>>(
        users, items, n, h, static_cast<const __half*>(d_mlp_in.data), g);
  else
    embed_backward_vec8<float><<<grid((n + kRunRows - 1) / kRunRows * (2 * h / 8)), kThreads, 0, stream_>>>(
        users, items, n, h, d_mlp_in.f32(), g);
  NCF_LAUNCHED();
}

}  // namespace ncf::cuda
