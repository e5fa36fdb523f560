// The error value every fallible vpcfw function returns inside expected<>.
// A system call's errno travels inside the error (converted where the call is
// made, on the thread that made it), so no caller ever reads a stale errno.
#pragma once

#include <string>
#include <utility>

#include "vpcfw/base/expected.h"

namespace vpcfw {

enum class ErrorCode {
  kInvalidArgument,  // bad input from the user or a config file
  kNotFound,         // a named thing does not exist
  kIo,               // reading or writing a file failed
  kKernel,           // the kernel refused a request
  kBusy,             // another vpcfw command holds the lock (or the kernel's generation moved)
  kNotOwned,         // the object exists but vpcfw cannot prove it made it
  kInternal,         // an invariant broke: a bug in vpcfw
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  int sysErrno = 0;  // the errno of the failed system call, 0 when none
};

// std::expected with the result marked [[nodiscard]] (libstdc++ 12 does not
// mark it): an ignored error is a compiler warning everywhere.
template <class T>
class [[nodiscard]] Expected : public expected<T, Error> {
 public:
  using expected<T, Error>::expected;
  Expected(const expected<T, Error>& e) : expected<T, Error>(e) {}
  Expected(expected<T, Error>&& e) : expected<T, Error>(std::move(e)) {}
};

inline unexpected<Error> makeError(ErrorCode code, std::string message, int sysErrno = 0) {
  return unexpected<Error>(Error{code, std::move(message), sysErrno});
}

// "what: strerror(err)" with the errno kept. Call it right after the failed
// call, passing errno explicitly.
unexpected<Error> systemError(ErrorCode code, const std::string& what, int err);

// The same error with "context: " in front of its message.
unexpected<Error> withContext(const Error& e, const std::string& context);

}  // namespace vpcfw
