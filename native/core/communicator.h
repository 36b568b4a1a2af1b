// Collective operations between the ranks of a data-parallel job. One implementation uses MPI
// (native/mpi, for the CPU backend and for the host-side exchanges of every job), one NCCL
// (native/cuda/nccl_comm.cu, for device gradients). A single-process run has no communicator.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ncf {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string describe() const = 0;  // "mpi (Open MPI v4.1.4)", "nccl 2.x over mpi"
  // Sums n floats in backend memory (device memory for the CUDA backend) across ranks, in place.
  virtual void allreduce_sum(float* data, size_t n) = 0;
  // Sums n doubles in host memory across ranks, in place.
  virtual void allreduce_sum_host(double* data, size_t n) = 0;
  // Copies `bytes` of host memory from rank `root` to every rank.
  virtual void broadcast_host(void* data, size_t bytes, int root) = 0;
  // Gathers `bytes` from every rank into out[rank * bytes].
  virtual void allgather_host(const void* in, void* out, size_t bytes) = 0;
};

}  // namespace ncf
