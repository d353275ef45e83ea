// Typed errors that carry file:line, a message naming the op/key/shapes, and a hint.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace sinklab {

enum class ErrorKind { Shape, DType, Device, Value, Config, IO, Internal };

const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message, const std::string& hint, const char* file,
        int line);
  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

 private:
  ErrorKind kind_;
  std::string message_;
  std::string hint_;
};

// Subclasses so callers (and tests) can catch one family.
#define SINKLAB_DECLARE_ERROR(Name, Kind)                                                 \
  class Name : public Error {                                                             \
   public:                                                                                \
    Name(const std::string& m, const std::string& h, const char* f, int l)                \
        : Error(ErrorKind::Kind, m, h, f, l) {}                                           \
  };
SINKLAB_DECLARE_ERROR(ShapeError, Shape)
SINKLAB_DECLARE_ERROR(DTypeError, DType)
SINKLAB_DECLARE_ERROR(DeviceError, Device)
SINKLAB_DECLARE_ERROR(ValueError, Value)
SINKLAB_DECLARE_ERROR(ConfigError, Config)
SINKLAB_DECLARE_ERROR(IOError, IO)
SINKLAB_DECLARE_ERROR(InternalError, Internal)
#undef SINKLAB_DECLARE_ERROR

}  // namespace sinklab

// SINKLAB_CHECK(cond, ShapeError, "matmul: a " << a.shape_str() << " ...", "hint");
#define SINKLAB_CHECK(cond, ErrType, msg, hint)                          \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::ostringstream sinklab_msg_;                                   \
      sinklab_msg_ << msg;                                               \
      throw ::sinklab::ErrType(sinklab_msg_.str(), hint, __FILE__, __LINE__); \
    }                                                                    \
  } while (0)

#define SINKLAB_FAIL(ErrType, msg, hint)                                    \
  do {                                                                     \
    std::ostringstream sinklab_msg_;                                       \
    sinklab_msg_ << msg;                                                   \
    throw ::sinklab::ErrType(sinklab_msg_.str(), hint, __FILE__, __LINE__); \
  } while (0)
