// Kernel forms chosen on the run's own work (`train --autotune`, or NCF_CUDA_AUTOTUNE=1): where
// the backend has more than one way to run the same ops (today the hidden layers' tile kernels,
// hidden_forward and hidden_backward, against the op chain of GEMMs and passes), each form is
// timed between two CUDA events on real training steps (or evaluation batches) of the run's first
// shape, and the fastest by median runs the rest of the run. Every form computes the same step (to
// the order of its sums), so the steps that time them are the run's own: nothing runs twice.
//
// Schedule for C forms: C warm-up runs, each form once (its first launches opt in to shared
// memory, plan and tune GEMMs, instantiate CUDA Graphs), then kRepeats rounds of one timed run of
// each form, interleaved so that clocks and caches drifting over the rounds fall on every form
// alike. The host waits once, at the decision, for the last round's events. A form whose kernel
// declined a run (its shapes, precision or the GPU's shared memory) leaves the race.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ncf::cuda {

// Which of the backend's alternative kernels the ops run with.
struct KernelForms {
  bool hidden_forward = false;   // hidden_forward's tile kernel, else the chain's layers
  bool hidden_backward = false;  // hidden_backward's tile kernel, else the chain's layers
  // With hidden_forward: its one-staging-buffer layout, which declines where it fits no more layers
  // or larger tiles than the two-buffer one (hidden_forward.cu).
  bool forward_one_buffer = false;
  bool operator==(const KernelForms& o) const {
    return hidden_forward == o.hidden_forward && hidden_backward == o.hidden_backward && forward_one_buffer == o.forward_one_buffer;
  }
  // "the op chain", "hidden_forward", "hidden_forward (one buffer)", "hidden_backward",
  // "hidden_forward + hidden_backward" or "hidden_forward (one buffer) + hidden_backward".
  std::string name() const;
  // A small number per form (for keys of per-form state such as CUDA Graphs).
  unsigned index() const { return unsigned(hidden_forward) | unsigned(hidden_backward) << 1 | unsigned(forward_one_buffer) << 2; }
};

class FormTuner {
 public:
  static constexpr int kRepeats = 3;
  // `what` names the runs in the report ("training steps"); forms[0] is the one every run of
  // another shape takes until the decision. A form without tile kernels never declines: the
  // backend always lists one.
  FormTuner(std::string what, std::vector<KernelForms> forms);
  ~FormTuner();
  FormTuner(const FormTuner&) = delete;
  FormTuner& operator=(const FormTuner&) = delete;

  // The forms for the next run, of `rows` rows: the schedule's for runs of the first shape while
  // tuning, afterwards the chosen ones. Each call is followed by begin() and end() around the run.
  KernelForms next(uint64_t rows);
  void begin(cudaStream_t stream);
  // `ran`: whether the forms next() gave were the ones that ran (false: a kernel declined, and the
  // form leaves the race). After the last scheduled run, decides (one wait for the events).
  void end(cudaStream_t stream, bool ran);
  bool decided() const { return chosen_ >= 0; }
  // After the decision, one line: the runs, the forms chosen and each form's median time.
  const std::string& report() const { return report_; }
  // Before the decision, after a run: one line saying how far the schedule got; else "".
  std::string unfinished() const;

  // Across ranks, each deciding on its own steps (their times include waits for the others):
  // this rank's tallies, to be summed over the ranks at a point every rank reaches (the end of an
  // epoch or an evaluation): per form its median time and whether it declined, and whether this
  // rank decided. 2 C + 1 numbers.
  std::vector<double> tally() const;
  // With the tallies summed over `ranks` ranks: once every rank has decided, every rank takes the
  // form with the least summed time among those no rank saw decline, and the report says so.
  // Returns whether this call made that choice (once per tuner).
  bool agree(const std::vector<double>& summed, int ranks);
  bool agreed() const { return agreed_; }

 private:
  std::string what_;
  std::vector<KernelForms> forms_;
  uint64_t rows_ = 0;  // the shape tuned on: the first run's rows (0: no run yet)
  int slot_ = 0;       // the next slot of the schedule: form slot_ % C (in the race), round slot_ / C (round 0: warm-up)
  int running_ = -1;   // the slot of the run between next() and end(); -1: a run outside the schedule
  int chosen_ = -1;
  int runs_ = 0;       // scheduled runs so far
  bool agreed_ = false;
  std::vector<bool> out_;                    // forms out of the race
  std::vector<double> median_;               // after the decision: each form's median ms
  std::vector<cudaEvent_t> start_, stop_;    // [round - 1][form]: the timed runs
  std::string report_;
  int slots() const { return int(forms_.size()) * (1 + kRepeats); }
  cudaEvent_t& event(std::vector<cudaEvent_t>& v, int slot) { return v[size_t(slot) - forms_.size()]; }
  void decide();
  // The fastest by ms of the forms not out, and the report with every form's time and `how`.
  void choose(const std::vector<double>& ms, const std::vector<bool>& out, const std::string& how);
};

}  // namespace ncf::cuda
