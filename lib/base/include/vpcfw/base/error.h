// The error value every fallible vpcfw function returns inside expected<>.
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
  kInternal,         // an invariant broke: a bug in vpcfw
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

template <class T>
using Expected = expected<T, Error>;

inline unexpected<Error> makeError(ErrorCode code, std::string message) {
  return unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace vpcfw
