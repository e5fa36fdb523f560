// Running kernel calls inside a named network namespace. A netlink socket
// stays in the namespace of the thread that created it, so sockets are opened
// on a short-lived thread that joined the namespace (netlink-notes.md §4).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "vpcfw/base/error.h"

namespace vpcfw::nft {

// /run/netns/NAME for a name made by `ip netns add` (or vpcfw's lab); empty when
// NAME is not a valid namespace name (names::namespacePath), so no argument
// can point it outside /run/netns.
std::string netnsPath(const std::string& name);

// Runs `fn` on a thread inside namespace `name` (nullopt: the caller's own)
// and returns its result. Errors opening or joining the namespace come back
// as kKernel errors naming the namespace.
[[nodiscard]] Expected<void> runInNetns(const std::optional<std::string>& name,
                                        const std::function<Expected<void>()>& fn);

// The identity of a network namespace, "<dev>-<inode>" of its nsfs file:
// of /run/netns/NAME, or (nullopt) of the calling thread's own namespace.
// The same namespace has the same identity however it was reached (by name,
// or from inside through `ip netns exec`); fabric locks are keyed by it.
[[nodiscard]] Expected<std::string> netnsIdentity(const std::optional<std::string>& name);

}  // namespace vpcfw::nft
