// Typed errors thrown by the native core. The N-API layer turns them into JavaScript errors that
// carry `code` (and `line` for parse errors), so the TypeScript layer can name the file or the
// argument that was wrong.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace ncf {

enum class ErrorCode {
  InvalidArgument,  // a value passed by the caller is out of range or inconsistent
  ParseError,       // a line of an input file could not be read
  EmptyData,        // nothing left to train on
  Io,               // a file could not be read or written
  Backend,          // the compute backend failed (CUDA error, allocation, ...)
  Unavailable,      // a piece (CUDA, MPI, NCCL) is not built or cannot be loaded
  Distributed,      // ranks disagree or a collective failed
};

inline const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::InvalidArgument: return "ERR_INVALID_ARGUMENT";
    case ErrorCode::ParseError: return "ERR_PARSE";
    case ErrorCode::EmptyData: return "ERR_EMPTY_DATA";
    case ErrorCode::Io: return "ERR_IO";
    case ErrorCode::Backend: return "ERR_BACKEND";
    case ErrorCode::Unavailable: return "ERR_UNAVAILABLE";
    case ErrorCode::Distributed: return "ERR_DISTRIBUTED";
  }
  return "ERR_UNKNOWN";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, int64_t line = -1)
      : std::runtime_error(message), code_(code), line_(line) {}
  ErrorCode code() const { return code_; }
  // 1-based line number of the input file for ParseError, -1 otherwise.
  int64_t line() const { return line_; }

 private:
  ErrorCode code_;
  int64_t line_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace ncf
