// Status and Result<T>: how rotor reports expected failures across module boundaries.
//
// Expected failures (bad input, missing user, broker down, corrupt bundle) are returned as a
// non-ok Status or a Result<T> holding one; exceptions are for startup and config parsing only,
// and assert-style aborts for programmer errors. Each module translates its library's errors
// (rocksdb::Status, rd_kafka_resp_err_t, ...) into a Status in one place.

#ifndef ROTOR_COMMON_STATUS_H_
#define ROTOR_COMMON_STATUS_H_

#include <concepts>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/core.h>

namespace rotor {

// What went wrong, coarse enough that callers can branch on it. Add a code only when some
// caller must handle it differently from every existing one.
enum class StatusCode : unsigned char {
  kOk = 0,
  kInvalidArgument,     // The caller passed something malformed or out of contract.
  kNotFound,            // The thing asked for does not exist (user, key, file).
  kAlreadyExists,       // Creating something that is already there.
  kOutOfRange,          // A position/offset/index past the valid range (e.g. end of log).
  kFailedPrecondition,  // The system is not in a state that allows the operation.
  kCorruption,          // Stored or received bytes fail validation (truncated, bad shape).
  kIOError,             // The OS or a storage layer failed to read or write.
  kUnavailable,         // A dependency is down or unreachable; retrying later may succeed.
  kAborted,             // The operation was cut short (e.g. a transaction); retry from the top.
  kInternal,            // An invariant broke; a bug in rotor.
  kResourceExhausted,   // Out of a resource (disk space): free some, then retry from the top.
};

// "InvalidArgument", "NotFound", ... ("OK" for kOk). Never empty.
std::string_view StatusCodeName(StatusCode code);

// The outcome of an operation: ok, or an error code with a human-readable message.
//
// Contract: callers must look at every returned Status ([[nodiscard]]); to discard one on
// purpose, cast it to void and say why in a comment. The message names what failed and the
// offending value ("bundle field 'd_k': expected even, got 7"); it is for people and logs,
// never parsed.
//
// Lifecycle: a value type. An ok Status is a null pointer (no allocation), so returning one on
// the hot path costs one register; an error allocates its message once. Moves are noexcept
// and leave the source ok; copies duplicate the message.
//
// Concurrency: like std::string: distinct objects may be used from different threads, and one
// object may be read concurrently, but not written while read.
class [[nodiscard]] Status {
 public:
  // An ok Status.
  Status() noexcept = default;
  // `code` kOk ignores `message` and yields an ok Status; prefer the named factories below.
  Status(StatusCode code, std::string message);

  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&& other) noexcept = default;
  Status& operator=(Status&& other) noexcept = default;
  ~Status() = default;

  static Status OK() noexcept { return {}; }

