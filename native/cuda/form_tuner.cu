// Kernel forms timed on the run's own steps (form_tuner.cuh).
#include <algorithm>
#include <cstdio>

#include "cuda_common.cuh"
#include "form_tuner.cuh"

namespace ncf::cuda {

std::string KernelForms::name() const {
  const std::string forward = forward_one_buffer ? "hidden_forward (one buffer)" : "hidden_forward";
  if (hidden_forward && hidden_backward) return forward + " + hidden_backward";
  if (hidden_forward) return forward;
  if (hidden_backward) return "hidden_backward";
  return "the op chain";
}

FormTuner::FormTuner(std::string what, std::vector<KernelForms> forms)
    : what_(std::move(what)), forms_(std::move(forms)), out_(forms_.size(), false) {
  if (forms_.empty()) throw Error(ErrorCode::InvalidArgument, "FormTuner: no forms");
  start_.assign(forms_.size() * kRepeats, nullptr);
  stop_.assign(forms_.size() * kRepeats, nullptr);
  for (size_t i = 0; i < start_.size(); ++i) {
    NCF_CUDA(cudaEventCreate(&start_[i]));
    NCF_CUDA(cudaEventCreate(&stop_[i]));
  }
}

FormTuner::~FormTuner() {
  for (cudaEvent_t e : start_) cudaEventDestroy(e);
  for (cudaEvent_t e : stop_) cudaEventDestroy(e);
}

KernelForms FormTuner::next(uint64_t rows) {
  running_ = -1;
  if (decided()) return forms_[size_t(chosen_)];
  if (rows == 0) return forms_[0];  // (a rank without rows this step: nothing to time)
  if (rows_ == 0) rows_ = rows;
  if (rows != rows_) return forms_[0];
  // (Undecided, slot_ is a slot of a form in the race: end() moves it so, or decides.)
  running_ = slot_;
  return forms_[size_t(slot_) % forms_.size()];
}

void FormTuner::begin(cudaStream_t stream) {
  if (running_ >= int(forms_.size())) NCF_CUDA(cudaEventRecord(event(start_, running_), stream));
}

void FormTuner::end(cudaStream_t stream, bool ran) {
  if (running_ < 0) return;
  const int slot = running_;
  running_ = -1;
  ++runs_;
  if (slot >= int(forms_.size())) NCF_CUDA(cudaEventRecord(event(stop_, slot), stream));
  if (!ran) out_[size_t(slot) % forms_.size()] = true;
  slot_ = slot + 1;
  const int C = int(forms_.size());
  while (slot_ < slots() && out_[size_t(slot_ % C)]) ++slot_;
  if (slot_ >= slots()) decide();
}

std::string FormTuner::unfinished() const {
  if (decided() || rows_ == 0) return std::string();
  return what_ + " of " + std::to_string(rows_) + " rows: not decided, the run ended after " + std::to_string(runs_) +
         " of them (timing " + std::to_string(forms_.size()) + " forms takes up to " + std::to_string(slots()) + ")";
}

void FormTuner::decide() {
  const int C = int(forms_.size());
  median_.assign(forms_.size(), 0.0);
  for (int f = 0; f < C; ++f) {
    if (out_[size_t(f)]) continue;
    std::vector<float> ms;
    for (int r = 1; r <= kRepeats; ++r) {
      const int slot = r * C + f;
      NCF_CUDA(cudaEventSynchronize(event(stop_, slot)));
      float t = 0.0f;
      NCF_CUDA(cudaEventElapsedTime(&t, event(start_, slot), event(stop_, slot)));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    median_[size_t(f)] = double(ms[ms.size() / 2]);
  }
  choose(median_, out_, "medians of " + std::to_string(kRepeats) + " runs each");
}

void FormTuner::choose(const std::vector<double>& ms, const std::vector<bool>& out, const std::string& how) {
  chosen_ = -1;
  for (size_t f = 0; f < forms_.size(); ++f)
    if (!out[f] && (chosen_ < 0 || ms[f] < ms[size_t(chosen_)])) chosen_ = int(f);
  if (chosen_ < 0) chosen_ = 0;  // (every form declined: the first, as every other shape ran)
  char buf[96];
  std::snprintf(buf, sizeof buf, " (%.3f ms", ms[size_t(chosen_)]);
  report_ = what_ + " of " + std::to_string(rows_) + " rows: " + forms_[size_t(chosen_)].name() + buf;
  for (size_t f = 0; f < forms_.size(); ++f) {
    if (int(f) == chosen_) continue;
    if (out[f]) {
      report_ += "; " + forms_[f].name() + " declined";
    } else {
      std::snprintf(buf, sizeof buf, " %.3f ms", ms[f]);
      report_ += "; " + forms_[f].name() + buf;
    }
  }
  report_ += "; " + how + ")";
}

std::vector<double> FormTuner::tally() const {
  const size_t C = forms_.size();
  std::vector<double> t(2 * C + 1, 0.0);
  if (!decided()) return t;
  for (size_t f = 0; f < C; ++f) {
    t[f] = median_[f];
    t[C + f] = out_[f] ? 1.0 : 0.0;
  }
  t[2 * C] = 1.0;
  return t;
}

bool FormTuner::agree(const std::vector<double>& summed, int ranks) {
  const size_t C = forms_.size();
  if (agreed_ || ranks < 2 || summed.size() != 2 * C + 1 || summed[2 * C] < double(ranks)) return false;
  std::vector<double> mean(C);
  std::vector<bool> out(C);
  for (size_t f = 0; f < C; ++f) {
    mean[f] = summed[f] / ranks;
    out[f] = summed[C + f] > 0.0;
  }
  choose(mean, out, "medians of " + std::to_string(kRepeats) + " runs each, means over " + std::to_string(ranks) + " ranks");
  agreed_ = true;
  return true;
}

}  // namespace ncf::cuda
