#include "op_runner.h"

#include <algorithm>
#include <limits>

#include "../core/backend_array.h"
#include "../core/network.h"
#include "../core/plugins.h"
#include "convert.h"
#include "functions.h"

namespace ncf::js {

namespace {

// Host <-> backend copies for one op call; fp16 inputs are converted on the backend.
class Io {
 public:
  explicit Io(Backend& be) : be_(be) {}
  float* f32(const std::vector<float>& v) {
    f32_.emplace_back(be_, v.data(), v.size());
    return f32_.back().get();
  }
  float* f32_zeros(size_t n) {
    f32_.emplace_back(be_, n);
    return f32_.back().get();
  }
  uint32_t* u32(const std::vector<uint32_t>& v) {
    u32_.emplace_back(be_, v.data(), v.size());
    return u32_.back().get();
  }
  uint8_t* u8(const std::vector<uint8_t>& v) {
    u8_.emplace_back(be_, v.data(), v.size());
    return u8_.back().get();
  }
  // A matrix of rows x cols from host floats, as fp16 when half.
  Mat mat(const std::vector<float>& v, int64_t rows, int64_t cols, bool half) {
    if (v.size() != size_t(rows * cols))
      fail(ErrorCode::InvalidArgument, "expected " + std::to_string(rows * cols) + " values, got " + std::to_string(v.size()));
    float* p = f32(v);
    if (!half) return Mat{p, DType::F32, rows, cols};
    u16_.emplace_back(be_, v.size());
    be_.to_half(p, u16_.back().get(), v.size());
    return Mat{u16_.back().get(), DType::F16, rows, cols};
  }
  Mat mat_zeros(int64_t rows, int64_t cols, bool half) { return mat(std::vector<float>(size_t(rows * cols), 0.0f), rows, cols, half); }
  void* half_copy(const float* p, size_t n) {
    u16_.emplace_back(be_, n);
    be_.to_half(p, u16_.back().get(), n);
    return u16_.back().get();
  }
  std::vector<float> read(const Mat& m) {
    const size_t n = size_t(m.rows * m.cols);
    std::vector<float> out(n);
    if (m.dtype == DType::F32) {
      be_.download(out.data(), m.data, n * 4);
    } else {
      float* tmp = f32_zeros(n);
      be_.from_half(m.data, tmp, n);
      be_.download(out.data(), tmp, n * 4);
    }
    return out;
  }
  std::vector<float> read(const float* p, size_t n) {
    std::vector<float> out(n);
    be_.download(out.data(), p, n * 4);
    return out;
  }
  std::vector<uint32_t> read_u32(const uint32_t* p, size_t n) {
    std::vector<uint32_t> out(n);
    be_.download(out.data(), p, n * 4);
    return out;
  }
  // A zeroed live-unit mask for rows x cols, and its bytes read back.
  UnitMask unit_mask(int64_t rows, int64_t cols) {
    u8_.emplace_back(be_, UnitMask::bytes_for(rows, cols));
    return UnitMask{u8_.back().get(), UnitMask::ld_for(cols)};
  }
  std::vector<uint8_t> read(const UnitMask& m, int64_t rows) {
    std::vector<uint8_t> out(size_t(rows) * size_t(m.ld) / 8);
    be_.download(out.data(), m.bits, out.size());
    return out;
  }

 private:
  Backend& be_;
  std::vector<BackendArray<float>> f32_;
  std::vector<BackendArray<uint32_t>> u32_;
  std::vector<BackendArray<uint16_t>> u16_;
  std::vector<BackendArray<uint8_t>> u8_;
};

Napi::Object opts(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) bad_option("op", "called with an options object");
  return info[0].As<Napi::Object>();
}

Dropout dropout_from(const Napi::Object& o) {
  const float p = float(get_number(o, "dropout", 0.0));
  return make_dropout(p, uint64_t(get_int(o, "seed", 0)), int(get_int(o, "layer", 0)), uint32_t(get_int(o, "epoch", 0)),
                      uint64_t(get_int(o, "pos0", 0)));
}

Napi::Float32Array out(Napi::Env env, std::vector<float>&& v) { return adopt<float, Napi::Float32Array>(env, std::move(v)); }

// The (users[r], items[r]) pairs of a network op's options: non-empty, of equal length and within
// the model's users and items.
struct Pairs {
  std::vector<uint32_t> users, items;
};
Pairs pairs_from(const Napi::Object& o, const ModelConfig& cfg) {
  Pairs p{get_u32(o.Get("users"), "users"), get_u32(o.Get("items"), "items")};
  if (p.users.empty() || p.users.size() != p.items.size()) bad_option("users/items", "non-empty and of equal length");
  for (size_t r = 0; r < p.users.size(); ++r)
    if (p.users[r] >= cfg.n_users || p.items[r] >= cfg.n_items) bad_option("users/items", "indices within nUsers and nItems");
  return p;
}

// gather_add_relu's operands from options a, ia, b, ib (named with `prefix` in errors): tables a
// and b of rows of `cols` values, and per output row an index into each, of equal length and
// within the tables' rows.
struct GatherOperands {
  std::vector<float> a, b;
  std::vector<uint32_t> ia, ib;
};
GatherOperands gather_operands_from(const Napi::Object& o, int cols, const std::string& prefix) {
  GatherOperands g{get_f32(o.Get("a"), (prefix + "a").c_str()), get_f32(o.Get("b"), (prefix + "b").c_str()),
                   get_u32(o.Get("ia"), (prefix + "ia").c_str()), get_u32(o.Get("ib"), (prefix + "ib").c_str())};
  if (g.ia.size() != g.ib.size()) bad_option(prefix + "ia/ib", "of equal length");
  for (size_t r = 0; r < g.ia.size(); ++r)
    if (size_t(g.ia[r]) >= g.a.size() / size_t(cols) || size_t(g.ib[r]) >= g.b.size() / size_t(cols))
      bad_option(prefix + "ia/ib", "row indices within a and b");
  return g;
}

}  // namespace

