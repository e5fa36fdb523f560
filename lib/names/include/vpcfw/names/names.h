// The one owner of the names vpcfw gives kernel objects and files: config
// object names, network-namespace names (path components under /run/netns),
// interface names (IFNAMSIZ), and how each lab object is named. Everything
// else asks this module; nothing else builds or checks those names, so the
// limits live in one place (hardening.md §1).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vpcfw::names {

// ------------------------------------------------------------- limits
inline constexpr std::size_t kObjectNameMax = 64;      // VPC, subnet, group, instance, ... names
inline constexpr std::size_t kInterfaceNameMax = 15;   // IFNAMSIZ - 1
inline constexpr std::size_t kNamespaceNameMax = 100;  // a /run/netns entry, with room for state-file names
inline constexpr std::size_t kHostNameMax = 64;

// A config object name: 1..64 of [A-Za-z0-9._-]. Names reach chain and set
// names, namespace and interface names, file names and messages; this is the
// alphabet every one of them accepts.
bool isValidObjectName(std::string_view name);
// A network namespace name: one path component under /run/netns of
// 1..kNamespaceNameMax bytes from [A-Za-z0-9._:@+-], not starting with '.'.
bool isValidNamespaceName(std::string_view name);
// An interface name the kernel accepts and every consumer can carry (nft
// text too, where '*' is a wildcard): 1..15 of [A-Za-z0-9._-], not "." or "..".
bool isValidInterfaceName(std::string_view name);
// Interfaces a host needs for itself, or names with a meaning of their own
// in /proc/sys/net (conf/all, conf/default): never an ENI.
bool isReservedInterface(std::string_view name);
// A host name for host mode (the fabric a host's rules are applied as).
bool isValidHostName(std::string_view name);

// ---------------------------------------------------- lab namespaces
// Every namespace the lab generates starts with one of these; a user's own
// `netns:` may not, so generated and chosen names can never meet.
inline constexpr std::string_view kRouterPrefix = "vpcfw-";  // VPC names cannot hold ':'
inline constexpr std::string_view kOtherPrefix = "vpcfw:";
inline constexpr std::string_view kDefaultInternetNamespace = "vpcfw:internet";
bool hasGeneratedPrefix(std::string_view ns);

std::string routerNamespace(std::string_view vpc);   // "vpcfw-<vpc>": the VPC's fabric
std::string gatewayNamespace(std::string_view vpc);  // "vpcfw:igw:<vpc>"
// "vpcfw:i:<instance>", or the instance's own `netns:` when it has one.
std::string instanceNamespace(std::string_view instance, std::string_view netnsOverride = {});
// /run/netns/<ns>; empty when `ns` is not a valid namespace name, so that no
// caller can be talked into a path outside /run/netns.
std::string namespacePath(std::string_view ns);

// ---------------------------------------------------- lab interfaces
// PREFIX + name when it fits 15 bytes, else a shortened name with a hash of
// the full one. Distinct inputs can still meet (the hash has 16 bits):
// validation checks the final names of a config for collisions.
std::string eniInterface(std::string_view instance);         // "eni-…", router side of an instance
std::string peeringInterface(std::string_view peering);      // "pcx-…", both routers of a peering
std::string gatewayInternetInterface(std::string_view vpc);  // "igw-…", the internet's side of a gateway
// Fixed names inside generated namespaces (never built from config input).
inline constexpr std::string_view kInstanceInterface = "eth0";
inline constexpr std::string_view kRouterGatewayInterface = "igw0";
inline constexpr std::string_view kGatewayVpcInterface = "vpc0";
inline constexpr std::string_view kGatewayInternetInterface = "inet0";

}  // namespace vpcfw::names
