// Running kernel calls inside a named network namespace. A netlink socket
// stays in the namespace of the thread that created it, so sockets are opened
// on a short-lived thread that joined the namespace (netlink-notes.md §4).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "vpcfw/base/error.h"

namespace vpcfw::nft {

// /run/netns/NAME for a name made by `ip netns add` (or vpcfw's lab).
std::string netnsPath(const std::string& name);

// Runs `fn` on a thread inside namespace `name` (nullopt: the caller's own)
// and returns its result. Errors opening or joining the namespace come back
// as kKernel errors naming the namespace.
Expected<void> runInNetns(const std::optional<std::string>& name, const std::function<Expected<void>()>& fn);

}  // namespace vpcfw::nft
