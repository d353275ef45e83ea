#include "core/error.h"

namespace sinklab {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Shape: return "shape error";
    case ErrorKind::DType: return "dtype error";
    case ErrorKind::Device: return "device error";
    case ErrorKind::Value: return "value error";
    case ErrorKind::Config: return "config error";
    case ErrorKind::IO: return "I/O error";
    case ErrorKind::Internal: return "internal error";
  }
  return "error";
}

// `file` (a __FILE__) relative to the repository root: the build machine's absolute path, or
// the "../" a compiler launcher's relative paths add, is cut off. This file sits at
// core/error.cpp, so its own __FILE__ names the prefix the build put before every source.
static std::string source_path(const char* file) {
  std::string path = file;
  static const std::string own = __FILE__, suffix = "core/error.cpp";
  const std::string prefix = own.size() >= suffix.size() &&
                                     own.compare(own.size() - suffix.size(), suffix.size(),
                                                 suffix) == 0
                                 ? own.substr(0, own.size() - suffix.size())
                                 : std::string();
  if (!prefix.empty() && path.compare(0, prefix.size(), prefix) == 0)
    return path.substr(prefix.size());
  while (path.compare(0, 3, "../") == 0 || path.compare(0, 2, "./") == 0)
    path.erase(0, path[1] == '/' ? 2 : 3);
  return path;
}

static std::string compose(ErrorKind kind, const std::string& message, const std::string& hint,
                           const char* file, int line) {
  std::ostringstream out;
  out << error_kind_name(kind) << ": " << message;
  if (!hint.empty()) out << "\n  hint: " << hint;
  out << "\n  at " << source_path(file) << ":" << line;
  return out.str();
}

Error::Error(ErrorKind kind, const std::string& message, const std::string& hint,
             const char* file, int line)
    : std::runtime_error(compose(kind, message, hint, file, line)),
      kind_(kind),
      message_(message),
      hint_(hint) {}

}  // namespace sinklab
