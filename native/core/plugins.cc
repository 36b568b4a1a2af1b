#include "plugins.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>

#include "errors.h"

namespace ncf {

// The entry points each plugin exports (extern "C", resolved with dlsym).
using CudaCreateBackendFn = Backend* (*)(int device, char* err, size_t errlen);
using CudaDevicesFn = int (*)(CudaDevice* out, int max, char* err, size_t errlen);
using CudaBuildInfoFn = const char* (*)(int* has_nccl);
using CudaCreateNcclFn = Communicator* (*)(Backend* backend, Communicator* host, char* err, size_t errlen);
using MpiCreateFn = Communicator* (*)(char* err, size_t errlen);
using MpiAbortFn = void (*)(int code);

namespace {

void anchor() {}

bool file_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

struct Plugin {
  void* handle = nullptr;
  std::string error;
  bool tried = false;
};

// Loads a plugin once. RTLD_GLOBAL lets MPI's own components resolve symbols of libmpi.
Plugin& load_plugin(const std::string& path, Plugin& slot, std::mutex& mu) {
  std::lock_guard<std::mutex> lock(mu);
  if (slot.tried) return slot;
  slot.tried = true;
  if (!file_exists(path)) {
    slot.error = path + " was not built";
    return slot;
  }
  slot.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!slot.handle) slot.error = std::string("cannot load ") + path + ": " + dlerror();
  return slot;
}

template <typename Fn>
Fn symbol(const Plugin& p, const char* name) {
  if (!p.handle) return nullptr;
  return reinterpret_cast<Fn>(dlsym(p.handle, name));
}

std::mutex g_cuda_mu, g_mpi_mu, g_world_mu;
Plugin g_cuda, g_mpi;
std::unique_ptr<Communicator> g_world;

// NCF_CUDA_PLUGIN names another file to load as the CUDA backend: the tests use it for
// ncf_cuda_emu.so, the backend under host emulation (cmake/NcfCudaEmu.cmake).
const char* cuda_plugin_override() {
  const char* p = std::getenv("NCF_CUDA_PLUGIN");
  return p && *p ? p : nullptr;
}
std::string cuda_plugin_path() {
  const char* p = cuda_plugin_override();
  return p ? std::string(p) : plugin_dir() + "/ncf_cuda.so";
}

Plugin& cuda_plugin() { return load_plugin(cuda_plugin_path(), g_cuda, g_cuda_mu); }
Plugin& mpi_plugin() { return load_plugin(plugin_dir() + "/ncf_mpi.so", g_mpi, g_mpi_mu); }

// A non-owning view of the process-wide MPI communicator, for a trainer to hold.
class WorldView final : public Communicator {
 public:
  explicit WorldView(Communicator& w) : w_(w) {}
  int rank() const override { return w_.rank(); }
  int size() const override { return w_.size(); }
  std::string describe() const override { return w_.describe(); }
  void allreduce_sum(float* d, size_t n) override { w_.allreduce_sum(d, n); }
  void allreduce_sum_host(double* d, size_t n) override { w_.allreduce_sum_host(d, n); }
  void broadcast_host(void* d, size_t b, int root) override { w_.broadcast_host(d, b, root); }
  void allgather_host(const void* in, void* out, size_t b) override { w_.allgather_host(in, out, b); }

 private:
  Communicator& w_;
};

}  // namespace

std::string plugin_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&anchor), &info) && info.dli_fname) {
    std::string p = info.dli_fname;
    const auto slash = p.rfind('/');
    return slash == std::string::npos ? "." : p.substr(0, slash);
  }
  return ".";
}

