// The optional pieces of the build are shared libraries beside the addon, loaded on first use:
//   ncf_cuda.so  the CUDA backend (and NCCL when it was built with it)
//   ncf_mpi.so   the MPI communicator
// so the addon itself loads on any machine, and a missing GPU, driver or library becomes an
// error that says which piece is missing and why, instead of a failed require().
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "communicator.h"

namespace ncf {

struct CudaDevice {
  std::string name;
  size_t memory = 0;
  int major = 0, minor = 0;
};

struct CudaStatus {
  bool built = false;      // ncf_cuda.so exists beside the addon
  bool loaded = false;     // it loaded (its CUDA libraries were found)
  bool nccl = false;       // it was built with NCCL
  std::string build;       // how it was built (toolkit, archs)
  std::string error;       // why it is unusable, if it is
  std::vector<CudaDevice> devices;
};

// The folder holding the addon and its plugins.
std::string plugin_dir();

CudaStatus cuda_status();
bool mpi_built();

// "cpu" or "cuda" (device = GPU index); threads applies to the CPU backend.
std::unique_ptr<Backend> create_backend(const std::string& name, int device, int threads);

// The process-wide MPI communicator: initialises MPI on first call (from the main thread).
Communicator& mpi_world();
// Whether mpi_world() was initialised.
bool mpi_started();
// Ends MPI (at process exit) or aborts the whole job with an error code.
void mpi_finalize();
[[noreturn]] void mpi_abort(int code);

// The communicator a trainer uses: MPI for the CPU backend; NCCL (bootstrapped over MPI) for CUDA.
std::unique_ptr<Communicator> create_trainer_communicator(Backend& backend);

}  // namespace ncf
