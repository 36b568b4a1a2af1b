#include "trainer_object.h"

#include <chrono>
#include <cstdio>

#include "../core/plugins.h"
#include "convert.h"
#include "functions.h"

namespace ncf::js {

Napi::FunctionReference TrainerObject::constructor;

Napi::Function TrainerObject::Define(Napi::Env env) {
  Napi::Function f = DefineClass(env, "Trainer",
                                 {
                                     InstanceMethod("runEpoch", &TrainerObject::RunEpoch),
                                     InstanceMethod("evaluate", &TrainerObject::Evaluate),
                                     InstanceMethod("getParams", &TrainerObject::GetParams),
                                     InstanceMethod("setParams", &TrainerObject::SetParams),
                                     InstanceMethod("getOptimizerState", &TrainerObject::GetOptimizerState),
                                     InstanceMethod("setOptimizerState", &TrainerObject::SetOptimizerState),
                                     InstanceMethod("cancel", &TrainerObject::Cancel),
                                     InstanceMethod("close", &TrainerObject::Close),
                                     InstanceAccessor("info", &TrainerObject::Info, nullptr),
                                     InstanceAccessor("layout", &TrainerObject::Layout, nullptr),
                                 });
  constructor = Napi::Persistent(f);
  constructor.SuppressDestruct();
  return f;
}

TrainerObject::TrainerObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerObject>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    Napi::TypeError::New(info.Env(), "Trainer objects are made by createTrainer()").ThrowAsJavaScriptException();
    return;
  }
  t_.reset(info[0].As<Napi::External<Trainer>>().Data());
}

Napi::Object TrainerObject::Wrap(Napi::Env env, std::unique_ptr<Trainer> t) {
  return constructor.New({Napi::External<Trainer>::New(env, t.release())});
}

Trainer& TrainerObject::trainer() {
  if (!t_) fail(ErrorCode::InvalidArgument, "the trainer was closed");
  return *t_;
}

void TrainerObject::acquire() {
  trainer();
  bool expected = false;
  if (!busy_->compare_exchange_strong(expected, true))
    fail(ErrorCode::InvalidArgument, "the trainer is busy with another call; await it first");
}

// runEpoch(epoch, onProgress?(done, total)) -> Promise<{ samples, steps, loss, seconds, lossScale }>
Napi::Value TrainerObject::RunEpoch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsNumber()) bad_option("epoch", "a number");
    const uint32_t epoch = info[0].As<Napi::Number>().Uint32Value();
    acquire();
    Napi::ThreadSafeFunction tsfn;
    const bool report = info.Length() > 1 && info[1].IsFunction();
    if (report) tsfn = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "ncf-native progress", 0, 1);
    auto t = t_;
    auto busy = busy_;
    auto cancel = cancel_;
    cancel->store(false);
    auto stats = std::make_shared<EpochStats>();
    return PromiseWorker::Start(
        env,
        [=]() {
          using clock = std::chrono::steady_clock;
          auto last = clock::now();
          *stats = t->run_epoch(epoch, [&](uint64_t done, uint64_t total) {
            if (cancel->load()) return false;
            const auto now = clock::now();
            if (report && (done == total || now - last >= std::chrono::milliseconds(100))) {
              last = now;
              auto* p = new std::pair<uint64_t, uint64_t>(done, total);
              tsfn.NonBlockingCall(p, [](Napi::Env e, Napi::Function f, std::pair<uint64_t, uint64_t>* d) {
                f.Call({Napi::Number::New(e, double(d->first)), Napi::Number::New(e, double(d->second))});
                delete d;
              });
            }
            return true;
          });
        },
        [=](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("samples", double(stats->samples));
          o.Set("steps", double(stats->steps));
          o.Set("loss", stats->loss);
          o.Set("seconds", stats->seconds);
          o.Set("lossScale", double(stats->loss_scale));
          o.Set("cancelled", cancel->load());
          return o;
        },
        [=]() mutable {
          busy->store(false);
          if (report) tsfn.Release();
        });
  });
}

// evaluate() -> Promise<{ hr, ndcg, users, seconds }>
Napi::Value TrainerObject::Evaluate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    acquire();
    auto t = t_;
    auto busy = busy_;
    auto result = std::make_shared<EvalStats>();
    return PromiseWorker::Start(
        env, [=]() { *result = t->evaluate(); },
        [=](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("hr", result->hr);
          o.Set("ndcg", result->ndcg);
          o.Set("users", double(result->users));
          o.Set("seconds", result->seconds);
          return o;
        },
        [=]() { busy->store(false); });
  });
}

Napi::Value TrainerObject::GetParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    acquire();
    auto t = t_;
    auto busy = busy_;
    auto out = std::make_shared<std::vector<float>>();
    return PromiseWorker::Start(
        env, [=]() { *out = t->params(); },
        [=](Napi::Env e) -> Napi::Value { return adopt<float, Napi::Float32Array>(e, std::move(*out)); },
        [=]() { busy->store(false); });
  });
}

