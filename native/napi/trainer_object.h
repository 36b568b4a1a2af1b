// The Trainer class exposed to JavaScript: wraps core::Trainer. Created by createTrainer()
// (which builds it off the main thread); every method that computes returns a Promise and runs
// on a worker thread, one at a time.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

#include "../core/trainer.h"

namespace ncf::js {

class TrainerObject : public Napi::ObjectWrap<TrainerObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::FunctionReference constructor;
  explicit TrainerObject(const Napi::CallbackInfo& info);

  // Takes ownership of a built trainer.
  static Napi::Object Wrap(Napi::Env env, std::unique_ptr<Trainer> t);

 private:
  Napi::Value RunEpoch(const Napi::CallbackInfo& info);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);
  Napi::Value GetParams(const Napi::CallbackInfo& info);
  Napi::Value SetParams(const Napi::CallbackInfo& info);
  Napi::Value GetOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Layout(const Napi::CallbackInfo& info);

  Trainer& trainer();             // throws if closed
  void acquire();                 // throws if another call is running
  std::shared_ptr<Trainer> t_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<bool>> cancel_ = std::make_shared<std::atomic<bool>>(false);
};

Napi::Value CreateTrainer(const Napi::CallbackInfo& info);

}  // namespace ncf::js
