#include "csv_parser.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <thread>

#include "../core/errors.h"

namespace ncf {

namespace {

constexpr double kMaxId = 9007199254740991.0;  // 2^53 - 1: ids are kept exactly as float64

// The read-only bytes of a file, memory-mapped.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY);
    if (fd_ < 0) fail(ErrorCode::Io, "cannot open " + path + ": " + std::strerror(errno));
    struct stat st;
    if (fstat(fd_, &st) != 0) fail(ErrorCode::Io, "cannot stat " + path + ": " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) fail(ErrorCode::Io, path + " is a directory, not a file");
    size_ = size_t(st.st_size);
    if (size_ == 0) return;
    void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (p == MAP_FAILED) fail(ErrorCode::Io, "cannot map " + path + ": " + std::strerror(errno));
    madvise(p, size_, MADV_SEQUENTIAL);
    data_ = static_cast<const char*>(p);
  }
  ~MappedFile() {
    if (data_) munmap(const_cast<char*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  int fd_ = -1;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

struct Field {
  const char* b;
  const char* e;
};

std::string show(const char* b, const char* e) {
  std::string s(b, size_t(std::min<ptrdiff_t>(e - b, 80)));
  if (e - b > 80) s += "...";
  return s;
}

// Splits one line (without its newline) into fields, up to max_fields. Single-character
// delimiters honour double-quoted fields (a quoted field may contain the delimiter).
int split_line(const char* b, const char* e, const std::string& delim, Field* out, int max_fields) {
  int n = 0;
  if (delim == " ") {
    const char* p = b;
    while (n < max_fields) {
      while (p < e && (*p == ' ' || *p == '\t')) ++p;
      if (p >= e) break;
      const char* s = p;
      while (p < e && *p != ' ' && *p != '\t') ++p;
      out[n++] = Field{s, p};
    }
    return n;
  }
  const char* p = b;
  const size_t dl = delim.size();
  while (n < max_fields) {
    const char* s = p;
    if (dl == 1 && p < e && *p == '"') {
      ++p;
      while (p < e) {
        if (*p == '"') {
          if (p + 1 < e && p[1] == '"') { p += 2; continue; }
          ++p;
          break;
        }
        ++p;
      }
      while (p < e && *p != delim[0]) ++p;
    } else if (dl == 1) {
      const void* hit = std::memchr(p, delim[0], size_t(e - p));
      p = hit ? static_cast<const char*>(hit) : e;
    } else {
      while (p < e && !(size_t(e - p) >= dl && std::memcmp(p, delim.data(), dl) == 0)) ++p;
    }
    out[n++] = Field{s, p};
    if (p >= e) break;
    p += dl;
  }
  return n;
}

inline void trim(Field& f) {
  while (f.b < f.e && (*f.b == ' ' || *f.b == '\t' || *f.b == '"')) ++f.b;
  while (f.e > f.b && (f.e[-1] == ' ' || f.e[-1] == '\t' || f.e[-1] == '"' || f.e[-1] == '\r')) --f.e;
}

// Parses a whole field as an integer (optional sign, digits only).
bool parse_int(Field f, int64_t* out) {
  trim(f);
  const char* p = f.b;
  bool neg = false;
  if (p < f.e && (*p == '-' || *p == '+')) neg = *p++ == '-';
  if (p >= f.e) return false;
  uint64_t v = 0;
  for (; p < f.e; ++p) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + uint64_t(*p - '0');
    if (v > uint64_t(kMaxId)) return false;
  }
  *out = neg ? -int64_t(v) : int64_t(v);
  return true;
}

// Parses a whole field as a decimal number (integers, fractions, exponents).
bool parse_number(Field f, double* out) {
  trim(f);
  int64_t iv;
  if (parse_int(f, &iv)) {
    *out = double(iv);
    return true;
  }
  if (f.b >= f.e || f.e - f.b > 64) return false;
  char buf[72];
  std::memcpy(buf, f.b, size_t(f.e - f.b));
  buf[f.e - f.b] = 0;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(buf, &end);
  if (end != buf + (f.e - f.b) || errno != 0 || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

struct ChunkResult {
  RawInteractions rows;
  int64_t lines = 0;            // newline-terminated lines in the chunk
  int64_t error_line = -1;      // 0-based within the chunk
  std::string error;
};

void parse_chunk(const char* b, const char* e, const ParseOptions& opt, ChunkResult* r) {
  const int need = std::max({opt.user_col, opt.item_col, opt.time_col}) + 1;
  Field fields[64];
  const char* p = b;
  int64_t line = 0;
  const size_t reserve = size_t((e - b) / 24);
  r->rows.users.reserve(reserve);
  r->rows.items.reserve(reserve);
  if (opt.time_col >= 0) r->rows.times.reserve(reserve);
  for (; p < e; ++line) {
    const void* nl = std::memchr(p, '\n', size_t(e - p));
    const char* le = nl ? static_cast<const char*>(nl) : e;
    const char* ls = p;
    p = nl ? le + 1 : e;
    const char* content_end = le;
    while (content_end > ls && (content_end[-1] == '\r' || content_end[-1] == ' ' || content_end[-1] == '\t'))
      --content_end;
    if (content_end == ls) continue;  // blank line
    const int n = split_line(ls, content_end, opt.delimiter, fields, need);
    auto error = [&](const std::string& what) {
      r->error_line = line;
      r->error = what + " in \"" + show(ls, content_end) + "\"";
    };
    if (n < need) {
      error("expected at least " + std::to_string(need) + " fields separated by '" +
            (opt.delimiter == "\t" ? std::string("\\t") : opt.delimiter) + "', found " + std::to_string(n));
      return;
    }
    int64_t u, i;
    if (!parse_int(fields[opt.user_col], &u)) {
      error("user id (column " + std::to_string(opt.user_col) + ") is not an integer (of magnitude below 2^53)");
      return;
    }
    if (!parse_int(fields[opt.item_col], &i)) {
      error("item id (column " + std::to_string(opt.item_col) + ") is not an integer (of magnitude below 2^53)");
      return;
    }
    if (opt.time_col >= 0) {
      double t;
      if (!parse_number(fields[opt.time_col], &t)) {
        error("timestamp (column " + std::to_string(opt.time_col) + ") is not a number");
        return;
      }
      r->rows.times.push_back(t);
    }
    r->rows.users.push_back(u);
    r->rows.items.push_back(i);
  }
  r->lines = line;
}

}  // namespace

RawInteractions parse_interactions_file(const std::string& path, const ParseOptions& opt) {
  if (opt.user_col < 0 || opt.item_col < 0 || opt.user_col > 62 || opt.item_col > 62 || opt.time_col > 62)
    fail(ErrorCode::InvalidArgument, "column indices must be in 0..62");
  if (opt.delimiter.empty()) fail(ErrorCode::InvalidArgument, "the delimiter is empty");
  MappedFile file(path);
  const char* begin = file.data();
  const char* end = begin + file.size();
  if (file.size() >= 3 && std::memcmp(begin, "\xEF\xBB\xBF", 3) == 0) begin += 3;  // UTF-8 byte order mark
  int64_t skipped = 0;
  while (skipped < opt.skip_lines && begin < end) {
    const void* nl = std::memchr(begin, '\n', size_t(end - begin));
    begin = nl ? static_cast<const char*>(nl) + 1 : end;
    ++skipped;
  }
  // One chunk per thread, each ending just after a newline.
  const int threads = std::max(1, std::min(opt.threads, int((end - begin) / (1 << 20)) + 1));
  std::vector<const char*> cuts{begin};
  for (int t = 1; t < threads; ++t) {
    const char* c = begin + (end - begin) * t / threads;
    c = std::max(c, cuts.back());
    const void* nl = c < end ? std::memchr(c, '\n', size_t(end - c)) : nullptr;
    cuts.push_back(nl ? static_cast<const char*>(nl) + 1 : end);
  }
  cuts.push_back(end);
  std::vector<ChunkResult> results(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back(parse_chunk, cuts[size_t(t)], cuts[size_t(t) + 1], std::cref(opt), &results[size_t(t)]);
  parse_chunk(cuts[0], cuts[1], opt, &results[0]);
  for (auto& th : pool) th.join();

  int64_t line_base = skipped;
  for (auto& r : results) {
    if (r.error_line >= 0)
      throw Error(ErrorCode::ParseError, "line " + std::to_string(line_base + r.error_line + 1) + ": " + r.error,
                  line_base + r.error_line + 1);
    line_base += r.lines;
  }
  RawInteractions out;
  out.lines = line_base;
  size_t total = 0;
  for (auto& r : results) total += r.rows.users.size();
  out.users.reserve(total);
  out.items.reserve(total);
  if (opt.time_col >= 0) out.times.reserve(total);
  for (auto& r : results) {
    out.users.insert(out.users.end(), r.rows.users.begin(), r.rows.users.end());
    out.items.insert(out.items.end(), r.rows.items.begin(), r.rows.items.end());
    out.times.insert(out.times.end(), r.rows.times.begin(), r.rows.times.end());
    RawInteractions().users.swap(r.rows.users);
    RawInteractions().items.swap(r.rows.items);
    RawInteractions().times.swap(r.rows.times);
  }
  return out;
}

}  // namespace ncf
