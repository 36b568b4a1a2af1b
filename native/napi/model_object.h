// The Model class exposed to JavaScript: wraps core::Scorer for serving (scoring pairs and top-K
// recommendation). Created by createModel(); the Promise-returning methods run off the main
// thread, the *Sync ones on it (for small requests where a thread hop costs more than the work).
#pragma once
#include <napi.h>

#include <memory>

#include "../core/scorer.h"

namespace ncf::js {

class ModelObject : public Napi::ObjectWrap<ModelObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::FunctionReference constructor;
  explicit ModelObject(const Napi::CallbackInfo& info);
  static Napi::Object Wrap(Napi::Env env, std::unique_ptr<Scorer> s);

 private:
  Napi::Value Score(const Napi::CallbackInfo& info);
  Napi::Value ScoreSync(const Napi::CallbackInfo& info);
  Napi::Value Recommend(const Napi::CallbackInfo& info);
  Napi::Value RecommendSync(const Napi::CallbackInfo& info);
  Napi::Value SetSeen(const Napi::CallbackInfo& info);
  Napi::Value BenchResident(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::shared_ptr<Scorer> scorer();  // throws if closed
  std::shared_ptr<Scorer> s_;
};

Napi::Value CreateModel(const Napi::CallbackInfo& info);

}  // namespace ncf::js
