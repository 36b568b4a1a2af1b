// NCF_CUDA_OP_TIMES=1: per-op GPU time from CUDA events (op_times.cuh).
#include <algorithm>
#include <map>

#include "cuda_common.cuh"
#include "op_times.cuh"

namespace ncf::cuda {

OpTimes::OpTimes() : on_(env_flag("NCF_CUDA_OP_TIMES")) {}

OpTimes::~OpTimes() {
  for (const Span& s : spans_) {
    cudaEventDestroy(s.start);
    cudaEventDestroy(s.stop);
  }
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
}

cudaEvent_t OpTimes::event() {
  if (!free_.empty()) {
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  NCF_CUDA(cudaEventCreate(&e));
  return e;
}

int OpTimes::begin(const char* name, const std::string& detail, cudaStream_t stream) {
  Span s;
  s.depth = int(open_.size());
  s.path = open_.empty() ? std::string() : spans_[size_t(open_.back())].path + "/";
  s.path += name;
  if (!detail.empty()) s.path += " " + detail;
  s.start = event();
  s.stop = event();
  NCF_CUDA(cudaEventRecord(s.start, stream));
  spans_.push_back(std::move(s));
  open_.push_back(int(spans_.size()) - 1);
  return open_.back();
}

void OpTimes::end(int span, cudaStream_t stream) {
  // An op that threw may leave inner spans open: they end here with it.
  while (!open_.empty()) {
    const int top = open_.back();
    open_.pop_back();
    if (cudaEventRecord(spans_[size_t(top)].stop, stream) != cudaSuccess) spans_[size_t(top)].depth = -1;  // unusable
    if (top == span) break;
  }
}

void OpTimes::report(const char* phase, cudaStream_t stream, std::FILE* out) {
  if (spans_.empty() || !open_.empty()) return;  // nothing yet, or called inside an op
  NCF_CUDA(cudaStreamSynchronize(stream));
  struct Total {
    double ms = 0.0;
    long long calls = 0;
    int depth = 0;
    std::vector<int> order;  // first-seen index of each prefix: sorts a nested op under its own
  };
  std::map<std::string, Total> totals;
  std::map<std::string, int> seen;  // path -> first-seen index
  double busy = 0.0;
  int last_top = -1;
  for (size_t i = 0; i < spans_.size(); ++i) {
    const Span& s = spans_[i];
    if (s.depth < 0) continue;
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, s.start, s.stop) != cudaSuccess) continue;
    seen.emplace(s.path, int(seen.size()));
    Total& t = totals[s.path];
    t.ms += ms;
    ++t.calls;
    t.depth = s.depth;
    if (s.depth == 0) {
      busy += ms;
      last_top = int(i);
    }
  }
  float window = 0.0f;
  if (last_top >= 0) cudaEventElapsedTime(&window, spans_.front().start, spans_[size_t(last_top)].stop);
  for (auto& [path, t] : totals) {
    for (size_t cut = path.find('/'); cut != std::string::npos; cut = path.find('/', cut + 1))
      t.order.push_back(seen.count(path.substr(0, cut)) ? seen[path.substr(0, cut)] : -1);
    t.order.push_back(seen[path]);
  }
  std::vector<const std::pair<const std::string, Total>*> rows;
  for (const auto& e : totals) rows.push_back(&e);
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->second.order < b->second.order; });
  std::fprintf(out, "ncf op times, %s: %.3f ms in ops, %.3f ms from the first op's start to the last one's end "
               "(%.3f ms with no op running)\n", phase, busy, double(window), std::max(0.0, double(window) - busy));
  std::fprintf(out, "ncf op times   %-64s %8s %11s %10s %7s\n", "op (nested: inside the op above)", "calls", "total ms",
               "ms/call", "share");
  for (const auto* r : rows) {
    const std::string& path = r->first;
    const Total& t = r->second;
    const size_t slash = path.rfind('/');
    const std::string label = std::string(size_t(2 * t.depth), ' ') + (slash == std::string::npos ? path : path.substr(slash + 1));
    std::fprintf(out, "ncf op times   %-64s %8lld %11.3f %10.4f %6.1f%%\n", label.c_str(), t.calls, t.ms,
                 t.ms / double(t.calls), busy > 0.0 ? 100.0 * t.ms / busy : 0.0);
  }
  std::fflush(out);
  for (const Span& s : spans_) {
    free_.push_back(s.start);
    free_.push_back(s.stop);
  }
  spans_.clear();
}

}  // namespace ncf::cuda
