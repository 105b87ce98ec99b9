// Status and Result<T>: errors as values at every boundary.
//
// Contract: every function that can fail for reasons outside the programmer's
// control (bad input, I/O, missing ids) returns a Status or Result<T>. Both are
// [[nodiscard]]. A Status carries a code and a human-readable message; the code
// is mapped to an HTTP status in exactly one place (api/http_server.cc,
// HttpStatusFor). Asserts are reserved for programmer errors.
//
// Thread safety: values; safe to copy and move between threads.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace foryou {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller sent something malformed (HTTP 400)
  kNotFound,         // an id that does not exist (HTTP 404)
  kTooLarge,         // a request beyond a configured limit (HTTP 413)
  kCorruption,       // on-disk data that cannot be read (HTTP 500)
  kIOError,          // the disk or the OS failed (HTTP 500)
  kUnavailable,      // temporarily unable to serve (HTTP 503)
  kForbidden,        // the policy does not allow it (HTTP 403)
  kConflict,         // out of order with what is stored (HTTP 409)
  kInternal,         // a bug (HTTP 500)
};

// Stable lower-case name of a code, used as the "code" field of JSON errors.
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(StatusCode::kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(StatusCode::kNotFound, std::move(msg)); }
  static Status TooLarge(std::string msg) { return Status(StatusCode::kTooLarge, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(StatusCode::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(StatusCode::kIOError, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(StatusCode::kUnavailable, std::move(msg)); }
  static Status Forbidden(std::string msg) { return Status(StatusCode::kForbidden, std::move(msg)); }
  static Status Conflict(std::string msg) { return Status(StatusCode::kConflict, std::move(msg)); }
  static Status Internal(std::string msg) { return Status(StatusCode::kInternal, std::move(msg)); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: events[2].type: unknown event type 'lik'"
  std::string ToString() const;

 private:
  Status(StatusCode code, std::string msg) : code_(code), message_(std::move(msg)) {}
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace foryou

#define FORYOU_RETURN_IF_ERROR(expr)        \
  do {                                      \
    ::foryou::Status _st = (expr);          \
    if (!_st.ok()) return _st;              \
  } while (0)