Napi::Function OpRunner::Define(Napi::Env env) {
  return DefineClass(env, "OpRunner",
                     {
                         InstanceMethod("philox", &OpRunner::Philox),
                         InstanceMethod("sampleBatch", &OpRunner::SampleBatch),
                         InstanceMethod("embedForward", &OpRunner::EmbedForward),
                         InstanceMethod("embedBackward", &OpRunner::EmbedBackward),
                         InstanceMethod("linearForward", &OpRunner::LinearForward),
                         InstanceMethod("linearBackward", &OpRunner::LinearBackward),
                         InstanceMethod("hiddenForward", &OpRunner::HiddenForward),
                         InstanceMethod("hiddenBackward", &OpRunner::HiddenBackward),
                         InstanceMethod("liveUnits", &OpRunner::LiveUnits),
                         InstanceMethod("headForward", &OpRunner::HeadForward),
                         InstanceMethod("headForwardBackward", &OpRunner::HeadForwardBackward),
                         InstanceMethod("adamStep", &OpRunner::AdamStep),
                         InstanceMethod("overflowCheck", &OpRunner::OverflowCheck),
                         InstanceMethod("updateLossScale", &OpRunner::UpdateLossScale),
                         InstanceMethod("halfRoundTrip", &OpRunner::HalfRoundTrip),
                         InstanceMethod("evalRank", &OpRunner::EvalRank),
                         InstanceMethod("matmulNt", &OpRunner::MatmulNt),
                         InstanceMethod("addRow", &OpRunner::AddRow),
                         InstanceMethod("gatherAddRelu", &OpRunner::GatherAddRelu),
                         InstanceMethod("pairRowSums", &OpRunner::PairRowSums),
                         InstanceMethod("matmulNn", &OpRunner::MatmulNn),
                         InstanceMethod("splitForward", &OpRunner::SplitForward),
                         InstanceMethod("trainPass", &OpRunner::TrainPass),
                         InstanceAccessor("info", &OpRunner::Info, nullptr),
                     });
}

// new OpRunner({ backend: 'cpu' | 'cuda', device, threads, tf32, fused, maxBlocks })
// (fused: whether the fused ops run where they apply; unset, the backend's default. maxBlocks:
// the most blocks of the kernels that loop with the grid's stride, Backend::set_max_blocks;
// unset, the backend's default)
OpRunner::OpRunner(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OpRunner>(info) {
  guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(info.Env());
    be_ = create_backend(get_string(o, "backend", "cpu"), int(get_int(o, "device", 0)), int(get_int(o, "threads", 0)));
    be_->set_tf32(get_bool(o, "tf32", false));
    if (o.Has("fused")) be_->set_fused(get_bool(o, "fused", false));
    if (has(o, "maxBlocks")) {
      const int64_t blocks = get_int(o, "maxBlocks", 0);
      if (blocks < 0 || blocks > 999999) bad_option("maxBlocks", "a count from 0 to 999999 (as NCF_CUDA_MAX_BLOCKS)");
      be_->set_max_blocks(int(blocks));
    }
    return info.Env().Undefined();
  });
}

Napi::Value OpRunner::Info(const Napi::CallbackInfo& info) {
  const BackendInfo b = be_->info();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("backend", b.name);
  o.Set("device", b.device);
  o.Set("half", b.half);
  o.Set("tf32", b.tf32);
  return o;
}

// philox({ key: [lo, hi], counters: Uint32Array(4n) }) -> Uint32Array(4n)
Napi::Value OpRunner::Philox(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const uint64_t key = uint64_t(get_int(o, "keyLo", 0)) | (uint64_t(get_int(o, "keyHi", 0)) << 32);
    const std::vector<uint32_t> c = get_u32(o.Get("counters"), "counters");
    Io io(*be_);
    uint32_t* dc = io.u32(c);
    uint32_t* dout = io.u32(std::vector<uint32_t>(c.size()));
    be_->philox_fill(key, dc, dout, c.size() / 4);
    return adopt<uint32_t, Napi::Uint32Array>(info.Env(), io.read_u32(dout, c.size()));
  });
}

// sampleBatch({ offsets, items, nItems, negatives, verify, seed, epoch, pos0, n })
//   -> { users, items, labels, positions, samplesPerEpoch } (rows grouped by user)
Napi::Value OpRunner::SampleBatch(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const std::vector<uint32_t> offsets = get_u32(o.Get("offsets"), "offsets"), items = get_u32(o.Get("items"), "items");
    if (offsets.empty() || offsets.back() != items.size()) bad_option("offsets", "a CSR over items");
    std::vector<uint32_t> users(items.size());
    for (size_t u = 0; u + 1 < offsets.size(); ++u) std::fill(users.begin() + offsets[u], users.begin() + offsets[u + 1], uint32_t(u));
    const uint32_t n_items = uint32_t(get_int(o, "nItems", 0));
    const int n = int(get_int(o, "n", 0));
    Io io(*be_);
    TrainArrays d{io.u32(offsets), io.u32(items), io.u32(users), items.size(), uint32_t(offsets.size() - 1), n_items};
    const SampleStream s = make_sample_stream(uint64_t(get_int(o, "seed", 0)), uint32_t(get_int(o, "epoch", 0)),
                                              items.size(), int(get_int(o, "negatives", 4)), n_items,
                                              get_bool(o, "verify", false));
    uint32_t* du = io.u32(std::vector<uint32_t>(size_t(n)));
    uint32_t* di = io.u32(std::vector<uint32_t>(size_t(n)));
    float* dl = io.f32_zeros(size_t(n));
    uint32_t* dp = io.u32(std::vector<uint32_t>(size_t(n)));
    be_->sample_batch(d, s, uint64_t(get_int(o, "pos0", 0)), n, du, di, dl, dp);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("users", adopt<uint32_t, Napi::Uint32Array>(info.Env(), io.read_u32(du, size_t(n))));
    r.Set("items", adopt<uint32_t, Napi::Uint32Array>(info.Env(), io.read_u32(di, size_t(n))));
    r.Set("labels", out(info.Env(), io.read(dl, size_t(n))));
    r.Set("positions", adopt<uint32_t, Napi::Uint32Array>(info.Env(), io.read_u32(dp, size_t(n))));
    r.Set("samplesPerEpoch", double(s.n_samples));
    return r;
  });
}

namespace {
// The MLP tables (mlpUser [nUsers x half], mlpItem [nItems x half]) and pairs of the embedding ops.
struct MlpTables {
  std::vector<float> user, item;
  int half;
  Pairs pairs;
};
MlpTables read_mlp_tables(const Napi::Object& o) {
  MlpTables t{get_f32(o.Get("mlpUser"), "mlpUser"), get_f32(o.Get("mlpItem"), "mlpItem"), int(get_int(o, "half", 0)), {}};
  if (t.half < 1 || t.user.size() % size_t(t.half) != 0 || t.item.size() % size_t(t.half) != 0)
    bad_option("half/mlpUser/mlpItem", "a positive half dividing both tables' lengths");
  ModelConfig shape;
  shape.n_users = uint32_t(t.user.size() / size_t(t.half));
  shape.n_items = uint32_t(t.item.size() / size_t(t.half));
  t.pairs = pairs_from(o, shape);
  return t;
}
}  // namespace

