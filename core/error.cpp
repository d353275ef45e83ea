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

static std::string compose(ErrorKind kind, const std::string& message, const std::string& hint,
                           const char* file, int line) {
  std::ostringstream out;
  out << error_kind_name(kind) << ": " << message;
  if (!hint.empty()) out << "\n  hint: " << hint;
  out << "\n  at " << file << ":" << line;
  return out.str();
}

Error::Error(ErrorKind kind, const std::string& message, const std::string& hint,
             const char* file, int line)
    : std::runtime_error(compose(kind, message, hint, file, line)),
      kind_(kind),
      message_(message),
      hint_(hint) {}

}  // namespace sinklab