Napi::Value TrainerObject::SetParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto params = std::make_shared<std::vector<float>>(get_f32(info[0], "params"));
    acquire();
    auto t = t_;
    auto busy = busy_;
    return PromiseWorker::Start(
        env, [=]() { t->set_params(*params); }, [](Napi::Env e) -> Napi::Value { return e.Undefined(); },
        [=]() { busy->store(false); });
  });
}

Napi::Value TrainerObject::GetOptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    acquire();
    auto t = t_;
    auto busy = busy_;
    auto m = std::make_shared<std::vector<float>>();
    auto v = std::make_shared<std::vector<float>>();
    auto step = std::make_shared<uint64_t>(0);
    return PromiseWorker::Start(
        env, [=]() { t->optimizer_state(m.get(), v.get(), step.get()); },
        [=](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("m", adopt<float, Napi::Float32Array>(e, std::move(*m)));
          o.Set("v", adopt<float, Napi::Float32Array>(e, std::move(*v)));
          o.Set("step", double(*step));
          return o;
        },
        [=]() { busy->store(false); });
  });
}

Napi::Value TrainerObject::SetOptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) bad_option("state", "an object { m, v, step }");
    Napi::Object o = info[0].As<Napi::Object>();
    auto m = std::make_shared<std::vector<float>>(get_f32(o.Get("m"), "m"));
    auto v = std::make_shared<std::vector<float>>(get_f32(o.Get("v"), "v"));
    const uint64_t step = uint64_t(get_int(o, "step", 0));
    acquire();
    auto t = t_;
    auto busy = busy_;
    return PromiseWorker::Start(
        env, [=]() { t->set_optimizer_state(*m, *v, step); }, [](Napi::Env e) -> Napi::Value { return e.Undefined(); },
        [=]() { busy->store(false); });
  });
}

Napi::Value TrainerObject::Cancel(const Napi::CallbackInfo& info) {
  cancel_->store(true);
  return info.Env().Undefined();
}

Napi::Value TrainerObject::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (busy_->load()) fail(ErrorCode::InvalidArgument, "cannot close the trainer while a call is running");
    t_.reset();
    return env.Undefined();
  });
}

Napi::Value TrainerObject::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Trainer& t = trainer();
    const BackendInfo b = t.backend().info();
    Napi::Object o = Napi::Object::New(env);
    o.Set("backend", b.name);
    o.Set("device", b.device);
    o.Set("threads", b.threads);
    o.Set("blas", b.blas);
    o.Set("tf32", b.tf32);
    o.Set("rank", t.rank());
    o.Set("worldSize", t.world_size());
    o.Set("communicator", t.comm_description());
    o.Set("seed", double(t.seed()));
    o.Set("stepsPerEpoch", double(t.steps_per_epoch()));
    o.Set("samplesPerEpoch", double(t.samples_per_epoch()));
    char fp[17];
    snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(t.fingerprint()));
    o.Set("fingerprint", std::string(fp));
    const char* first = t.first_layer() == FirstLayer::Parts ? " (first layer by parts)" : " (first layer per row)";
    o.Set("kernels", std::string(t.fused_training() ? "fused training" : std::string("op chain training") + first) + ", " +
                         (t.fused_evaluation() ? "fused" : "op chain") + " evaluation" +
                         (t.step_graphs() ? ", steps as CUDA Graphs" : "") +
                         (t.autotune() ? ", kernel forms timed on the first steps" : ""));
    o.Set("autotune", t.backend().autotune_report());
    o.Set("peakMemory", double(t.backend().peak_memory()));
    o.Set("devicePeakMemory", double(t.backend().device_memory_peak()));
    o.Set("deviceMemory", double(b.memory_total));
    return o;
  });
}

Napi::Value layout_to_js(Napi::Env env, const ParamLayout& L) {
    Napi::Array out = Napi::Array::New(env);
    for (size_t i = 0; i < L.tensors.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", L.tensors[i].name);
      Napi::Array shape = Napi::Array::New(env);
      for (size_t d = 0; d < L.tensors[i].shape.size(); ++d) shape.Set(uint32_t(d), double(L.tensors[i].shape[d]));
      o.Set("shape", shape);
      o.Set("offset", double(L.tensors[i].offset));
      o.Set("count", double(L.tensors[i].count));
      out.Set(uint32_t(i), o);
    }
    return out;
}

Napi::Value TrainerObject::Layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value { return layout_to_js(env, trainer().layout()); });
}

