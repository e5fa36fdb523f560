// Building errors from failed system calls.
#include "vpcfw/base/error.h"

#include <cstring>

namespace vpcfw {

unexpected<Error> systemError(ErrorCode code, const std::string& what, int err) {
  return makeError(code, what + ": " + std::strerror(err), err);
}

unexpected<Error> withContext(const Error& e, const std::string& context) {
  return unexpected<Error>(Error{e.code, context + ": " + e.message, e.sysErrno});
}

}  // namespace vpcfw
