// A multi-threaded reader for delimited interaction files (CSV, TSV, MovieLens' "::" files).
// The file is memory-mapped and cut into one chunk per thread at line boundaries; each thread
// parses the columns it needs from its chunk. The first malformed line (in file order) is
// reported as a ParseError carrying its 1-based line number.
#pragma once
#include <string>

#include "raw_interactions.h"

namespace ncf {

struct ParseOptions {
  std::string delimiter = ",";  // one or more characters; " " means runs of spaces and tabs
  int64_t skip_lines = 0;       // header lines
  int user_col = 0;
  int item_col = 1;
  int time_col = -1;            // -1: no timestamp column
  int threads = 1;
};

RawInteractions parse_interactions_file(const std::string& path, const ParseOptions& opt);

}  // namespace ncf