CudaStatus cuda_status() {
  CudaStatus s;
  const std::string path = cuda_plugin_path();
  s.built = file_exists(path);
  if (!s.built) {
    if (cuda_plugin_override()) {
      s.error = "NCF_CUDA_PLUGIN names " + path + ", which does not exist";
      return s;
    }
    s.error = "this build has no CUDA backend (CMake did not find the CUDA toolkit with cuBLAS; "
              "rebuild with NCF_CUDA=ON to see why)";
    return s;
  }
  Plugin& p = cuda_plugin();
  if (!p.handle) {
    s.error = p.error;
    return s;
  }
  s.loaded = true;
  int nccl = 0;
  if (auto info = symbol<CudaBuildInfoFn>(p, "ncf_cuda_build_info")) s.build = info(&nccl);
  s.nccl = nccl != 0;
  auto devices = symbol<CudaDevicesFn>(p, "ncf_cuda_devices");
  if (!devices) {
    s.error = "ncf_cuda.so lacks ncf_cuda_devices";
    return s;
  }
  CudaDevice found[64];
  char err[512] = {0};
  const int n = devices(found, 64, err, sizeof err);
  if (n < 0) {
    s.error = err;
    return s;
  }
  s.devices.assign(found, found + n);
  if (n == 0) s.error = "no CUDA device is visible";
  return s;
}

bool mpi_built() { return file_exists(plugin_dir() + "/ncf_mpi.so"); }

std::unique_ptr<Backend> create_backend(const std::string& name, int device, int threads) {
  if (name == "cpu") return create_cpu_backend(threads);
  if (name != "cuda") fail(ErrorCode::InvalidArgument, "unknown backend '" + name + "' (expected cpu or cuda)");
  const CudaStatus st = cuda_status();
  if (!st.loaded || st.devices.empty()) fail(ErrorCode::Unavailable, "the CUDA backend is unavailable: " + st.error);
  if (device < 0 || device >= int(st.devices.size()))
    fail(ErrorCode::InvalidArgument, "GPU " + std::to_string(device) + " does not exist (" +
                                         std::to_string(st.devices.size()) + " visible)");
  auto create = symbol<CudaCreateBackendFn>(cuda_plugin(), "ncf_cuda_create_backend");
  char err[1024] = {0};
  Backend* b = create ? create(device, err, sizeof err) : nullptr;
  if (!b) fail(ErrorCode::Backend, std::string("cannot start the CUDA backend: ") + (create ? err : "missing entry point"));
  return std::unique_ptr<Backend>(b);
}

Communicator& mpi_world() {
  std::lock_guard<std::mutex> lock(g_world_mu);
  if (g_world) return *g_world;
  Plugin& p = mpi_plugin();
  if (!p.handle)
    fail(ErrorCode::Unavailable, "multi-process training needs MPI, and " + p.error +
                                     " (install an MPI implementation such as Open MPI's libopenmpi-dev and "
                                     "reinstall ncf-native)");
  auto create = symbol<MpiCreateFn>(p, "ncf_mpi_create");
  char err[1024] = {0};
  Communicator* c = create ? create(err, sizeof err) : nullptr;
  if (!c) fail(ErrorCode::Distributed, std::string("cannot start MPI: ") + (create ? err : "missing entry point"));
  g_world.reset(c);
  return *g_world;
}

bool mpi_started() {
  std::lock_guard<std::mutex> lock(g_world_mu);
  return g_world != nullptr;
}

void mpi_finalize() {
  std::lock_guard<std::mutex> lock(g_world_mu);
  g_world.reset();  // the MPI communicator's destructor calls MPI_Finalize
}

void mpi_abort(int code) {
  if (auto abort_fn = symbol<MpiAbortFn>(g_mpi, "ncf_mpi_abort")) abort_fn(code);
  std::_Exit(code);
}

std::unique_ptr<Communicator> create_trainer_communicator(Backend& backend) {
  Communicator& world = mpi_world();
  if (backend.info().name != "cuda") return std::make_unique<WorldView>(world);
  auto create = symbol<CudaCreateNcclFn>(cuda_plugin(), "ncf_cuda_create_nccl");
  char err[1024] = {0};
  Communicator* c = create ? create(&backend, &world, err, sizeof err) : nullptr;
  if (!c)
    fail(ErrorCode::Unavailable, std::string("multi-GPU training needs NCCL: ") +
                                     (create ? err : "this CUDA backend was built without NCCL"));
  return std::unique_ptr<Communicator>(c);
}

}  // namespace ncf
