// Training steps as CUDA Graphs (step_graph.cuh).
#include <exception>

#include "cuda_common.cuh"
#include "step_graph.cuh"

namespace ncf::cuda {

StepGraph::~StepGraph() {
  for (auto& [shape, exec] : execs_)
    if (exec) cudaGraphExecDestroy(exec);
}

cudaGraph_t StepGraph::capture(const std::function<void()>& ops, cudaStream_t stream, const char** why) {
  // Thread-local mode: only this thread's calls are checked against the capture (the addon's
  // other threads may allocate meanwhile).
  NCF_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    ops();
  } catch (const std::exception&) {
    // An op's call refused under capture (or a real error, which the uncaptured rerun will raise
    // again): end the capture so the stream takes work again.
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    *why = "an op's CUDA call failed while captured";
    return nullptr;
  }
  const cudaError_t e = cudaStreamEndCapture(stream, &graph);
  if (e != cudaSuccess || !graph) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    *why = cudaGetErrorString(e);
    return nullptr;
  }
  return graph;
}

void StepGraph::run(uint64_t shape, const std::function<void()>& ops, cudaStream_t stream) {
  if (!on_ || execs_.emplace(shape, nullptr).second) {
    if (asked_) ++direct_;
    ops();
    return;
  }
  const char* why = "";
  cudaGraph_t graph = capture(ops, stream, &why);
  cudaGraphExec_t& exec = execs_[shape];
  if (graph && exec) {
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(exec, graph, &info) == cudaSuccess) {
      ++updated_;
    } else {  // the step's nodes changed: a new executable graph
      cudaGetLastError();
      NCF_CUDA(cudaStreamSynchronize(stream));  // the old one may still be queued
      cudaGraphExecDestroy(exec);
      exec = nullptr;
    }
  }
  if (graph && !exec) {
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    if (e == cudaSuccess) {
      ++instantiated_;
    } else {
      cudaGetLastError();
      exec = nullptr;
      cudaGraphDestroy(graph);
      graph = nullptr;
      why = cudaGetErrorString(e);
    }
  }
  if (!graph) {  // nothing of the step ran: it runs op by op, and so do the steps after it
    std::fprintf(stderr, "ncf-native: a training step could not run as a CUDA Graph (%s); the steps run op by op from here\n", why);
    on_ = false;
    ++direct_;
    ops();
    return;
  }
  cudaGraphDestroy(graph);
  NCF_CUDA(cudaGraphLaunch(exec, stream));
  ++graphs_;
}

void StepGraph::report(std::FILE* out) const {
  if (graphs_ + direct_ == 0) return;  // no step ran here as a graph candidate: nothing to say
  std::fprintf(out, "ncf cuda graph: %llu steps launched as graphs, %llu uncaptured; %llu instantiations, %llu updates\n",
               static_cast<unsigned long long>(graphs_), static_cast<unsigned long long>(direct_),
               static_cast<unsigned long long>(instantiated_), static_cast<unsigned long long>(updated_));
}

}  // namespace ncf::cuda