// embedForward({ mlpUser, mlpItem, half, users, items, fp16, halfTables }) -> Float32Array mlpIn
//   (halfTables: with fp16 copies of the tables beside them, as under --amp)
Napi::Value OpRunner::EmbedForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const MlpTables t = read_mlp_tables(o);
    const int n = int(t.pairs.users.size());
    Io io(*be_);
    EmbedTables et;
    et.mlp_user = io.f32(t.user);
    et.mlp_item = io.f32(t.item);
    et.half = t.half;
    if (get_bool(o, "halfTables", false)) {
      et.mlp_user_half = io.half_copy(et.mlp_user, t.user.size());
      et.mlp_item_half = io.half_copy(et.mlp_item, t.item.size());
    }
    Mat mlp = io.mat_zeros(n, 2 * t.half, get_bool(o, "fp16", false));
    be_->embed_forward(et, io.u32(t.pairs.users), io.u32(t.pairs.items), mlp);
    return out(info.Env(), io.read(mlp));
  });
}

// embedBackward({ mlpUser, mlpItem, half, users, items, dMlpIn, fp16 }) -> { mlpUser, mlpItem }
// gradients (the tables give the gradients' shapes)
Napi::Value OpRunner::EmbedBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const MlpTables t = read_mlp_tables(o);
    const int n = int(t.pairs.users.size());
    Io io(*be_);
    Mat dx = io.mat(get_f32(o.Get("dMlpIn"), "dMlpIn"), n, 2 * t.half, get_bool(o, "fp16", false));
    EmbedGrads g;
    g.mlp_user = io.f32_zeros(t.user.size());
    g.mlp_item = io.f32_zeros(t.item.size());
    be_->embed_backward(io.u32(t.pairs.users), io.u32(t.pairs.items), dx, g);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("mlpUser", out(info.Env(), io.read(g.mlp_user, t.user.size())));
    r.Set("mlpItem", out(info.Env(), io.read(g.mlp_item, t.item.size())));
    return r;
  });
}

namespace {
LinearParams linear_from(Io& io, const Napi::Object& o, bool fp16) {
  const int in = int(get_int(o, "in", 0)), outw = int(get_int(o, "out", 0));
  const std::vector<float> w = get_f32(o.Get("w"), "w"), b = get_f32(o.Get("b"), "b");
  if (w.size() != size_t(in) * size_t(outw) || b.size() != size_t(outw)) bad_option("w/b", "sized out x in and out");
  LinearParams p;
  p.w = io.f32(w);
  p.b = io.f32(b);
  p.in = in;
  p.out = outw;
  if (fp16) {
    p.w_half = io.half_copy(p.w, w.size());
    p.b_half = io.half_copy(p.b, b.size());
  }
  return p;
}
}  // namespace

namespace {
// A layer's parameters and its input x [n x in] from the options.
struct LayerInput {
  LinearParams p;
  Mat x;
  int n;
};
LayerInput layer_input(Io& io, const Napi::Object& o, bool fp16) {
  LayerInput l;
  l.p = linear_from(io, o, fp16);
  const std::vector<float> x = get_f32(o.Get("x"), "x");
  l.n = int(x.size() / size_t(l.p.in));
  l.x = io.mat(x, l.n, l.p.in, fp16);
  return l;
}
}  // namespace

namespace {
// linear_forward on the options' layer (layer_input): returns y, and the live units in *live
// when it is given (a mask allocated in io for y's rows).
Mat forward_layer(Backend& be, Io& io, const Napi::Object& o, UnitMask* live) {
  const bool fp16 = get_bool(o, "fp16", false);
  const LayerInput l = layer_input(io, o, fp16);
  Mat y = io.mat_zeros(l.n, l.p.out, fp16);
  if (live) *live = io.unit_mask(l.n, l.p.out);
  be.linear_forward(l.x, l.p, dropout_from(o), y, live ? *live : UnitMask{});
  return y;
}
}  // namespace

// linearForward({ x, w, b, in, out, dropout, seed, layer, epoch, pos0, fp16 }) -> Float32Array y
Napi::Value OpRunner::LinearForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Io io(*be_);
    return out(info.Env(), io.read(forward_layer(*be_, io, opts(info), nullptr)));
  });
}

// liveUnits({ x, w, b, in, out, dropout..., fp16 }) -> Uint8Array: the live-unit mask linear_forward
// writes (UnitMask layout, rows of ld / 8 bytes)
Napi::Value OpRunner::LiveUnits(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Io io(*be_);
    UnitMask live;
    const Mat y = forward_layer(*be_, io, opts(info), &live);
    return adopt<uint8_t, Napi::Uint8Array>(info.Env(), io.read(live, y.rows));
  });
}

namespace {
// A LayerBelow from { y, dropout, seed, layer, epoch, pos0, mask } (a layer's output [n x cols],
// its dropout, and optionally its live units as a UnitMask's bytes), with a zeroed bias gradient.
LayerBelow layer_below_from(Io& io, const Napi::Object& o, const std::string& name, int64_t n, int64_t cols, bool fp16) {
  LayerBelow l;
  l.y = io.mat(get_f32(o.Get("y"), (name + ".y").c_str()), n, cols, fp16);
  l.dropout = dropout_from(o);
  l.grad_b = io.f32_zeros(size_t(cols));
  if (has(o, "mask")) {
    const std::vector<uint8_t> host = get_array<uint8_t>(o.Get("mask"), (name + ".mask").c_str(), napi_uint8_array);
    if (host.size() != UnitMask::bytes_for(n, cols)) bad_option(name + ".mask", "rows x (columns rounded up to 128) bits");
    l.mask = UnitMask{io.u8(host), UnitMask::ld_for(cols)};
  }
  return l;
}
}  // namespace

// linearBackward({ dy, y, x, w, b, in, out, dropout..., wantDx, fp16, below })
//   -> { dz, dx, gradW, gradB, gradBBelow }: relu_dropout_backward of dy, then linear_backward. With
//   below: { y, dropout, seed, layer, epoch, pos0, mask } (the layer below's output, its dropout,
//   and, optionally, its live units as a UnitMask's bytes), dx is taken through the layer below
//   and its bias gradient returned as gradBBelow.
Napi::Value OpRunner::LinearBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const bool fp16 = get_bool(o, "fp16", false);
    Io io(*be_);
    const LayerInput l = layer_input(io, o, fp16);
    const LinearParams& p = l.p;
    const int n = l.n;
    Mat y = io.mat(get_f32(o.Get("y"), "y"), n, p.out, fp16);
    Mat dy = io.mat(get_f32(o.Get("dy"), "dy"), n, p.out, fp16);
    const bool want_dx = get_bool(o, "wantDx", true);
    Mat dx = want_dx ? io.mat_zeros(n, p.in, fp16) : Mat{};
    float* gw = io.f32_zeros(size_t(p.in) * size_t(p.out));
    float* gb = io.f32_zeros(size_t(p.out));
    be_->relu_dropout_backward(dy, y, UnitMask{}, dropout_from(o), gb);
    const bool has_below = has(o, "below");
    LayerBelow below;
    if (has_below) {
      if (!want_dx) bad_option("below", "given only with wantDx");
      below = layer_below_from(io, get_object(o, "below"), "below", n, p.in, fp16);
    }
    be_->linear_backward(dy, l.x, p, dx, gw, has_below ? &below : nullptr);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("dz", out(info.Env(), io.read(dy)));
    if (want_dx) r.Set("dx", out(info.Env(), io.read(dx)));
    r.Set("gradW", out(info.Env(), io.read(gw, size_t(p.in) * size_t(p.out))));
    r.Set("gradB", out(info.Env(), io.read(gb, size_t(p.out))));
    if (has_below) r.Set("gradBBelow", out(info.Env(), io.read(below.grad_b, size_t(p.in))));
    return r;
  });
}

