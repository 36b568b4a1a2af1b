// The emulator's CUDA Graphs: stream capture, instantiation, whole-graph update and launch (see
// submit in cuda_emu.h). Capture is per host thread, as CUDA's cudaStreamCaptureModeThreadLocal:
// the capturing thread's work on the captured stream is recorded, and its calls that a capture
// refuses invalidate the capture. A graph is its nodes in submission order (one stream: a chain).
// NCF_EMU_GRAPH_FAULT=capture (=instantiate) makes the process's first capture end invalidated
// (its first instantiation fail), for tests of what the CUDA backend does then.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda_emu.h"

struct EmuNode {
  emu::NodeKind kind;
  std::function<void()> work;
};
// The handles the CUDA headers declare and leave opaque.
struct CUgraph_st {
  std::vector<EmuNode> nodes;
};
struct CUgraphExec_st {
  std::vector<EmuNode> nodes;
};

namespace emu {
namespace {
struct Capture {
  bool active = false;
  bool invalid = false;  // a refused call happened since the capture began
  cudaStream_t stream = nullptr;
  std::vector<EmuNode> nodes;
};
thread_local Capture t_capture;

// Whether the injected fault `what` is due now (once per process).
bool inject_fault(const char* what) {
  static std::atomic<bool> done{false};
  const char* e = std::getenv("NCF_EMU_GRAPH_FAULT");
  return e && std::strcmp(e, what) == 0 && !done.exchange(true);
}
}  // namespace

void submit(cudaStream_t stream, NodeKind kind, std::function<void()> work) {
  Capture& c = t_capture;
  if (c.active && stream == c.stream) {
    if (!c.invalid) c.nodes.push_back(EmuNode{kind, std::move(work)});
    return;
  }
  work();
}

bool capture_refuses() {
  if (!t_capture.active) return false;
  t_capture.invalid = true;
  return true;
}

}  // namespace emu

extern "C" {

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  emu::Capture& c = emu::t_capture;
  if (c.active) return cudaErrorIllegalState;  // one capture per thread here (the backend's one stream)
  c = emu::Capture{};
  c.active = true;
  c.stream = stream;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  emu::Capture& c = emu::t_capture;
  if (!graph) return cudaErrorInvalidValue;
  *graph = nullptr;
  if (!c.active || stream != c.stream) return cudaErrorIllegalState;
  const bool invalid = c.invalid || emu::inject_fault("capture");
  std::vector<EmuNode> nodes = std::move(c.nodes);
  c = emu::Capture{};
  if (invalid) return cudaErrorStreamCaptureInvalidated;
  *graph = new CUgraph_st{std::move(nodes)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (!status) return cudaErrorInvalidValue;
  const emu::Capture& c = emu::t_capture;
  *status = !c.active || stream != c.stream ? cudaStreamCaptureStatusNone
            : c.invalid                     ? cudaStreamCaptureStatusInvalidated
                                            : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!exec || !graph) return cudaErrorInvalidValue;
  if (emu::capture_refuses()) return cudaErrorStreamCaptureUnsupported;
  if (emu::inject_fault("instantiate")) return cudaErrorNotSupported;
  *exec = new CUgraphExec_st{graph->nodes};
  return cudaSuccess;
}

// Only the nodes' parameters may change: the same count of nodes, each of the same kind (a kernel
// node may launch another kernel, as CUDA allows within one context).
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph, cudaGraphExecUpdateResultInfo* info) {
  if (!exec || !graph || !info) return cudaErrorInvalidValue;
  *info = cudaGraphExecUpdateResultInfo{};
  if (exec->nodes.size() != graph->nodes.size()) {
    info->result = cudaGraphExecUpdateErrorTopologyChanged;
    return cudaErrorGraphExecUpdateFailure;
  }
  for (size_t i = 0; i < exec->nodes.size(); ++i)
    if (exec->nodes[i].kind != graph->nodes[i].kind) {
      info->result = cudaGraphExecUpdateErrorNodeTypeChanged;
      return cudaErrorGraphExecUpdateFailure;
    }
  exec->nodes = graph->nodes;
  info->result = cudaGraphExecUpdateSuccess;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return cudaErrorInvalidValue;
  if (emu::capture_refuses()) return cudaErrorStreamCaptureUnsupported;  // no graphs inside graphs here
  for (const EmuNode& n : exec->nodes) n.work();
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

}  // extern "C"
