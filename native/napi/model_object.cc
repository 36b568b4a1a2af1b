#include "model_object.h"

#include <chrono>

#include "../core/plugins.h"
#include "convert.h"
#include "functions.h"

namespace ncf::js {

Napi::FunctionReference ModelObject::constructor;

Napi::Function ModelObject::Define(Napi::Env env) {
  Napi::Function f = DefineClass(env, "Model",
                                 {
                                     InstanceMethod("score", &ModelObject::Score),
                                     InstanceMethod("scoreSync", &ModelObject::ScoreSync),
                                     InstanceMethod("recommend", &ModelObject::Recommend),
                                     InstanceMethod("recommendSync", &ModelObject::RecommendSync),
                                     InstanceMethod("setSeen", &ModelObject::SetSeen),
                                     InstanceMethod("benchResident", &ModelObject::BenchResident),
                                     InstanceMethod("close", &ModelObject::Close),
                                     InstanceAccessor("info", &ModelObject::Info, nullptr),
                                 });
  constructor = Napi::Persistent(f);
  constructor.SuppressDestruct();
  return f;
}

ModelObject::ModelObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelObject>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    Napi::TypeError::New(info.Env(), "Model objects are made by createModel()").ThrowAsJavaScriptException();
    return;
  }
  s_.reset(info[0].As<Napi::External<Scorer>>().Data());
}

Napi::Object ModelObject::Wrap(Napi::Env env, std::unique_ptr<Scorer> s) {
  return constructor.New({Napi::External<Scorer>::New(env, s.release())});
}

std::shared_ptr<Scorer> ModelObject::scorer() {
  if (!s_) fail(ErrorCode::InvalidArgument, "the model was closed");
  return s_;
}

namespace {

struct Pairs {
  std::vector<uint32_t> users, items;
};

Pairs read_pairs(const Napi::CallbackInfo& info) {
  Pairs p{get_u32(info[0], "users"), get_u32(info[1], "items")};
  if (p.users.size() != p.items.size())
    fail(ErrorCode::InvalidArgument, "users and items differ in length (" + std::to_string(p.users.size()) + " vs " +
                                         std::to_string(p.items.size()) + ")");
  return p;
}

struct RecommendRequest {
  std::vector<uint32_t> users, candidates;
  int k = 10;
  bool exclude_seen = false;
  bool has_candidates = false;
};

RecommendRequest read_request(const Napi::CallbackInfo& info) {
  RecommendRequest r;
  r.users = get_u32(info[0], "users");
  Napi::Object o = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
  r.k = int(get_int(o, "k", 10));
  if (r.k < 1 || r.k > 100000) bad_option("k", "an integer in 1..100000");
  r.exclude_seen = get_bool(o, "excludeSeen", false);
  if (has(o, "candidates")) {
    r.candidates = get_u32(o.Get("candidates"), "candidates");
    r.has_candidates = true;
  }
  return r;
}

struct Ranked {
  std::vector<uint32_t> items;
  std::vector<float> scores;
};

void run_request(Scorer& s, const RecommendRequest& r, Ranked* out) {
  out->items.resize(r.users.size() * size_t(r.k));
  out->scores.resize(r.users.size() * size_t(r.k));
  s.recommend(r.users.data(), r.users.size(), r.k, r.exclude_seen, r.has_candidates ? r.candidates.data() : nullptr,
              r.candidates.size(), out->items.data(), out->scores.data());
}

Napi::Value ranked_to_js(Napi::Env env, Ranked& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("items", adopt<uint32_t, Napi::Uint32Array>(env, std::move(r.items)));
  o.Set("scores", adopt<float, Napi::Float32Array>(env, std::move(r.scores)));
  return o;
}

}  // namespace

// score(users: Uint32Array, items: Uint32Array) -> Promise<Float32Array> of probabilities
Napi::Value ModelObject::Score(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto pairs = std::make_shared<Pairs>(read_pairs(info));
    auto s = scorer();
    auto out = std::make_shared<std::vector<float>>(pairs->users.size());
    return PromiseWorker::Start(
        env, [=]() { s->score(pairs->users.data(), pairs->items.data(), pairs->users.size(), out->data()); },
        [=](Napi::Env e) -> Napi::Value { return adopt<float, Napi::Float32Array>(e, std::move(*out)); });
  });
}

Napi::Value ModelObject::ScoreSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Pairs pairs = read_pairs(info);
    std::vector<float> out(pairs.users.size());
    scorer()->score(pairs.users.data(), pairs.items.data(), pairs.users.size(), out.data());
    return adopt<float, Napi::Float32Array>(env, std::move(out));
  });
}

