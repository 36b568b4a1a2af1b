// Each training step's ops captured as one CUDA Graph and launched as one, so the GPU goes from
// kernel to kernel without a launch each (the issue's "capture the step in a CUDA Graph if it
// pays": `train --xla`, or NCF_CUDA_GRAPH=1; off by default until a GPU run measures it).
//
// A step's kernel arguments change from step to step (the batch's epoch position, the dropout's,
// Adam's bias corrections), so the step is captured anew every time, as the host would launch it,
// and the capture updates the executable graph of the last step of its shape (cudaGraphExecUpdate:
// same nodes, new parameters; launches already queued keep theirs) instead of being instantiated. The
// first step of each shape runs uncaptured: what happens once (allocations, GEMM plans and their
// tuning, the epilogue checks) must not happen inside a capture, where waiting for the device or
// allocating is refused. A capture or instantiation that fails anyway turns the graphs off with a
// warning, and the step runs op by op (nothing of it ran: a graph's work runs at its launch).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>

namespace ncf::cuda {

class StepGraph {
 public:
  StepGraph() = default;  // off until set()
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;
  bool on() const { return on_; }
  void set(bool on) {
    on_ = on;
    asked_ = asked_ || on;
  }
  // Runs ops, whose work goes to `stream`: as they are the first time for `shape`, afterwards as
  // a captured graph.
  void run(uint64_t shape, const std::function<void()>& ops, cudaStream_t stream);
  // When steps ran through run(), one line of counts: steps launched as graphs, uncaptured,
  // instantiations, updates.
  void report(std::FILE* out) const;

 private:
  bool on_ = false;  // turned off for good by a capture or instantiation that failed
  bool asked_ = false;  // whether graphs were ever on: else run() just runs, and counts nothing
  // Per shape: null after its uncaptured first step, then its executable graph.
  std::map<uint64_t, cudaGraphExec_t> execs_;
  uint64_t graphs_ = 0, direct_ = 0, instantiated_ = 0, updated_ = 0;
  // Captures ops into a graph; null (the capture ended and its error cleared) when it failed.
  cudaGraph_t capture(const std::function<void()>& ops, cudaStream_t stream, const char** why);
};

}  // namespace ncf::cuda
