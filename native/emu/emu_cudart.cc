// The emulator's CUDA runtime: the calls the CUDA backend makes, on host memory. "Device"
// allocations are registered, so that a kernel argument, a copy's device side or a memset
// outside them is reported instead of silently working (a real GPU would fault or corrupt).
// New allocations are filled with 0xFF bytes (NaN as floats), not zeros: code that relies on
// cudaMalloc returning zeroed memory fails here as it may on a GPU. Streams are synchronous.
// NCF_EMU_PROTECT=1 maps each allocation on its own pages, inaccessible outside a DeviceScope.
#include <sys/mman.h>
#include <unistd.h>

#include <csignal>
#include <iterator>

#include <cstdlib>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>

#include "cuda_emu.h"
#include "emu_race.h"

namespace emu {
cudaError_t take_last_error();

namespace {
std::mutex g_mu;
std::map<uintptr_t, size_t> g_allocations;  // start -> bytes
size_t g_in_use = 0;
int g_scopes = 0;  // open DeviceScopes (under g_mu)

bool protect_mode() {
  static const bool on = [] {
    const char* e = std::getenv("NCF_EMU_PROTECT");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return on;
}
size_t mapped_bytes(size_t bytes) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page + page * (bytes == 0);
}
// In protect mode a fault on device memory is host code touching it: say so, then die of it.
struct sigaction g_previous_segv;
void on_segv(int sig, siginfo_t* info, void* context) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(info->si_addr);
  auto it = g_allocations.upper_bound(a);  // no lock: the process is dying or passing it on
  if (it != g_allocations.begin() && a < std::prev(it)->first + mapped_bytes(std::prev(it)->second)) {
    static const char msg[] = "CUDA emulator: host code read or wrote device memory (a crash on a GPU too)\n";
    (void)!write(2, msg, sizeof msg - 1);
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  if (g_previous_segv.sa_flags & SA_SIGINFO) g_previous_segv.sa_sigaction(sig, info, context);
  else if (g_previous_segv.sa_handler != SIG_DFL && g_previous_segv.sa_handler != SIG_IGN) g_previous_segv.sa_handler(sig);
  else {
    signal(sig, SIG_DFL);
    raise(sig);
  }
}
void install_segv_reporter() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous_segv);
  });
}

// Sets every allocation's protection (g_mu held).
void protect_all(int prot) {
  for (const auto& [start, bytes] : g_allocations)
    if (mprotect(reinterpret_cast<void*>(start), mapped_bytes(bytes), prot) != 0) fatal("mprotect failed");
}
constexpr size_t kEmulatedMemory = size_t(16) << 30;
constexpr int kDevices = 8;  // like an 8-GPU node, so every local rank of `mpirun -np 8` has one

// The allocation holding [p, p + bytes), if any.
bool in_device_memory(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_allocations.upper_bound(a);
  if (it == g_allocations.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}
}  // namespace

bool is_device_pointer(const void* p) { return in_device_memory(p, 0); }

void device_allocations(std::vector<std::pair<uintptr_t, size_t>>* out) {
  std::lock_guard<std::mutex> lock(g_mu);
  out->assign(g_allocations.begin(), g_allocations.end());
}

namespace {
constexpr int kSharedOptIn = 232448;  // an H100's opt-in limit of dynamic shared memory per block
std::map<const void*, size_t> g_shared_limits;  // kernel -> limit set by cudaFuncSetAttribute (under g_mu)
}  // namespace

size_t dynamic_shared_limit(const void* kernel) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_shared_limits.find(kernel);
  return it == g_shared_limits.end() ? size_t(48) << 10 : it->second;
}

DeviceScope::DeviceScope() {
  if (!protect_mode()) return;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_scopes++ == 0) protect_all(PROT_READ | PROT_WRITE);
}

DeviceScope::~DeviceScope() {
  if (!protect_mode()) return;
  std::lock_guard<std::mutex> lock(g_mu);
  if (--g_scopes == 0) protect_all(PROT_NONE);
}

}  // namespace emu

