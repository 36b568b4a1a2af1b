// The emulator's NCCL, over MPI (built when CMake finds MPI): one communicator per process
// spanning MPI_COMM_WORLD, so `mpirun -np N` runs the CUDA backend's NCCL path on the host.
// ncclCommInitRank checks what NCCL relies on: every rank passes the same unique id (the
// bootstrap broadcast worked), and nranks / rank match the launch. ncclAllReduce sums float
// buffers that must lie in device memory, in place or not.
#if defined(NCF_HAVE_NCCL)
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstring>

#include "cuda_emu.h"

struct ncclComm {
  int rank = 0, size = 1;
};

namespace {
uint64_t id_hash(const ncclUniqueId& id) {
  uint64_t h = 1469598103934665603ull;
  for (char c : id.internal) h = (h ^ uint8_t(c)) * 1099511628211ull;
  return h;
}
}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  // Differs per call and process, as NCCL's (which holds a socket address) does.
  uint64_t seed = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) ^ uint64_t(reinterpret_cast<uintptr_t>(id));
  for (size_t i = 0; i < sizeof id->internal; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    id->internal[i] = char(seed >> 56);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  int up = 0;
  MPI_Initialized(&up);
  if (!up) return ncclInvalidUsage;
  int world_rank = 0, world_size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (nranks != world_size || rank != world_rank) return ncclInvalidArgument;
  const uint64_t h = id_hash(id);
  uint64_t lo = 0, hi = 0;
  MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  if (lo != hi) return ncclInvalidUsage;  // the ranks were given different ids
  *comm = new ncclComm{rank, nranks};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t) {
  if (!comm) return ncclInvalidArgument;
  if (emu::capture_refuses()) return ncclInvalidUsage;  // MPI cannot wait inside a graph's launch
  if (type != ncclFloat32 || op != ncclSum) return ncclInvalidArgument;  // all the backend uses
  if (!emu::is_device_pointer(send) || !emu::is_device_pointer(recv) ||
      !emu::is_device_pointer(static_cast<const float*>(send) + count) ||
      !emu::is_device_pointer(static_cast<float*>(recv) + count))
    return ncclInvalidArgument;
  if (count > size_t(INT32_MAX)) return ncclInvalidArgument;
  const emu::DeviceScope device;
  const void* src = send == recv ? MPI_IN_PLACE : send;
  return MPI_Allreduce(src, recv, int(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS ? ncclSuccess
                                                                                                  : ncclSystemError;
}

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument (emulated NCCL)";
    case ncclInvalidUsage: return "invalid usage (emulated NCCL: MPI not started, or ranks got different ids)";
    default: return "system error (emulated NCCL)";
  }
}

}  // extern "C"
#endif
