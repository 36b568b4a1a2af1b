// Per-op GPU time in the real run (NCF_CUDA_OP_TIMES=1): each backend op, and the GEMMs and
// passes inside it, is bracketed by two CUDA events on the backend's stream; at the end of a
// phase (a training epoch, an evaluation: Backend::phase_end) the events are read and a table
// goes to stderr: per op, its calls, total and per-call milliseconds and share of the time in
// ops, nested ops indented under theirs, and the GPU time between the phase's first op's start
// and last op's end that no op covers (the stream idle: the host behind, or a synchronisation).
// Unlike Nsight Compute, nothing is serialised, no cache is flushed and the clocks are the run's,
// so the figures add up to the benchmark's epoch time. Off by default: off, a span costs a branch.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

namespace ncf::cuda {

class OpTimes {
 public:
  OpTimes();  // on when NCF_CUDA_OP_TIMES=1
  ~OpTimes();
  OpTimes(const OpTimes&) = delete;
  OpTimes& operator=(const OpTimes&) = delete;
  bool on() const { return on_; }
  // Opens a span on `stream` named name (and " detail" when given), inside the innermost open
  // span; returns its index for end(). Ops run one at a time on one stream, so spans nest.
  int begin(const char* name, const std::string& detail, cudaStream_t stream);
  void end(int span, cudaStream_t stream);
  // Waits for the stream, writes the table of the spans since the last report (none: nothing),
  // headed by `phase`, and recycles their events.
  void report(const char* phase, cudaStream_t stream, std::FILE* out);

 private:
  struct Span {
    std::string path;  // "op/inner op"
    cudaEvent_t start = nullptr, stop = nullptr;
    int depth = 0;
  };
  bool on_ = false;
  std::vector<Span> spans_;        // since the last report
  std::vector<int> open_;          // indices of the open spans, innermost last
  std::vector<cudaEvent_t> free_;  // events of reported spans, for reuse
  cudaEvent_t event();
};

// An op's span for its scope (nothing when times is null or off).
class OpSpan {
 public:
  OpSpan(OpTimes* times, const char* name, cudaStream_t stream, const std::string& detail = std::string())
      : times_(times && times->on() ? times : nullptr), stream_(stream) {
    if (times_) span_ = times_->begin(name, detail, stream);
  }
  ~OpSpan() {
    if (times_) times_->end(span_, stream_);
  }
  OpSpan(const OpSpan&) = delete;
  OpSpan& operator=(const OpSpan&) = delete;

 private:
  OpTimes* times_;
  cudaStream_t stream_;
  int span_ = -1;
};

}  // namespace ncf::cuda
