// The N-API surface of ncf-native: registers the functions and classes of native/napi. No math
// here; see native/core for the model and native/cpu, native/cuda for the backends.
#include <napi.h>

#include "napi/functions.h"
#include "napi/model_object.h"
#include "napi/op_runner.h"
#include "napi/trainer_object.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace ncf::js;
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("cudaStatus", Napi::Function::New(env, CudaStatusJs));
  exports.Set("initDistributed", Napi::Function::New(env, InitDistributed));
  exports.Set("barrier", Napi::Function::New(env, Barrier));
  exports.Set("abortDistributed", Napi::Function::New(env, AbortDistributed));
  exports.Set("prepareFile", Napi::Function::New(env, PrepareFile));
  exports.Set("prepareSynthetic", Napi::Function::New(env, PrepareSynthetic));
  exports.Set("writeSyntheticCsv", Napi::Function::New(env, WriteSyntheticCsv));
  exports.Set("syntheticShapes", Napi::Function::New(env, SyntheticShapes));
  exports.Set("createTrainer", Napi::Function::New(env, CreateTrainer));
  exports.Set("paramLayout", Napi::Function::New(env, ParamLayoutJs));
  exports.Set("createModel", Napi::Function::New(env, CreateModel));
  exports.Set("Trainer", TrainerObject::Define(env));
  exports.Set("Model", ModelObject::Define(env));
  exports.Set("OpRunner", OpRunner::Define(env));
  RegisterCleanup(env);
  return exports;
}

}  // namespace

NODE_API_MODULE(ncf_native, Init)