extern "C" {

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (emu::capture_refuses()) return cudaErrorStreamCaptureUnsupported;
  {
    std::lock_guard<std::mutex> lock(emu::g_mu);
    if (emu::g_in_use + bytes > emu::kEmulatedMemory) return cudaErrorMemoryAllocation;
  }
  void* q = nullptr;
  if (emu::protect_mode()) {
    emu::install_segv_reporter();
    q = mmap(nullptr, emu::mapped_bytes(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED) return cudaErrorMemoryAllocation;
  } else if (posix_memalign(&q, 256, bytes ? bytes : 1) != 0) {
    return cudaErrorMemoryAllocation;
  }
  std::memset(q, 0xFF, bytes);
  std::lock_guard<std::mutex> lock(emu::g_mu);
  if (emu::protect_mode() && emu::g_scopes == 0 && mprotect(q, emu::mapped_bytes(bytes), PROT_NONE) != 0)
    return cudaErrorMemoryAllocation;
  emu::g_allocations[reinterpret_cast<uintptr_t>(q)] = bytes;
  emu::g_in_use += bytes;
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (emu::capture_refuses()) return cudaErrorStreamCaptureUnsupported;
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(emu::g_mu);
  auto it = emu::g_allocations.find(reinterpret_cast<uintptr_t>(p));
  if (it == emu::g_allocations.end()) return cudaErrorInvalidValue;
  emu::g_in_use -= it->second;
  if (emu::protect_mode()) munmap(p, emu::mapped_bytes(it->second));
  else std::free(p);
  emu::g_allocations.erase(it);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  if (!emu::in_device_memory(p, bytes)) return cudaErrorInvalidValue;
  emu::submit(stream, emu::NodeKind::Memset, [=] {
    const emu::DeviceScope device;
    std::memset(p, value, bytes);
  });
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  const bool dst_dev = emu::in_device_memory(dst, bytes), src_dev = emu::in_device_memory(src, bytes);
  bool ok = false;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dst_dev && !emu::is_device_pointer(src); break;
    case cudaMemcpyDeviceToHost: ok = src_dev && !emu::is_device_pointer(dst); break;
    case cudaMemcpyDeviceToDevice: ok = dst_dev && src_dev; break;
    default: ok = true; break;
  }
  if (!ok) return cudaErrorInvalidValue;
  // A captured copy would read or write the host's memory at each launch of the graph.
  if (kind != cudaMemcpyDeviceToDevice && emu::capture_refuses()) return cudaErrorStreamCaptureUnsupported;
  emu::submit(stream, emu::NodeKind::Copy, [=] {
    const emu::DeviceScope device;
    std::memmove(dst, src, bytes);
  });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) {
  static int token;
  *s = reinterpret_cast<cudaStream_t>(&token);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return emu::capture_refuses() ? cudaErrorStreamCaptureUnsupported : emu::take_last_error();
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

// Events: work runs when it is launched, so an event records the host's clock when recorded.
struct EmuEvent {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = reinterpret_cast<cudaEvent_t>(new EmuEvent);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<EmuEvent*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (!e) return cudaErrorInvalidValue;
  if (emu::capture_refuses()) return cudaErrorStreamCaptureUnsupported;  // events are not captured here
  auto* ev = reinterpret_cast<EmuEvent*>(e);
  ev->at = std::chrono::steady_clock::now();
  ev->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (!e) return cudaErrorInvalidValue;
  return emu::capture_refuses() ? cudaErrorStreamCaptureUnsupported : emu::take_last_error();
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
  const auto *a = reinterpret_cast<const EmuEvent*>(start), *b = reinterpret_cast<const EmuEvent*>(stop);
  if (!a || !b || !ms) return cudaErrorInvalidValue;
  if (!a->recorded || !b->recorded) return cudaErrorInvalidResourceHandle;
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= emu::kDevices) return cudaErrorInvalidDevice;
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, "CUDA emulation on the host (not a GPU)", sizeof prop->name - 1);
  prop->totalGlobalMem = emu::kEmulatedMemory;
  prop->major = 9;
  prop->minor = 0;
  prop->maxThreadsPerBlock = 1024;
  prop->sharedMemPerBlock = 48 << 10;
  prop->sharedMemPerBlockOptin = emu::kSharedOptIn;
  prop->multiProcessorCount = 132;
  prop->sharedMemPerMultiprocessor = 233472;
  prop->warpSize = 32;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device >= 0 && device < emu::kDevices ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = emu::kDevices;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  std::lock_guard<std::mutex> lock(emu::g_mu);
  *total = emu::kEmulatedMemory;
  *free_bytes = emu::kEmulatedMemory - emu::g_in_use;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() { return emu::take_last_error(); }

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;  // the only one emulated
  if (value < 0 || value > emu::kSharedOptIn) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(emu::g_mu);
  emu::g_shared_limits[func] = size_t(value);
  return cudaSuccess;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorGraphExecUpdateFailure: return "cudaErrorGraphExecUpdateFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulator: a pointer outside device memory or a bad size)";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle (emulator: an event not recorded)";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState: return "the operation is not permitted in the current state (emulator: capture)";
    case cudaErrorGraphExecUpdateFailure: return "the graph update was not performed because it included changes which violated constraints specific to instantiated graph update";
    case cudaErrorNotSupported: return "operation not supported (emulator: NCF_EMU_GRAPH_FAULT)";
    default: return "unknown error";
  }
}

}  // extern "C"
