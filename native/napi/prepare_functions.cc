// prepareFile() and prepareSynthetic(): parse (or generate) interactions and preprocess them off
// the JavaScript thread, resolving with the arrays the dataset cache stores.
#include <cstdio>
#include <memory>

#include "../core/sample_stream.h"

#include "../core/thread_pool.h"
#include "../data/csv_parser.h"
#include "../data/preprocess.h"
#include "../data/synthetic.h"
#include "convert.h"
#include "functions.h"

namespace ncf::js {

namespace {

PrepareOptions prepare_options(const Napi::Object& o) {
  PrepareOptions p;
  p.min_ratings = get_int(o, "minRatings", 20);
  p.test_negatives = int(get_int(o, "testNegatives", 100));
  p.seed = uint64_t(get_int(o, "seed", 0));
  return p;
}

int thread_option(const Napi::Object& o) {
  const int t = int(get_int(o, "threads", 0));
  return t > 0 ? t : ThreadPool::default_threads();
}

Napi::Value prepared_to_js(Napi::Env env, PreparedData& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("nUsers", double(d.n_users));
  o.Set("nItems", double(d.n_items));
  o.Set("rows", double(d.rows));
  o.Set("droppedUsers", double(d.dropped_users));
  o.Set("droppedRows", double(d.dropped_rows));
  o.Set("duplicates", double(d.duplicates));
  o.Set("offsets", adopt<uint32_t, Napi::Uint32Array>(env, std::move(d.offsets)));
  o.Set("items", adopt<uint32_t, Napi::Uint32Array>(env, std::move(d.items)));
  o.Set("testItems", adopt<uint32_t, Napi::Uint32Array>(env, std::move(d.test_items)));
  o.Set("testNegatives", adopt<uint32_t, Napi::Uint32Array>(env, std::move(d.test_negatives)));
  o.Set("userIds", adopt<double, Napi::Float64Array>(env, std::move(d.user_ids)));
  o.Set("itemIds", adopt<double, Napi::Float64Array>(env, std::move(d.item_ids)));
  return o;
}

}  // namespace

// prepareFile({ path, delimiter, skipLines, userCol, itemCol, timeCol, minRatings, testNegatives,
//               seed, threads }) -> Promise<Prepared>
Napi::Value PrepareFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) bad_option("prepareFile", "called with an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    ParseOptions parse;
    const std::string path = get_string(o, "path", "");
    parse.delimiter = get_string(o, "delimiter", ",");
    parse.skip_lines = get_int(o, "skipLines", 0);
    parse.user_col = int(get_int(o, "userCol", 0));
    parse.item_col = int(get_int(o, "itemCol", 1));
    parse.time_col = int(get_int(o, "timeCol", -1));
    parse.threads = thread_option(o);
    const PrepareOptions prep = prepare_options(o);
    auto result = std::make_shared<PreparedData>();
    return PromiseWorker::Start(
        env,
        [=]() {
          ThreadPool pool(parse.threads);
          *result = preprocess(parse_interactions_file(path, parse), prep, pool);
        },
        [=](Napi::Env e) { return prepared_to_js(e, *result); });
  });
}

// prepareSynthetic({ shape, seed, minRatings, testNegatives, threads }) -> Promise<Prepared>
Napi::Value PrepareSynthetic(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) bad_option("prepareSynthetic", "called with an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    const std::string name = get_string(o, "shape", "ml-20m");
    const SyntheticShape* shape = find_synthetic_shape(name);
    if (!shape) bad_option("shape", "one of the synthetic shapes (ml-20m, ml-1m, ml-100k, small, tiny)");
    const SyntheticShape s = *shape;
    const uint64_t seed = uint64_t(get_int(o, "seed", 0));
    const PrepareOptions prep = prepare_options(o);
    const int threads = thread_option(o);
    auto result = std::make_shared<PreparedData>();
    return PromiseWorker::Start(
        env,
        [=]() {
          ThreadPool pool(threads);
          *result = preprocess(generate_synthetic(s, seed, pool), prep, pool);
        },
        [=](Napi::Env e) { return prepared_to_js(e, *result); });
  });
}

// writeSyntheticCsv({ shape, seed, path }) -> Promise<{ rows, bytes }>: synthetic interactions as
// an ml-20m-style ratings.csv (header userId,movieId,rating,timestamp; rows by user, then time),
// for the preprocessing benchmark.
Napi::Value WriteSyntheticCsv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) bad_option("writeSyntheticCsv", "called with an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    const SyntheticShape* shape = find_synthetic_shape(get_string(o, "shape", "ml-20m"));
    if (!shape) bad_option("shape", "one of the synthetic shapes");
    const SyntheticShape s = *shape;
    const uint64_t seed = uint64_t(get_int(o, "seed", 0));
    const std::string path = get_string(o, "path", "");
    auto bytes = std::make_shared<uint64_t>(0);
    return PromiseWorker::Start(
        env,
        [=]() {
          ThreadPool pool(ThreadPool::default_threads());
          const RawInteractions raw = generate_synthetic(s, seed, pool);
          std::FILE* f = std::fopen(path.c_str(), "wb");
          if (!f) fail(ErrorCode::Io, "cannot write " + path);
          std::string buf = "userId,movieId,rating,timestamp\n";
          char line[96];
          for (size_t i = 0; i < raw.users.size(); ++i) {
            const int half_stars = 1 + int(hash32(uint32_t(i)) % 10);  // 0.5 .. 5.0
            const int n = std::snprintf(line, sizeof line, "%lld,%lld,%d.%d,%lld\n", static_cast<long long>(raw.users[i]),
                                        static_cast<long long>(raw.items[i]), half_stars / 2, (half_stars % 2) * 5,
                                        static_cast<long long>(raw.times[i]));
            buf.append(line, size_t(n));
            if (buf.size() > (1 << 22)) {
              std::fwrite(buf.data(), 1, buf.size(), f);
              *bytes += buf.size();
              buf.clear();
            }
          }
          std::fwrite(buf.data(), 1, buf.size(), f);
          *bytes += buf.size();
          if (std::fclose(f) != 0) fail(ErrorCode::Io, "cannot write " + path);
        },
        [=](Napi::Env e) -> Napi::Value {
          Napi::Object r = Napi::Object::New(e);
          r.Set("rows", double(s.interactions));
          r.Set("bytes", double(*bytes));
          return r;
        });
  });
}

Napi::Value SyntheticShapes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& s : synthetic_shapes()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", s.name);
    o.Set("users", double(s.users));
    o.Set("items", double(s.items));
    o.Set("interactions", double(s.interactions));
    out.Set(i++, o);
  }
  return out;
}

}  // namespace ncf::js
