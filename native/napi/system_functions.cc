// What was built and what this machine offers (buildInfo, cudaStatus), and the MPI lifecycle of a
// distributed run (initDistributed on the main thread, abortDistributed, finalisation at exit).
#include "../core/plugins.h"
#include "../cpu/gemm.h"
#include "convert.h"
#include "functions.h"

namespace ncf::js {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", NCF_VERSION);
  o.Set("blas", blas_name());
  o.Set("compiler", NCF_COMPILER);
  o.Set("pluginDir", plugin_dir());
  o.Set("cudaBuilt", cuda_status().built);
  o.Set("mpiBuilt", mpi_built());
  return o;
}

Napi::Value CudaStatusJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaStatus s = cuda_status();
  Napi::Object o = Napi::Object::New(env);
  o.Set("built", s.built);
  o.Set("loaded", s.loaded);
  o.Set("nccl", s.nccl);
  o.Set("build", s.build);
  o.Set("available", s.loaded && !s.devices.empty());
  if (!s.error.empty()) o.Set("error", s.error);
  Napi::Array devs = Napi::Array::New(env);
  for (size_t i = 0; i < s.devices.size(); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", s.devices[i].name);
    d.Set("memory", double(s.devices[i].memory));
    d.Set("capability", std::to_string(s.devices[i].major) + "." + std::to_string(s.devices[i].minor));
    devs.Set(uint32_t(i), d);
  }
  o.Set("devices", devs);
  return o;
}

// Starts MPI from the JavaScript main thread and returns { rank, size, library }.
Napi::Value InitDistributed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Communicator& w = mpi_world();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rank", w.rank());
    o.Set("size", w.size());
    o.Set("library", w.describe());
    return o;
  });
}

// Waits until every rank of the job gets here.
Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    double token = 0;
    mpi_world().allreduce_sum_host(&token, 1);
    return env.Undefined();
  });
}

// Ends every rank of the job with an exit code (MPI_Abort), so no rank waits forever on a peer
// that failed.
Napi::Value AbortDistributed(const Napi::CallbackInfo& info) {
  const int code = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  if (mpi_started()) mpi_abort(code);
  return info.Env().Undefined();
}

void RegisterCleanup(Napi::Env env) {
  napi_add_env_cleanup_hook(env, [](void*) { mpi_finalize(); }, nullptr);
}

}  // namespace ncf::js