namespace {
// The elements of an array option, each an object.
std::vector<Napi::Object> object_list(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsArray()) bad_option(key, "an array of objects");
  const Napi::Array a = v.As<Napi::Array>();
  std::vector<Napi::Object> list;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const Napi::Value e = a.Get(i);
    if (!e.IsObject()) bad_option(key, "an array of objects");
    list.push_back(e.As<Napi::Object>());
  }
  return list;
}

// Hidden layers 1 .. L - 1 from an array option of { w, b, in, out } (each layer's in the last one's
// out), as hidden_forward and hidden_backward take them: L entries, [0] only layer 0's width (out).
std::vector<LinearParams> hidden_layers_from(Io& io, const std::vector<Napi::Object>& layer_opts, bool fp16) {
  if (layer_opts.empty()) bad_option("layers", "at least one layer");
  std::vector<LinearParams> layers(1);
  for (const Napi::Object& lo : layer_opts) layers.push_back(linear_from(io, lo, fp16));
  layers[0].out = layers[1].in;
  for (size_t l = 2; l < layers.size(); ++l)
    if (layers[l].in != layers[l - 1].out) bad_option("layers", "each layer's in equal to the last one's out");
  return layers;
}
}  // namespace

// hiddenForward({ x, layers: [{ w, b, in, out, dropout, seed, layer, epoch, pos0, mask }, ...], fp16,
//   fused }) -> { act: [Float32Array, ...], masks: [Uint8Array | null, ...], fusedLayers }:
//   hidden layers 1 .. L - 1 (`layers`, L - 1 of them, each with its dropout, and its live units
//   kept where mask is true) from x, layer 0's output, as Network runs them: Backend::hidden_forward
//   for the leading layers it takes (fusedLayers of them; none with fused false), linear_forward for
//   the rest. act[l] for l = 0 .. L - 1 (the first as given) and the masks (null where not kept).
//   With parts ({ a, ia, b, ib, dropout, seed, layer, epoch, pos0, mask, training }: the first
//   layer's parts, [rows x width] each, each pair's row in them, and the first layer's dropout and
//   whether its live units are kept) instead of x: layer 0's output from them (gather_add_relu;
//   fp16 tables with fp16), inside Backend::hidden_forward where it takes them (partsFused;
//   without training the op then writes only the last of the layers it takes: act[0] .. act[K - 1]
//   come back as zeros), else by gather_add_relu first.
Napi::Value OpRunner::HiddenForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const bool fp16 = get_bool(o, "fp16", false);
    Io io(*be_);
    const std::vector<Napi::Object> layer_opts = object_list(o, "layers");
    const std::vector<LinearParams> layers = hidden_layers_from(io, layer_opts, fp16);
    const int L = int(layers.size());
    std::vector<Dropout> drop(1);
    std::vector<UnitMask> masks(1);
    for (const Napi::Object& lo : layer_opts) drop.push_back(dropout_from(lo));
    const int width = layers[1].in;
    const bool has_parts = has(o, "parts");
    FirstLayerParts parts;
    std::vector<float> x;
    int64_t n = 0;
    if (has_parts) {
      const Napi::Object po = o.Get("parts").As<Napi::Object>();
      const GatherOperands g = gather_operands_from(po, width, "parts.");
      if (g.a.size() % size_t(width) || g.b.size() % size_t(width)) bad_option("parts.a/b", "rows of layers[0].in values");
      n = int64_t(g.ia.size());
      // (With fp16, the parts' fp16 copies, as --amp evaluation takes them.)
      parts = FirstLayerParts{io.mat(g.a, int64_t(g.a.size()) / width, width, fp16), io.u32(g.ia),
                              io.mat(g.b, int64_t(g.b.size()) / width, width, fp16), io.u32(g.ib), get_bool(po, "training", false)};
      drop[0] = dropout_from(po);
      if (get_bool(po, "mask", false)) masks[0] = io.unit_mask(n, width);
    } else {
      x = get_f32(o.Get("x"), "x");
      n = int64_t(x.size()) / width;
    }
    std::vector<Mat> act{has_parts ? io.mat_zeros(n, width, fp16) : io.mat(x, n, width, fp16)};
    for (int l = 1; l < L; ++l) {
      act.push_back(io.mat_zeros(n, layers[size_t(l)].out, fp16));
      masks.push_back(get_bool(layer_opts[size_t(l) - 1], "mask", false) ? io.unit_mask(n, layers[size_t(l)].out) : UnitMask{});
    }
    // As Network::hidden_layers_forward: the parts inside the fused op, else gather_add_relu first.
    const bool try_fused = get_bool(o, "fused", true);
    int fused = try_fused && has_parts ? be_->hidden_forward(act, layers, drop, masks, &parts) : 0;
    const bool parts_fused = fused > 0;
    if (has_parts && !fused) be_->gather_add_relu(parts.a, parts.ia, parts.b, parts.ib, drop[0], act[0], masks[0]);
    if (try_fused && !fused) fused = be_->hidden_forward(act, layers, drop, masks, nullptr);
    for (int l = fused + 1; l < L; ++l)
      be_->linear_forward(act[size_t(l) - 1], layers[size_t(l)], drop[size_t(l)], act[size_t(l)], masks[size_t(l)]);
    Napi::Array act_out = Napi::Array::New(info.Env()), mask_out = Napi::Array::New(info.Env());
    for (int l = 0; l < L; ++l) {
      act_out.Set(uint32_t(l), out(info.Env(), io.read(act[size_t(l)])));
      const UnitMask& m = masks[size_t(l)];
      mask_out.Set(uint32_t(l), m.empty() ? info.Env().Null() : Napi::Value(adopt<uint8_t, Napi::Uint8Array>(info.Env(), io.read(m, n))));
    }
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("act", act_out);
    r.Set("masks", mask_out);
    r.Set("fusedLayers", fused);
    r.Set("partsFused", parts_fused);
    return r;
  });
}

