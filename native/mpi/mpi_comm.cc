// The MPI communicator plugin (ncf_mpi.so). MPI is initialised when the plugin's communicator is
// created, with MPI_THREAD_SERIALIZED because the addon calls MPI from its worker threads one
// call at a time, and finalised when it is destroyed (at process exit). Every MPI call's error
// is turned into a Distributed error naming the call.
#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "../core/communicator.h"
#include "../core/errors.h"

namespace ncf {
namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail(ErrorCode::Distributed, std::string(what) + " failed: " + std::string(msg, size_t(len)));
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
      owns_ = true;
      if (provided < MPI_THREAD_SERIALIZED)
        fail(ErrorCode::Distributed, "the MPI library does not support calls from more than one thread "
                                     "(MPI_THREAD_SERIALIZED)");
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, size_t(len));
    const auto nl = v.find_first_of("\n,");
    library_ = v.substr(0, nl);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return "mpi (" + library_ + ")"; }

  // The CPU backend's memory is host memory, so gradients reduce in place with MPI.
  void allreduce_sum(float* data, size_t n) override {
    // MPI counts are int: reduce in chunks of at most 2^30 elements.
    for (size_t off = 0; off < n; off += (size_t(1) << 30)) {
      const int c = int(std::min(n - off, size_t(1) << 30));
      check(MPI_Allreduce(MPI_IN_PLACE, data + off, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    }
  }
  void allreduce_sum_host(double* data, size_t n) override {
    check(MPI_Allreduce(MPI_IN_PLACE, data, int(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  }
  void broadcast_host(void* data, size_t bytes, int root) override {
    check(MPI_Bcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  void allgather_host(const void* in, void* out, size_t bytes) override {
    check(MPI_Allgather(in, int(bytes), MPI_BYTE, out, int(bytes), MPI_BYTE, MPI_COMM_WORLD), "MPI_Allgather");
  }

 private:
  int rank_ = 0, size_ = 1;
  bool owns_ = false;
  std::string library_;
};

}  // namespace
}  // namespace ncf

extern "C" ncf::Communicator* ncf_mpi_create(char* err, size_t errlen) {
  try {
    return new ncf::MpiCommunicator();
  } catch (const std::exception& e) {
    std::strncpy(err, e.what(), errlen - 1);
    return nullptr;
  }
}

extern "C" void ncf_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
