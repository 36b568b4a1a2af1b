// OpRunner: runs single ops of a backend on host arrays, for the tests (CPU ops against finite
// differences and hand-computed values) and `ncf-native selftest` (CUDA ops against their CPU
// twins). Each method uploads its inputs, runs one op, synchronises and returns the outputs.
#pragma once
#include <napi.h>

#include <memory>

#include "../core/backend.h"

namespace ncf::js {

class OpRunner : public Napi::ObjectWrap<OpRunner> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit OpRunner(const Napi::CallbackInfo& info);

 private:
  Napi::Value Philox(const Napi::CallbackInfo& info);
  Napi::Value SampleBatch(const Napi::CallbackInfo& info);
  Napi::Value EmbedForward(const Napi::CallbackInfo& info);
  Napi::Value EmbedBackward(const Napi::CallbackInfo& info);
  Napi::Value LinearForward(const Napi::CallbackInfo& info);
  Napi::Value LinearBackward(const Napi::CallbackInfo& info);
  Napi::Value LiveUnits(const Napi::CallbackInfo& info);
  Napi::Value HeadForward(const Napi::CallbackInfo& info);
  Napi::Value HeadForwardBackward(const Napi::CallbackInfo& info);
  Napi::Value AdamStep(const Napi::CallbackInfo& info);
  Napi::Value OverflowCheck(const Napi::CallbackInfo& info);
  Napi::Value UpdateLossScale(const Napi::CallbackInfo& info);
  Napi::Value HalfRoundTrip(const Napi::CallbackInfo& info);
  Napi::Value EvalRank(const Napi::CallbackInfo& info);
  Napi::Value MatmulNt(const Napi::CallbackInfo& info);
  Napi::Value AddRow(const Napi::CallbackInfo& info);
  Napi::Value GatherAddRelu(const Napi::CallbackInfo& info);
  Napi::Value PairRowSums(const Napi::CallbackInfo& info);
  Napi::Value MatmulNn(const Napi::CallbackInfo& info);
  Napi::Value SplitForward(const Napi::CallbackInfo& info);
  Napi::Value TrainPass(const Napi::CallbackInfo& info);
  Napi::Value HiddenForward(const Napi::CallbackInfo& info);
  Napi::Value HiddenBackward(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);

  std::unique_ptr<Backend> be_;
};

}  // namespace ncf::js