// hiddenBackward({ dz, layers: [{ w, b, in, out }, ...], below: [{ y, mask, dropout, seed, layer,
//   epoch, pos0 }, ...], fp16, fused, users, nUsers }) -> { dz: [Float32Array, ...], gradB: [...],
//   fused, userSums?, userSumsFused? }:
//   Backend::hidden_backward for hidden layers 1 .. L - 1 (`layers`, L - 1 of them) from dz, the
//   gradient at the last one's output, through layers 0 .. L - 2 (`below`, as linearBackward's
//   below): dz[l] for l = 0 .. L - 1 (the last as given) and each layer below's bias gradient. Where
//   the backend has no fused form, or fused is false, the chain it replaces: linear_backward per
//   layer with the layer below's output as its input. With users (one per row, ascending, below
//   nUsers): dz[0]'s per-user sums ([nUsers x width], in dz's type), from the op where it took them
//   (userSumsFused), else from pair_row_sums after it.
Napi::Value OpRunner::HiddenBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const bool fp16 = get_bool(o, "fp16", false);
    Io io(*be_);
    const std::vector<LinearParams> layers = hidden_layers_from(io, object_list(o, "layers"), fp16);
    const std::vector<Napi::Object> below_opts = object_list(o, "below");
    const int L = int(layers.size());
    if (below_opts.size() != size_t(L - 1)) bad_option("below", "one per layer in layers");
    const std::vector<float> top = get_f32(o.Get("dz"), "dz");
    const int64_t n = int64_t(top.size()) / layers.back().out;
    std::vector<Mat> dz;
    std::vector<LayerBelow> below;
    for (int l = 0; l < L - 1; ++l) {
      dz.push_back(io.mat_zeros(n, layers[size_t(l)].out, fp16));
      below.push_back(layer_below_from(io, below_opts[size_t(l)], "below[" + std::to_string(l) + "]", n, layers[size_t(l)].out, fp16));
    }
    dz.push_back(io.mat(top, n, layers.back().out, fp16));
    const bool has_users = has(o, "users");
    UserRowSums user_sums;
    if (has_users) {
      const std::vector<uint32_t> users = get_u32(o.Get("users"), "users");
      const int64_t n_users = get_int(o, "nUsers", 0);
      if (int64_t(users.size()) != n) bad_option("users", "one per row of dz");
      if (n_users < 1 || !std::all_of(users.begin(), users.end(), [&](uint32_t u) { return u < n_users; }))
        bad_option("users/nUsers", "users below nUsers");
      if (!std::is_sorted(users.begin(), users.end())) bad_option("users", "in ascending order");
      // Garbage in the sums first: the op must overwrite them.
      user_sums = UserRowSums{io.u32(users), io.mat(std::vector<float>(size_t(n_users) * size_t(layers[0].out), 7.0f), n_users, layers[0].out, fp16)};
    }
    const HiddenBackwardRun run =
        get_bool(o, "fused", true) ? be_->hidden_backward(dz, layers, below, has_users ? &user_sums : nullptr) : HiddenBackwardRun{};
    const bool fused = run.fused;
    if (!fused)
      for (int l = L - 1; l >= 1; --l) {
        const LinearParams& p = layers[size_t(l)];
        float* gw = io.f32_zeros(size_t(p.in) * size_t(p.out));
        be_->linear_backward(dz[size_t(l)], below[size_t(l) - 1].y, p, dz[size_t(l) - 1], gw, &below[size_t(l) - 1]);
      }
    Napi::Array dz_out = Napi::Array::New(info.Env()), grad_b = Napi::Array::New(info.Env());
    for (int l = 0; l < L; ++l) dz_out.Set(uint32_t(l), out(info.Env(), io.read(dz[size_t(l)])));
    for (int l = 0; l < L - 1; ++l)
      grad_b.Set(uint32_t(l), out(info.Env(), io.read(below[size_t(l)].grad_b, size_t(layers[size_t(l)].out))));
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("dz", dz_out);
    r.Set("gradB", grad_b);
    r.Set("fused", fused);
    if (has_users) {
      if (!run.user_sums) {  // pair_row_sums' user side from dz[0] (its items: all one)
        Mat item_sums = io.mat_zeros(1, layers[0].out, false);
        be_->pair_row_sums(dz[0], nullptr, user_sums.users, true, io.u32(std::vector<uint32_t>(size_t(n), 0)), user_sums.sums,
                           item_sums);
      }
      r.Set("userSums", out(info.Env(), io.read(user_sums.sums)));
      r.Set("userSumsFused", run.user_sums);
    }
    return r;
  });
}

namespace {
// The output unit's inputs: the GMF tables mfUser [* x factors] and mfItem, the pairs, the MLP
// output mlp [pairs x (w.length - factors)], w and b.
struct HeadIo {
  HeadParams p;
  EmbedTables t;
  const uint32_t* users;
  const uint32_t* items;
  Mat mlp;
  int n;
  size_t mu_size, mi_size;
};
HeadIo head_from(Io& io, const Napi::Object& o, bool fp16) {
  const std::vector<float> w = get_f32(o.Get("w"), "w"), b = get_f32(o.Get("b"), "b"), m = get_f32(o.Get("mlp"), "mlp");
  const std::vector<float> mu = get_f32(o.Get("mfUser"), "mfUser"), mi = get_f32(o.Get("mfItem"), "mfItem");
  const int f = int(get_int(o, "factors", 0)), width = int(w.size()) - f;
  if (f < 1 || width < 1 || b.size() != 1 || mu.size() % size_t(f) != 0 || mi.size() % size_t(f) != 0)
    bad_option("w/b/factors/mfUser/mfItem", "consistent");
  ModelConfig shape;
  shape.n_users = uint32_t(mu.size() / size_t(f));
  shape.n_items = uint32_t(mi.size() / size_t(f));
  const Pairs pairs = pairs_from(o, shape);
  const int n = int(pairs.users.size());
  if (m.size() != size_t(n) * size_t(width)) bad_option("mlp", "users.length rows of the MLP width");
  HeadIo h;
  h.p = HeadParams{io.f32(w), io.f32(b), f, width};
  h.t.mf_user = io.f32(mu);
  h.t.mf_item = io.f32(mi);
  h.t.factors = f;
  h.users = io.u32(pairs.users);
  h.items = io.u32(pairs.items);
  h.mlp = io.mat(m, n, width, fp16);
  h.n = n;
  h.mu_size = mu.size();
  h.mi_size = mi.size();
  return h;
}
}  // namespace

// headForward({ mfUser, mfItem, users, items, mlp, w, b, factors, fp16 }) -> Float32Array logits
Napi::Value OpRunner::HeadForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    Io io(*be_);
    const HeadIo h = head_from(io, o, get_bool(o, "fp16", false));
    float* logits = io.f32_zeros(size_t(h.n));
    be_->head_forward(h.t, h.users, h.items, h.mlp, h.p, logits);
    return out(info.Env(), io.read(logits, size_t(h.n)));
  });
}

