// The free functions the addon exports (one file per family).
#pragma once
#include <napi.h>

namespace ncf::js {

// prepare_functions.cc
Napi::Value PrepareFile(const Napi::CallbackInfo& info);
Napi::Value PrepareSynthetic(const Napi::CallbackInfo& info);
Napi::Value SyntheticShapes(const Napi::CallbackInfo& info);
Napi::Value WriteSyntheticCsv(const Napi::CallbackInfo& info);

// system_functions.cc
Napi::Value BuildInfo(const Napi::CallbackInfo& info);
Napi::Value CudaStatusJs(const Napi::CallbackInfo& info);
Napi::Value InitDistributed(const Napi::CallbackInfo& info);
Napi::Value AbortDistributed(const Napi::CallbackInfo& info);
Napi::Value Barrier(const Napi::CallbackInfo& info);
void RegisterCleanup(Napi::Env env);

}  // namespace ncf::js

#include "../core/model_config.h"
namespace ncf::js {
// Reads { nUsers, nItems, factors, layers, dropout } (trainer_object.cc).
ModelConfig model_config_from(const Napi::Object& o);
Napi::Value layout_to_js(Napi::Env env, const ParamLayout& L);
Napi::Value ParamLayoutJs(const Napi::CallbackInfo& info);
}  // namespace ncf::js
