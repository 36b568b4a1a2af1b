// Helpers shared by the N-API objects: reading option objects and typed arrays with messages that
// name the option, copying results into new typed arrays, and turning ncf::Error into a
// JavaScript Error with `code` (and `line`) properties.
#pragma once
#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <cstring>
#include <string>
#include <vector>

#include "../core/errors.h"

namespace ncf::js {

inline Napi::Error to_js_error(Napi::Env env, const std::exception& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  if (auto* ne = dynamic_cast<const Error*>(&e)) {
    err.Set("code", Napi::String::New(env, error_code_name(ne->code())));
    if (ne->line() >= 0) err.Set("line", Napi::Number::New(env, double(ne->line())));
  } else {
    err.Set("code", Napi::String::New(env, "ERR_NATIVE"));
  }
  return err;
}

// Runs fn; a thrown C++ exception becomes a pending JavaScript exception.
template <typename Fn>
Napi::Value guarded(Napi::Env env, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    to_js_error(env, e).ThrowAsJavaScriptException();
    return env.Undefined();
  }
}

[[noreturn]] inline void bad_option(const std::string& name, const std::string& expected) {
  fail(ErrorCode::InvalidArgument, "option '" + name + "' must be " + expected);
}

inline bool has(const Napi::Object& o, const char* key) {
  return o.Has(key) && !o.Get(key).IsUndefined() && !o.Get(key).IsNull();
}

inline double get_number(const Napi::Object& o, const char* key, double def) {
  if (!has(o, key)) return def;
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) bad_option(key, "a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline int64_t get_int(const Napi::Object& o, const char* key, int64_t def) {
  const double d = get_number(o, key, double(def));
  if (d != double(int64_t(d))) bad_option(key, "an integer");
  return int64_t(d);
}

inline bool get_bool(const Napi::Object& o, const char* key, bool def) {
  if (!has(o, key)) return def;
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) bad_option(key, "true or false");
  return v.As<Napi::Boolean>().Value();
}

inline std::string get_string(const Napi::Object& o, const char* key, const std::string& def) {
  if (!has(o, key)) return def;
  Napi::Value v = o.Get(key);
  if (!v.IsString()) bad_option(key, "a string");
  return v.As<Napi::String>().Utf8Value();
}

inline Napi::Object get_object(const Napi::Object& o, const char* key) {
  if (!has(o, key) || !o.Get(key).IsObject()) bad_option(key, "an object");
  return o.Get(key).As<Napi::Object>();
}

inline std::vector<int> get_int_list(const Napi::Object& o, const char* key, std::vector<int> def) {
  if (!has(o, key)) return def;
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) bad_option(key, "an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) bad_option(key, "an array of integers");
    out.push_back(e.As<Napi::Number>().Int32Value());
  }
  return out;
}

// A copy of a typed array of element type T (e.g. Float32Array for float).
template <typename T>
std::vector<T> get_array(const Napi::Value& v, const char* name, napi_typedarray_type type) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    bad_option(name, type == napi_float32_array ? "a Float32Array"
                     : type == napi_uint32_array ? "a Uint32Array"
                     : type == napi_uint8_array  ? "a Uint8Array"
                     : type == napi_float64_array ? "a Float64Array" : "a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  const size_t n = ta.ElementLength();
  std::vector<T> out(n);
  if (n) std::memcpy(out.data(), static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), n * sizeof(T));
  return out;
}

inline std::vector<float> get_f32(const Napi::Value& v, const char* name) {
  return get_array<float>(v, name, napi_float32_array);
}
inline std::vector<uint32_t> get_u32(const Napi::Value& v, const char* name) {
  return get_array<uint32_t>(v, name, napi_uint32_array);
}

// New typed arrays holding a copy of the data.
inline Napi::Float32Array f32_array(Napi::Env env, const float* p, size_t n) {
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n * sizeof(float));
  return a;
}
inline Napi::Uint32Array u32_array(Napi::Env env, const uint32_t* p, size_t n) {
  Napi::Uint32Array a = Napi::Uint32Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n * sizeof(uint32_t));
  return a;
}
inline Napi::Float64Array f64_array(Napi::Env env, const double* p, size_t n) {
  Napi::Float64Array a = Napi::Float64Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n * sizeof(double));
  return a;
}
// Moves a vector into a typed array without copying (the vector is freed with the array).
template <typename T, typename Array>
Array adopt(Napi::Env env, std::vector<T>&& v) {
  auto* holder = new std::vector<T>(std::move(v));
  const size_t n = holder->size();
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(
      env, holder->empty() ? nullptr : holder->data(), n * sizeof(T),
      [](Napi::Env, void*, std::vector<T>* h) { delete h; }, holder);
  return Array::New(env, n, buf, 0);
}

// A Promise-returning worker: Run() executes `work` off the JavaScript thread, then `done`
// builds the resolved value on it. Errors reject with a typed error.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  using Finally = std::function<void()>;
  PromiseWorker(Napi::Env env, Work work, Done done, Finally fin)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)), finally_(std::move(fin)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      error_ = std::make_unique<Error>(e);
    } catch (const std::exception& e) {
      error_ = std::make_unique<Error>(ErrorCode::Backend, e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (finally_) finally_();
    if (error_) {
      deferred_.Reject(to_js_error(env, *error_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_(env));
    } catch (const std::exception& e) {
      deferred_.Reject(to_js_error(env, e).Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    if (finally_) finally_();
    deferred_.Reject(e.Value());
  }

  // `fin` runs on the JavaScript thread once the work is over, whether it succeeded or not.
  static Napi::Promise Start(Napi::Env env, Work work, Done done, Finally fin = nullptr) {
    auto* w = new PromiseWorker(env, std::move(work), std::move(done), std::move(fin));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  Finally finally_;
  std::unique_ptr<Error> error_;
};

}  // namespace ncf::js
