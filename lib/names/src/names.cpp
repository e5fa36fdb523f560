// Name rules and the lab's naming scheme (see names.h).
#include "vpcfw/names/names.h"

#include <cstdio>
#include <algorithm>
#include <array>
#include <cstdint>

namespace vpcfw::names {
namespace {

bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

std::uint32_t fnv1a(std::string_view s) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

// PREFIX + name, or PREFIX + the first (10 - |PREFIX|) bytes + "-" + 4 hex digits.
std::string shortened(std::string_view prefix, std::string_view name) {
  std::string n = std::string(prefix) + std::string(name);
  if (n.size() <= kInterfaceNameMax) return n;
  char hash[8];
  std::snprintf(hash, sizeof hash, "-%04x", static_cast<unsigned>(fnv1a(name) & 0xffff));
  return std::string(prefix) + std::string(name.substr(0, 10 - prefix.size())) + hash;
}

}  // namespace

bool isValidObjectName(std::string_view name) {
  if (name.empty() || name.size() > kObjectNameMax) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool isValidNamespaceName(std::string_view name) {
  if (name.empty() || name.size() > kNamespaceNameMax || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return alnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '@' || c == '+';
  });
}

bool isValidInterfaceName(std::string_view name) {
  if (name.empty() || name.size() > kInterfaceNameMax || name == "." || name == "..") return false;
  // Narrower than the kernel allows: a name also appears in nft text, where
  // '*' is a wildcard and quotes end strings.
  return std::all_of(name.begin(), name.end(), [](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool isReservedInterface(std::string_view name) { return name == "lo" || name == "all" || name == "default"; }

bool isValidHostName(std::string_view name) {
  if (name.empty() || name.size() > kHostNameMax) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool hasGeneratedPrefix(std::string_view ns) { return ns.starts_with(kRouterPrefix) || ns.starts_with(kOtherPrefix); }

std::string routerNamespace(std::string_view vpc) { return std::string(kRouterPrefix) + std::string(vpc); }
std::string gatewayNamespace(std::string_view vpc) { return std::string(kOtherPrefix) + "igw:" + std::string(vpc); }
std::string instanceNamespace(std::string_view instance, std::string_view netnsOverride) {
  if (!netnsOverride.empty()) return std::string(netnsOverride);
  return std::string(kOtherPrefix) + "i:" + std::string(instance);
}

std::string namespacePath(std::string_view ns) {
  if (!isValidNamespaceName(ns)) return {};
  return "/run/netns/" + std::string(ns);
}

std::string eniInterface(std::string_view instance) { return shortened("eni-", instance); }
std::string peeringInterface(std::string_view peering) { return shortened("pcx-", peering); }
std::string gatewayInternetInterface(std::string_view vpc) { return shortened("igw-", vpc); }

}  // namespace vpcfw::names