// recommend(users: Uint32Array, { k, excludeSeen, candidates? }) -> Promise<{ items, scores }>,
// both [users.length * k]; unfilled slots hold 0xFFFFFFFF and NaN.
Napi::Value ModelObject::Recommend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto req = std::make_shared<RecommendRequest>(read_request(info));
    auto s = scorer();
    auto out = std::make_shared<Ranked>();
    return PromiseWorker::Start(
        env, [=]() { run_request(*s, *req, out.get()); }, [=](Napi::Env e) { return ranked_to_js(e, *out); });
  });
}

Napi::Value ModelObject::RecommendSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RecommendRequest req = read_request(info);
    Ranked out;
    run_request(*scorer(), req, &out);
    return ranked_to_js(env, out);
  });
}

// setSeen(offsets: Uint32Array, items: Uint32Array): the items each user interacted with.
Napi::Value ModelObject::SetSeen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    scorer()->set_seen(get_u32(info[0], "offsets"), get_u32(info[1], "items"));
    return env.Undefined();
  });
}

// benchResident(users, items, iterations) -> Promise<Float64Array of seconds per iteration>:
// forward passes over pairs already copied to the device, timed each with a synchronisation, as
// NVIDIA's inference benchmark times its model call.
Napi::Value ModelObject::BenchResident(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto pairs = std::make_shared<Pairs>(read_pairs(info));
    const int iters = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 10;
    auto s = scorer();
    const int n = int(pairs->users.size());
    if (n > s->max_rows()) bad_option("users", "at most the model's maxBatch pairs");
    auto times = std::make_shared<std::vector<double>>();
    return PromiseWorker::Start(
        env,
        [=]() {
          Backend& be = s->backend();
          be.upload(s->resident_users(), pairs->users.data(), sizeof(uint32_t) * size_t(n));
          be.upload(s->resident_items(), pairs->items.data(), sizeof(uint32_t) * size_t(n));
          s->score_resident(s->resident_users(), s->resident_items(), n);  // warm-up
          be.sync();
          for (int i = 0; i < iters; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            s->score_resident(s->resident_users(), s->resident_items(), n);
            be.sync();
            times->push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
          }
        },
        [=](Napi::Env e) -> Napi::Value { return f64_array(e, times->data(), times->size()); });
  });
}

Napi::Value ModelObject::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto s = scorer();
    const BackendInfo b = s->backend().info();
    Napi::Object o = Napi::Object::New(env);
    o.Set("backend", b.name);
    o.Set("device", b.device);
    o.Set("threads", b.threads);
    o.Set("blas", b.blas);
    o.Set("maxBatch", s->max_rows());
    o.Set("hasSeen", s->has_seen());
    o.Set("peakMemory", double(s->backend().peak_memory()));
    o.Set("devicePeakMemory", double(s->backend().device_memory_peak()));
    return o;
  });
}

Napi::Value ModelObject::Close(const Napi::CallbackInfo& info) {
  s_.reset();  // in-flight calls hold their own reference
  return info.Env().Undefined();
}

// createModel({ backend, device, threads, model: {...}, params: Float32Array, half, tf32,
//               maxBatch, userPartsMemory }) -> Promise<Model>
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) bad_option("createModel", "called with an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    const std::string backend = get_string(o, "backend", "cpu");
    const int device = int(get_int(o, "device", 0));
    const int threads = int(get_int(o, "threads", 0));
    const ModelConfig cfg = model_config_from(get_object(o, "model"));
    auto params = std::make_shared<std::vector<float>>(get_f32(o.Get("params"), "params"));
    ScorerOptions opt;
    opt.half = get_bool(o, "half", false);
    opt.tf32 = get_bool(o, "tf32", true);
    opt.max_rows = int(get_int(o, "maxBatch", 65536));
    if (opt.max_rows < 1 || opt.max_rows > (1 << 26)) bad_option("maxBatch", "an integer in 1..67108864");
    const double part_bytes = get_number(o, "userPartsMemory", double(opt.user_parts_max_bytes));
    if (!(part_bytes >= 0)) bad_option("userPartsMemory", "a number of bytes >= 0");
    opt.user_parts_max_bytes = size_t(part_bytes);
    auto built = std::make_shared<std::unique_ptr<Scorer>>();
    return PromiseWorker::Start(
        env, [=]() { *built = std::make_unique<Scorer>(create_backend(backend, device, threads), cfg, *params, opt); },
        [=](Napi::Env e) -> Napi::Value { return ModelObject::Wrap(e, std::move(*built)); });
  });
}

}  // namespace ncf::js