  // Factories, one per error code, taking a fmt format string checked at compile time:
  //   return Status::InvalidArgument("field '{}' has {} entries, want {}", name, n, want);
  // A message that is already a runtime string goes through "{}".
  template <class... Args>
  static Status InvalidArgument(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kInvalidArgument, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status NotFound(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kNotFound, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status AlreadyExists(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kAlreadyExists, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status OutOfRange(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kOutOfRange, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status FailedPrecondition(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kFailedPrecondition, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status Corruption(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kCorruption, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status IOError(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kIOError, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status Unavailable(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kUnavailable, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status Aborted(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kAborted, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status ResourceExhausted(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kResourceExhausted, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  static Status Internal(fmt::format_string<Args...> format, Args&&... args) {
    return Make(StatusCode::kInternal, format, std::forward<Args>(args)...);
  }

  bool ok() const noexcept { return state_ == nullptr; }
  StatusCode code() const noexcept { return state_ ? state_->code : StatusCode::kOk; }
  // Empty for an ok Status.
  std::string_view message() const noexcept {
    if (state_ == nullptr) {
      return {};
    }
    return state_->message;
  }

  // "OK", or "<CodeName>: <message>" ("<CodeName>" alone when the message is empty).
  std::string ToString() const;

  // The same error with "<context>: " prepended to the message, for adding what the caller
  // was doing as an error travels up:  return std::move(s).WithContext("loading bundle");
  // An ok Status stays ok.
  Status WithContext(std::string_view context) &&;

 private:
  struct State {
    StatusCode code;
    std::string message;
  };

  template <class... Args>
  static Status Make(StatusCode code, fmt::format_string<Args...> format, Args&&... args) {
    return {code, fmt::format(format, std::forward<Args>(args)...)};
  }

  std::unique_ptr<State> state_;  // Null iff ok.
};

template <class T>
class Result;

namespace internal {
// Aborts with the status printed: the end of a Result that was used without checking ok().
[[noreturn]] void DieOnResultMisuse(std::string_view what, const Status& status);

// What Result<T>'s value constructor accepts: anything T is constructible from, except the
// types the other constructors take.
template <class U, class T>
concept ResultValueArg =
    std::constructible_from<T, U&&> && !std::same_as<std::remove_cvref_t<U>, Result<T>> &&
    !std::same_as<std::remove_cvref_t<U>, Status> &&
    !std::same_as<std::remove_cvref_t<U>, std::in_place_t>;
}  // namespace internal

// Either a T or the non-ok Status saying why there is none. The return type of every
// operation that produces a value and can fail in an expected way.
//
//   Result<Bundle> LoadBundle(std::string_view path);
//   ROTOR_ASSIGN_OR_RETURN(Bundle bundle, LoadBundle(path));
//
// Contract: constructed implicitly from a T (or anything T is constructible from) or from a
// non-ok Status. Constructing one from an ok Status, or calling value()/*/-> on an error, is a
// programmer error: the process aborts with the status printed, in every build type (a check,
// not an assert, because continuing would read a T that does not exist).
//
// Lifecycle: a value type; move-only when T is. std::move(result).value() moves the T out and
// leaves the Result holding a moved-from T.
//
// Concurrency: as for T and Status: const access from several threads is safe.
//
// Limitations: T may not be a reference, Status, or a cv-qualified type. There is no
// Result<void>: return Status.
template <class T>
class [[nodiscard]] Result {
  static_assert(!std::is_reference_v<T>, "Result<T&> is not supported; return a pointer");
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Status>, "Result<Status>: return Status");
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>, "Result<const T>: drop const");

 public:
  using value_type = T;

  // From a value; implicit when U converts to T implicitly, like std::optional. ResultValueArg
  // excludes Result itself, so the copy and move constructors are not hidden (clang-tidy 14
  // does not read the concept, hence the NOLINT).
  template <internal::ResultValueArg<T> U = T>
  // NOLINTNEXTLINE(google-explicit-constructor,bugprone-forwarding-reference-overload)
  explicit(!std::convertible_to<U&&, T>) Result(U&& value)
      : storage_(std::in_place_index<kValueIndex>, std::forward<U>(value)) {}

  // Builds the T in place from `args`.
  template <class... Args>
  explicit Result(std::in_place_t /*tag*/, Args&&... args)
      : storage_(std::in_place_index<kValueIndex>, std::forward<Args>(args)...) {}

  // From an error; `status` must not be ok.
  Result(Status status)  // NOLINT(google-explicit-constructor): `return status;` must work.
      : storage_(std::in_place_index<kStatusIndex>, std::move(status)) {
    if (std::get<kStatusIndex>(storage_).ok()) [[unlikely]] {
      internal::DieOnResultMisuse("Result constructed from an ok Status", Status::OK());
    }
  }

  bool ok() const noexcept { return storage_.index() == kValueIndex; }

  // OK when holding a value, else the error.
  Status status() const& { return ok() ? Status::OK() : std::get<kStatusIndex>(storage_); }
  Status status() && { return ok() ? Status::OK() : std::move(std::get<kStatusIndex>(storage_)); }

  // The value; aborts (see class comment) when !ok().
  T& value() & {
    CheckOk();
    return *std::get_if<kValueIndex>(&storage_);
  }
  const T& value() const& {
    CheckOk();
    return *std::get_if<kValueIndex>(&storage_);
  }
  T&& value() && {
    CheckOk();
    return std::move(*std::get_if<kValueIndex>(&storage_));
  }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  static constexpr std::size_t kStatusIndex = 0;
  static constexpr std::size_t kValueIndex = 1;

  void CheckOk() const {
    if (!ok()) [[unlikely]] {
      internal::DieOnResultMisuse("Result::value() called on an error",
                                  std::get<kStatusIndex>(storage_));
    }
  }

  std::variant<Status, T> storage_;
};

}  // namespace rotor

// Lets fmt and spdlog print a Status: fmt::format("{}", status) == status.ToString(). No format
// spec is accepted. (Not derived from formatter<string_view>: with fmt 9 that needs
// <fmt/format.h> in every includer.)
template <>
struct fmt::formatter<rotor::Status> {
  static constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  template <class FormatContext>
  auto format(const rotor::Status& status, FormatContext& ctx) const {
    return fmt::format_to(ctx.out(), "{}", status.ToString());
  }
};

#define ROTOR_STATUS_CONCAT_INNER_(a, b) a##b
#define ROTOR_STATUS_CONCAT_(a, b) ROTOR_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (a Status) once; returns it from the enclosing function when not ok. The
// enclosing function returns Status or any Result<U>.
//   ROTOR_RETURN_IF_ERROR(store.Put(key, value));
#define ROTOR_RETURN_IF_ERROR(expr)                                    \
  do {                                                                 \
    if (::rotor::Status rotor_status_ = (expr); !rotor_status_.ok()) { \
      return rotor_status_;                                            \
    }                                                                  \
  } while (false)

// Evaluates `expr` (a Result<T>) once; on error returns its Status from the enclosing function
// (which returns Status or any Result<U>), otherwise moves the value into `lhs`, which may be a
// declaration (`auto window`, `const Bundle& b`) or an existing variable.
//   ROTOR_ASSIGN_OR_RETURN(auto bundle, LoadBundle(path));
// Limitations: expands to several statements, so it cannot be the body of an unbraced if; a
// `lhs` with a top-level comma (`std::pair<int, int> p`, `auto [a, b]`) does not fit in a macro
// argument: declare it `auto` and unpack on the next line.
#define ROTOR_ASSIGN_OR_RETURN(lhs, expr) \
  ROTOR_ASSIGN_OR_RETURN_IMPL_(ROTOR_STATUS_CONCAT_(rotor_result_, __COUNTER__), lhs, expr)

// NOLINTBEGIN(bugprone-macro-parentheses): `lhs` is a declaration and `result` a fresh name;
// neither can be parenthesized.
#define ROTOR_ASSIGN_OR_RETURN_IMPL_(result, lhs, expr) \
  auto result = (expr);                                 \
  if (!result.ok()) {                                   \
    return std::move(result).status();                  \
  }                                                     \
  lhs = std::move(result).value()
// NOLINTEND(bugprone-macro-parentheses)

#endif  // ROTOR_COMMON_STATUS_H_
