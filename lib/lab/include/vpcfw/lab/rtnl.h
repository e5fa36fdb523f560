// Namespaces, links, addresses and routes over rtnetlink (libmnl), for the
// namespace lab. Every call acts in a named network namespace (nullopt: the
// caller's own) and returns the kernel's error as text.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/net/address.h"

namespace vpcfw::lab {

using Netns = std::optional<std::string>;

// Creates /run/netns/NAME (as `ip netns add` does) / removes it.
[[nodiscard]] Expected<void> createNamespace(const std::string& name);
[[nodiscard]] Expected<void> deleteNamespace(const std::string& name);
// Names in /run/netns starting with `prefix`.
std::vector<std::string> listNamespaces(const std::string& prefix);

// A veth pair: `name` in namespace `ns`, `peer` in namespace `peerNs`.
[[nodiscard]] Expected<void> createVeth(const Netns& ns, const std::string& name, const Netns& peerNs,
                                        const std::string& peer);
[[nodiscard]] Expected<void> setLinkUp(const Netns& ns, const std::string& ifname);
// Adds addr/prefix to ifname (IPv6 without duplicate address detection).
[[nodiscard]] Expected<void> addAddress(const Netns& ns, const std::string& ifname, const net::IpAddress& addr, int prefix);
// A route to dst via ifname, through `gateway` when given (else on-link).
[[nodiscard]] Expected<void> addRoute(const Netns& ns, const net::Cidr& dst, const std::string& ifname,
                                      const std::optional<net::IpAddress>& gateway = std::nullopt);
// Writes a sysctl of that namespace, e.g. "net/ipv4/ip_forward" = "1".
[[nodiscard]] Expected<void> writeSysctl(const Netns& ns, const std::string& key, const std::string& value);

}  // namespace vpcfw::lab