// headForwardBackward({ mfUser, mfItem, users, items, mlp, labels, w, b, factors, gradScale,
//   lossScale, fp16, below }) -> { dMlp, gradW, gradB, gradMfUser, gradMfItem, lossSum, gradBBelow }
//   With below: { dropout, seed, layer, epoch, pos0 } (the last hidden layer, whose output is mlp),
//   dMlp is taken through its ReLU and dropout and its bias gradient returned as gradBBelow.
Napi::Value OpRunner::HeadForwardBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const bool fp16 = get_bool(o, "fp16", false);
    Io io(*be_);
    const HeadIo h = head_from(io, o, fp16);
    const std::vector<float> labels = get_f32(o.Get("labels"), "labels");
    if (labels.size() != size_t(h.n)) bad_option("labels", "one per pair");
    Mat dm = io.mat_zeros(h.n, h.p.mlp_width, fp16);
    float* gw = io.f32_zeros(size_t(h.p.factors + h.p.mlp_width));
    float* gb = io.f32_zeros(1);
    EmbedGrads g;
    g.mf_user = io.f32_zeros(h.mu_size);
    g.mf_item = io.f32_zeros(h.mi_size);
    BackendArray<double> loss(*be_, 1);
    const float ls = float(get_number(o, "lossScale", 0));
    LossScaler scaler;
    if (ls > 0) scaler.scale = io.f32({ls});
    const bool has_below = has(o, "below");
    LayerBelow below;
    if (has_below) {
      below.y = h.mlp;
      below.dropout = dropout_from(get_object(o, "below"));
      below.grad_b = io.f32_zeros(size_t(h.p.mlp_width));
    }
    be_->head_forward_backward(h.t, h.users, h.items, h.mlp, io.f32(labels), h.p, float(get_number(o, "gradScale", 1.0)),
                               ls > 0 ? &scaler : nullptr, dm, has_below ? &below : nullptr, g, gw, gb, loss.get());
    double lsum = 0;
    be_->download(&lsum, loss.get(), sizeof lsum);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("dMlp", out(info.Env(), io.read(dm)));
    r.Set("gradW", out(info.Env(), io.read(gw, size_t(h.p.factors + h.p.mlp_width))));
    r.Set("gradB", out(info.Env(), io.read(gb, 1)));
    r.Set("gradMfUser", out(info.Env(), io.read(g.mf_user, h.mu_size)));
    r.Set("gradMfItem", out(info.Env(), io.read(g.mf_item, h.mi_size)));
    r.Set("lossSum", lsum);
    if (has_below) r.Set("gradBBelow", out(info.Env(), io.read(below.grad_b, size_t(h.p.mlp_width))));
    return r;
  });
}

// adamStep({ params, grads, m, v, lr, beta1, beta2, eps, step, mirror, lossScale })
//   -> { params, m, v, half } (mirror: [begin, end), the parameters whose fp16 copies are kept;
//   half: those copies; lossScale: the gradients are scaled by it and unscaled as they are read)
Napi::Value OpRunner::AdamStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const std::vector<float> p = get_f32(o.Get("params"), "params");
    Io io(*be_);
    float* dp = io.f32(p);
    float* dm = io.f32(get_f32(o.Get("m"), "m"));
    float* dv = io.f32(get_f32(o.Get("v"), "v"));
    const float* dg = io.f32(get_f32(o.Get("grads"), "grads"));
    const AdamScalars s = make_adam_scalars(get_number(o, "lr", 0.0045), get_number(o, "beta1", 0.25),
                                            get_number(o, "beta2", 0.5), get_number(o, "eps", 1e-8),
                                            uint64_t(get_int(o, "step", 1)));
    HalfMirror mirror;
    BackendArray<uint16_t> half;
    if (has(o, "mirror")) {
      const std::vector<uint32_t> range = get_u32(o.Get("mirror"), "mirror");
      if (range.size() != 2 || range[0] > range[1] || range[1] > p.size()) bad_option("mirror", "[begin, end] within params");
      half = BackendArray<uint16_t>(*be_, range[1] - range[0]);
      mirror = HalfMirror{range[0], range[1], half.get()};
    }
    const float* loss_scale = has(o, "lossScale") ? io.f32({float(get_number(o, "lossScale", 1.0))}) : nullptr;
    be_->adam_step(dp, dg, dm, dv, p.size(), s, loss_scale, nullptr, mirror);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("params", out(info.Env(), io.read(dp, p.size())));
    r.Set("m", out(info.Env(), io.read(dm, p.size())));
    r.Set("v", out(info.Env(), io.read(dv, p.size())));
    if (mirror.dst) {
      const size_t count = mirror.end - mirror.begin;
      float* back = io.f32_zeros(count);
      be_->from_half(mirror.dst, back, count);
      r.Set("half", out(info.Env(), io.read(back, count)));
    }
    return r;
  });
}

// overflowCheck({ grads, scale }) -> { grads (as they are after the op), foundInf }
Napi::Value OpRunner::OverflowCheck(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const std::vector<float> g = get_f32(o.Get("grads"), "grads");
    Io io(*be_);
    float* dg = io.f32(g);
    BackendArray<int32_t> found(*be_, 1);
    LossScaler sc;
    sc.scale = io.f32({float(get_number(o, "scale", 1.0))});
    sc.found_inf = found.get();
    be_->overflow_check(dg, g.size(), sc);
    int32_t f = 0;
    be_->download(&f, found.get(), 4);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("grads", out(info.Env(), io.read(dg, g.size())));
    r.Set("foundInf", f != 0);
    return r;
  });
}

// updateLossScale({ scale, foundInf, goodSteps, dynamic, growthInterval }) -> { scale, goodSteps }
Napi::Value OpRunner::UpdateLossScale(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    Io io(*be_);
    const int32_t found0 = get_bool(o, "foundInf", false) ? 1 : 0, good0 = int32_t(get_int(o, "goodSteps", 0));
    BackendArray<int32_t> found(*be_, &found0, 1), good(*be_, &good0, 1);
    LossScaler sc;
    sc.scale = io.f32({float(get_number(o, "scale", 65536))});
    sc.found_inf = found.get();
    sc.good_steps = good.get();
    sc.dynamic = get_bool(o, "dynamic", true);
    sc.growth_interval = int(get_int(o, "growthInterval", 2000));
    be_->update_loss_scale(sc);
    float scale = 0;
    int32_t g = 0;
    be_->download(&scale, sc.scale, 4);
    be_->download(&g, good.get(), 4);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("scale", double(scale));
    r.Set("goodSteps", g);
    return r;
  });
}