ModelConfig model_config_from(const Napi::Object& o) {
  ModelConfig c;
  const int64_t users = get_int(o, "nUsers", 0), items = get_int(o, "nItems", 0);
  if (users < 1 || users > 0xFFFFFFF0ll) bad_option("nUsers", "a positive count");
  if (items < 1 || items > 0xFFFFFFF0ll) bad_option("nItems", "a positive count");
  c.n_users = uint32_t(users);
  c.n_items = uint32_t(items);
  c.factors = int(get_int(o, "factors", 64));
  c.layers = get_int_list(o, "layers", {256, 256, 128, 64});
  c.dropout = float(get_number(o, "dropout", 0.5));
  c.validate();
  return c;
}

// paramLayout({ nUsers, nItems, factors, layers, dropout }) -> [{ name, shape, offset, count }]
Napi::Value ParamLayoutJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) bad_option("paramLayout", "called with a model configuration");
    return layout_to_js(env, ParamLayout::build(model_config_from(info[0].As<Napi::Object>())));
  });
}

// createTrainer({ backend, device, threads, distributed, model: {...}, train: {...},
//                 data: { offsets, items, testItems, testNegatives, storedNegatives } })
//   -> Promise<Trainer>
Napi::Value CreateTrainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) bad_option("createTrainer", "called with an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    const std::string backend = get_string(o, "backend", "cpu");
    const int device = int(get_int(o, "device", 0));
    const int threads = int(get_int(o, "threads", 0));
    const bool distributed = get_bool(o, "distributed", false);
    const ModelConfig cfg = model_config_from(get_object(o, "model"));
    Napi::Object tr = get_object(o, "train");
    TrainOptions opt;
    opt.batch_size = int(get_int(tr, "batchSize", opt.batch_size));
    opt.negatives = int(get_int(tr, "negatives", opt.negatives));
    opt.verify_negatives = get_bool(tr, "verifyNegatives", false);
    opt.lr = get_number(tr, "lr", opt.lr);
    opt.beta1 = get_number(tr, "beta1", opt.beta1);
    opt.beta2 = get_number(tr, "beta2", opt.beta2);
    opt.eps = get_number(tr, "eps", opt.eps);
    opt.seed = uint64_t(get_int(tr, "seed", 0));
    opt.amp = get_bool(tr, "amp", false);
    opt.static_loss_scale = float(get_number(tr, "lossScale", 0));
    opt.tf32 = get_bool(tr, "tf32", true);
    opt.valid_users_per_batch = int(get_int(tr, "validUsersPerBatch", opt.valid_users_per_batch));
    opt.topk = int(get_int(tr, "topk", opt.topk));
    opt.valid_negatives = int(get_int(tr, "validNegatives", opt.valid_negatives));
    opt.step_graphs = get_bool(tr, "stepGraphs", false);
    opt.autotune = get_bool(tr, "autotune", false);

    Napi::Object d = get_object(o, "data");
    struct Arrays {
      std::vector<uint32_t> offsets, items, test_items, test_negatives;
    };
    auto arrays = std::make_shared<Arrays>();
    arrays->offsets = get_u32(d.Get("offsets"), "data.offsets");
    arrays->items = get_u32(d.Get("items"), "data.items");
    arrays->test_items = get_u32(d.Get("testItems"), "data.testItems");
    arrays->test_negatives = get_u32(d.Get("testNegatives"), "data.testNegatives");
    const int stored = int(get_int(d, "storedNegatives", 100));
    if (arrays->offsets.size() != size_t(cfg.n_users) + 1 || arrays->offsets.back() != arrays->items.size() ||
        arrays->test_items.size() != cfg.n_users ||
        arrays->test_negatives.size() != size_t(cfg.n_users) * size_t(stored))
      fail(ErrorCode::InvalidArgument, "the dataset arrays do not match its user count");
    // MPI is started here, on the main thread; the trainer is built on a worker.
    if (distributed) mpi_world();
    auto built = std::make_shared<std::unique_ptr<Trainer>>();
    return PromiseWorker::Start(
        env,
        [=]() {
          HostDataset hd;
          hd.offsets = arrays->offsets.data();
          hd.items = arrays->items.data();
          hd.test_items = arrays->test_items.data();
          hd.test_negatives = arrays->test_negatives.data();
          hd.stored_negatives = stored;
          hd.n_users = cfg.n_users;
          hd.n_items = cfg.n_items;
          hd.n_pos = arrays->items.size();
          std::unique_ptr<Backend> be = create_backend(backend, device, threads);
          std::unique_ptr<Communicator> comm;
          if (distributed) comm = create_trainer_communicator(*be);
          *built = std::make_unique<Trainer>(std::move(be), cfg, opt, hd, std::move(comm));
        },
        [=](Napi::Env e) -> Napi::Value { return TrainerObject::Wrap(e, std::move(*built)); });
  });
}

}  // namespace ncf::js
