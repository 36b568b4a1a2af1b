// Multi-GPU gradient reduction with NCCL: one communicator over all ranks, bootstrapped by
// broadcasting rank 0's ncclUniqueId over MPI. allreduce_sum runs one ncclAllReduce over the
// whole flat gradient buffer (fp32, in place) on the backend's stream, so it is ordered after the
// backward kernels and before Adam without a host synchronisation. Under --amp the gradients
// reduced are the loss-scaled fp32 sums, unscaled afterwards on every rank alike. Host-side
// exchanges (seed, dataset fingerprint, metrics) go through MPI.
#include <cstring>
#include <string>

#include "cuda_backend.cuh"
#include "../core/communicator.h"

#if defined(NCF_HAVE_NCCL)
#include <nccl.h>

namespace ncf::cuda {

namespace {

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) fail(ErrorCode::Distributed, std::string(what) + " failed: " + ncclGetErrorString(r));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(CudaBackend& be, Communicator& host) : be_(be), host_(host) {
    use_device(be.device());
    ncclUniqueId id;
    if (host.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    host.broadcast_host(&id, sizeof id, 0);
    check_nccl(ncclCommInitRank(&comm_, host.size(), id, host.rank()), "ncclCommInitRank");
    int version = 0;
    ncclGetVersion(&version);
    version_ = std::to_string(version / 10000) + "." + std::to_string((version / 100) % 100) + "." + std::to_string(version % 100);
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string describe() const override { return "nccl " + version_ + " (bootstrap: " + host_.describe() + ")"; }
  void allreduce_sum(float* data, size_t n) override {
    use_device(be_.device());
    check_nccl(ncclAllReduce(data, data, n, ncclFloat32, ncclSum, comm_, be_.stream()), "ncclAllReduce");
  }
  void allreduce_sum_host(double* data, size_t n) override { host_.allreduce_sum_host(data, n); }
  void broadcast_host(void* data, size_t bytes, int root) override { host_.broadcast_host(data, bytes, root); }
  void allgather_host(const void* in, void* out, size_t bytes) override { host_.allgather_host(in, out, bytes); }

 private:
  CudaBackend& be_;
  Communicator& host_;
  ncclComm_t comm_ = nullptr;
  std::string version_;
};

}  // namespace
}  // namespace ncf::cuda

extern "C" ncf::Communicator* ncf_cuda_create_nccl(ncf::Backend* backend, ncf::Communicator* host, char* err, size_t errlen) {
  try {
    auto* be = dynamic_cast<ncf::cuda::CudaBackend*>(backend);
    if (!be) throw ncf::Error(ncf::ErrorCode::InvalidArgument, "NCCL needs the CUDA backend");
    return new ncf::cuda::NcclCommunicator(*be, *host);
  } catch (const std::exception& e) {
    std::strncpy(err, e.what(), errlen - 1);
    return nullptr;
  }
}

#else

extern "C" ncf::Communicator* ncf_cuda_create_nccl(ncf::Backend*, ncf::Communicator*, char* err, size_t errlen) {
  std::strncpy(err, "this CUDA backend was built without NCCL (CMake found no nccl.h / libnccl)", errlen - 1);
  return nullptr;
}

#endif