// halfRoundTrip(Float32Array) -> Float32Array: through fp16 and back on the backend.
Napi::Value OpRunner::HalfRoundTrip(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::vector<float> x = get_f32(info[0], "values");
    Io io(*be_);
    return out(info.Env(), io.read(io.mat(x, 1, int64_t(x.size()), true)));
  });
}

// evalRank({ logits, masked: Uint8Array, nUsers, listLen, k }) -> { hits, dcg }
Napi::Value OpRunner::EvalRank(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const std::vector<float> logits = get_f32(o.Get("logits"), "logits");
    const std::vector<uint8_t> masked = get_array<uint8_t>(o.Get("masked"), "masked", napi_uint8_array);
    const int users = int(get_int(o, "nUsers", 0)), len = int(get_int(o, "listLen", 0));
    if (logits.size() != size_t(users) * size_t(len) || masked.size() != logits.size())
      bad_option("logits/masked", "nUsers x listLen long");
    Io io(*be_);
    BackendArray<uint8_t> dm(*be_, masked.data(), masked.size());
    BackendArray<EvalSums> sums(*be_, 1);
    be_->eval_rank(io.f32(logits), dm.get(), users, len, int(get_int(o, "k", 10)), sums.get());
    EvalSums s;
    be_->download(&s, sums.get(), sizeof s);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("hits", double(s.hits));
    r.Set("dcg", s.dcg);
    r.Set("users", double(s.users));
    return r;
  });
}

// matmulNt({ a, rows, cols, w, ldw, outCols }) -> Float32Array [rows x outCols]
Napi::Value OpRunner::MatmulNt(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const int rows = int(get_int(o, "rows", 0)), cols = int(get_int(o, "cols", 0)), oc = int(get_int(o, "outCols", 0));
    Io io(*be_);
    Mat a = io.mat(get_f32(o.Get("a"), "a"), rows, cols, false);
    Mat r = io.mat_zeros(rows, oc, false);
    be_->matmul_nt(a, io.f32(get_f32(o.Get("w"), "w")), int(get_int(o, "ldw", cols)), r);
    return out(info.Env(), io.read(r));
  });
}

// addRow({ x, rows, cols, row, relu }) -> Float32Array
Napi::Value OpRunner::AddRow(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const int rows = int(get_int(o, "rows", 0)), cols = int(get_int(o, "cols", 0));
    Io io(*be_);
    Mat x = io.mat(get_f32(o.Get("x"), "x"), rows, cols, false);
    Mat y = io.mat_zeros(rows, cols, false);
    be_->add_row(x, io.f32(get_f32(o.Get("row"), "row")), y, get_bool(o, "relu", false));
    return out(info.Env(), io.read(y));
  });
}

// gatherAddRelu({ a, ia, b, ib, cols, fp16, halfTables, dropout, seed, layer, epoch, pos0 })
//   -> { y: Float32Array [ia.length x cols], mask: Uint8Array (y's live units, a UnitMask's bytes) }
Napi::Value OpRunner::GatherAddRelu(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const int cols = int(get_int(o, "cols", 0));
    if (cols < 1) bad_option("cols", "positive");
    const GatherOperands g = gather_operands_from(o, cols, "");
    const std::vector<float>&a = g.a, &b = g.b;
    const std::vector<uint32_t>&ia = g.ia, &ib = g.ib;
    Io io(*be_);
    Mat y = io.mat_zeros(int64_t(ia.size()), cols, get_bool(o, "fp16", false));
    const int64_t ra = int64_t(a.size()) / cols, rb = int64_t(b.size()) / cols;
    Mat ta{io.f32(a), DType::F32, ra, cols}, tb{io.f32(b), DType::F32, rb, cols};
    BackendMat ha, hb;  // halfTables: the tables as fp16 (to_half), as --amp evaluation gathers them
    if (get_bool(o, "halfTables", false)) {
      ha = half_copy(*be_, ta);
      hb = half_copy(*be_, tb);
      ta = ha.mat;
      tb = hb.mat;
    }
    const UnitMask live = io.unit_mask(y.rows, cols);
    be_->gather_add_relu(ta, io.u32(ia), tb, io.u32(ib), dropout_from(o), y, live);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("y", out(info.Env(), io.read(y)));
    r.Set("mask", adopt<uint8_t, Napi::Uint8Array>(info.Env(), io.read(live, y.rows)));
    return r;
  });
}

// pairRowSums({ dz, users, items, nUsers, nItems, cols, fp16, halfUserSums, layer })
//   -> { userSums, itemSums, gradB }: the rows of dz summed per user and per item (pair_row_sums;
// users in ascending order take the backend's path for sorted batches; halfUserSums: fp16
// per-user sums). With layer ({ y, dropout, seed, layer, epoch, pos0, mask }, as linearBackward's
// below), dz is taken through that layer's ReLU and dropout first and gradB is its bias gradient.
Napi::Value OpRunner::PairRowSums(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const int cols = int(get_int(o, "cols", 0)), nu = int(get_int(o, "nUsers", 0)), ni = int(get_int(o, "nItems", 0));
    if (cols < 1 || nu < 1 || ni < 1) bad_option("cols/nUsers/nItems", "positive");
    const std::vector<uint32_t> users = get_u32(o.Get("users"), "users"), items = get_u32(o.Get("items"), "items");
    if (users.size() != items.size()) bad_option("users/items", "of equal length");
    for (size_t r = 0; r < users.size(); ++r)
      if (users[r] >= uint32_t(nu) || items[r] >= uint32_t(ni)) bad_option("users/items", "within nUsers and nItems");
    Io io(*be_);
    const int64_t n = int64_t(users.size());
    const bool fp16 = get_bool(o, "fp16", false);
    Mat dz = io.mat(get_f32(o.Get("dz"), "dz"), n, cols, fp16);
    // Garbage in the sums first: the op must overwrite them.
    Mat su = io.mat(std::vector<float>(size_t(nu) * size_t(cols), 7.0f), nu, cols, get_bool(o, "halfUserSums", false));
    Mat si = io.mat(std::vector<float>(size_t(ni) * size_t(cols), 7.0f), ni, cols, false);
    const bool has_layer = has(o, "layer");
    LayerBelow layer;
    if (has_layer) {
      layer = layer_below_from(io, get_object(o, "layer"), "layer", n, cols, fp16);
      be_->upload(layer.grad_b, std::vector<float>(size_t(cols), 7.0f).data(), sizeof(float) * size_t(cols));
    }
    be_->pair_row_sums(dz, has_layer ? &layer : nullptr, io.u32(users), std::is_sorted(users.begin(), users.end()),
                       io.u32(items), su, si);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("userSums", out(info.Env(), io.read(su)));
    r.Set("itemSums", out(info.Env(), io.read(si)));
    if (has_layer) r.Set("gradB", out(info.Env(), io.read(layer.grad_b, size_t(cols))));
    return r;
  });
}

