// Interactions as read from a source, before preprocessing: original user and item ids (any
// integers of magnitude below 2^53) and optional timestamps, in file order.
#pragma once
#include <cstdint>
#include <vector>

namespace ncf {

struct RawInteractions {
  std::vector<int64_t> users;
  std::vector<int64_t> items;
  std::vector<double> times;  // empty when the source has no timestamp column
  int64_t lines = 0;          // lines read, header and blank lines included
};

}  // namespace ncf
