// The environment's switches (NCF_FIRST_LAYER, the CUDA backend's NCF_CUDA_*), each taking a few
// named values: anything else fails with an error naming the variable and the values it takes,
// since a mistyped switch would otherwise run the default unnoticed.
#pragma once
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "errors.h"

namespace ncf {

// The environment variable `name`: "" when unset or empty, else one of `values`.
inline std::string env_switch(const char* name, std::initializer_list<const char*> values) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::string();
  std::string expected;
  size_t i = 0;
  for (const char* value : values) {
    if (std::string(v) == value) return value;
    expected += std::string(i == 0 ? "" : i + 1 == values.size() ? " or " : ", ") + value;
    ++i;
  }
  fail(ErrorCode::InvalidArgument, std::string(name) + " is '" + v + "': expected " + expected + " (or unset)");
}

// A switch that is 0 or 1; unset or empty: `unset`.
inline bool env_flag(const char* name, bool unset = false) {
  const std::string v = env_switch(name, {"0", "1"});
  return v.empty() ? unset : v == "1";
}

}  // namespace ncf