// matmulNn({ a, rows, cols, w, ldw, outCols }) -> Float32Array [rows x outCols] = a W[:, :outCols]
Napi::Value OpRunner::MatmulNn(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const int rows = int(get_int(o, "rows", 0)), cols = int(get_int(o, "cols", 0)), oc = int(get_int(o, "outCols", 0));
    const int ldw = int(get_int(o, "ldw", oc));
    const std::vector<float> w = get_f32(o.Get("w"), "w");
    if (ldw < oc || w.size() != size_t(cols) * size_t(ldw)) bad_option("w/ldw", "cols rows of ldw >= outCols values");
    Io io(*be_);
    Mat a = io.mat(get_f32(o.Get("a"), "a"), rows, cols, false);
    Mat r = io.mat_zeros(rows, oc, false);
    be_->matmul_nn(a, io.f32(w), ldw, r);
    return out(info.Env(), io.read(r));
  });
}

// splitForward({ nUsers, nItems, factors, layers, params, users, items, fp16, fused, halfParts })
//   -> { logits: Float32Array, fused: boolean }
// A Network from the flat parameters: its first-layer parts, then Network::forward_split over the
// pairs, through the backend's fused split_forward when it has one (and fused is not false),
// else through the chain of ops; `fused` says which ran.
Napi::Value OpRunner::SplitForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const ModelConfig cfg = model_config_from(o);
    const auto [users, items] = pairs_from(o, cfg);
    Network net(*be_, cfg, get_bool(o, "fp16", false));
    net.upload_params(get_f32(o.Get("params"), "params"));
    BackendMat user_part(*be_, cfg.n_users, cfg.layers[1], DType::F32), item_part(*be_, cfg.n_items, cfg.layers[1], DType::F32);
    net.first_layer_parts(user_part.mat, item_part.mat);
    const int n = int(users.size());
    Activations a(*be_, cfg, net.act_dtype(), n);
    be_->upload(a.users.get(), users.data(), sizeof(uint32_t) * users.size());
    be_->upload(a.items.get(), items.data(), sizeof(uint32_t) * items.size());
    const bool fused = get_bool(o, "fused", true) &&
                       net.forward_split_fused(user_part.mat.f32(), item_part.mat.f32(), a.users.get(), a.items.get(), n,
                                               a.logits.get());
    if (!fused) {
      // halfParts: the chain from fp16 copies of the parts, as --amp evaluation runs it.
      BackendMat user_half, item_half;
      Mat up = user_part.mat, ip = item_part.mat;
      if (net.act_dtype() == DType::F16 && get_bool(o, "halfParts", false)) {
        user_half = half_copy(*be_, up);
        item_half = half_copy(*be_, ip);
        up = user_half.mat;
        ip = item_half.mat;
      }
      net.forward_split(a, up, ip, a.users.get(), a.items.get(), n, false);
    }
    std::vector<float> logits(users.size());
    be_->download(logits.data(), a.logits.get(), sizeof(float) * logits.size());
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("logits", out(info.Env(), std::move(logits)));
    r.Set("fused", fused);
    return r;
  });
}

// trainPass({ nUsers, nItems, factors, layers, dropout, params, users, items, labels, seed, epoch,
//   pos0, gradScale, lossScale, fp16, fused, firstLayer: 'rows' | 'parts' })
//   -> { grads: Float32Array, loss: number, fused: boolean }
// One training step's data path (Network::train_pass) on the given rows: every parameter's
// gradient (laid out like the parameters) and the summed loss, through the backend's fused
// train_pass when it has one (and fused is not false), else the chain of ops.
Napi::Value OpRunner::TrainPass(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = opts(info);
    const ModelConfig cfg = model_config_from(o);
    const auto [users, items] = pairs_from(o, cfg);
    const std::vector<float> labels = get_f32(o.Get("labels"), "labels");
    if (labels.size() != users.size()) bad_option("labels", "one per pair");
    const bool half = get_bool(o, "fp16", false);
    Network net(*be_, cfg, half);
    net.upload_params(get_f32(o.Get("params"), "params"));
    const int n = int(users.size());
    Activations a(*be_, cfg, net.act_dtype(), n);
    be_->upload(a.users.get(), users.data(), sizeof(uint32_t) * users.size());
    be_->upload(a.items.get(), items.data(), sizeof(uint32_t) * items.size());
    be_->upload(a.labels.get(), labels.data(), sizeof(float) * labels.size());
    const std::string first = get_string(o, "firstLayer", "rows");
    if (first != "rows" && first != "parts") bad_option("firstLayer", "'rows' or 'parts'");
    a.first_layer = first == "parts" ? FirstLayer::Parts : FirstLayer::Rows;
    a.users_ascending = std::is_sorted(users.begin(), users.end());
    std::vector<Dropout> drop;
    for (int l = 0; l < cfg.hidden_layers(); ++l)
      drop.push_back(make_dropout(cfg.dropout, uint64_t(get_int(o, "seed", 0)), l, uint32_t(get_int(o, "epoch", 0)),
                                  uint64_t(get_int(o, "pos0", 0))));
    BackendArray<float> grads(*be_, net.layout().total);
    BackendArray<double> loss(*be_, 1);
    const float loss_scale = float(get_number(o, "lossScale", 0.0));
    BackendArray<float> scale(*be_, &loss_scale, 1);
    LossScaler scaler;
    scaler.scale = scale.get();
    const LossScaler* ls = loss_scale > 0 ? &scaler : nullptr;
    const bool fused_wanted = get_bool(o, "fused", true);
    // NaN where the pass must write, zeros where it adds up: a gradient it leaves unwritten shows.
    const auto [z0, z1] = net.accumulated_grads(a, fused_wanted && net.fused_training_runs(a, ls, grads.get(), loss.get()));
    std::vector<float> init(grads.size(), std::numeric_limits<float>::quiet_NaN());
    std::fill(init.begin() + std::ptrdiff_t(z0), init.begin() + std::ptrdiff_t(z1), 0.0f);
    be_->upload(grads.get(), init.data(), grads.bytes());
    const bool fused = net.train_pass(a, n, drop, float(get_number(o, "gradScale", 1.0)), ls, grads.get(), loss.get(),
                                      fused_wanted);
    std::vector<float> g(grads.size());
    be_->download(g.data(), grads.get(), grads.bytes());
    double l = 0.0;
    be_->download(&l, loss.get(), sizeof l);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("grads", out(info.Env(), std::move(g)));
    r.Set("loss", l);
    r.Set("fused", fused);
    return r;
  });
}

}  // namespace ncf::js
