// Namespaces, links, addresses, routes and policy-routing rules over
// rtnetlink (libmnl), for the namespace lab. An Rtnl session holds one
// netlink socket opened inside a namespace; the socket stays there, so its
// requests act in that namespace from whatever thread sends them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/net/address.h"

struct mnl_socket;

namespace vpcfw::lab {

using Netns = std::optional<std::string>;

// Creates /run/netns/NAME (as `ip netns add` does) / removes it.
[[nodiscard]] Expected<void> createNamespace(const std::string& name);
[[nodiscard]] Expected<void> deleteNamespace(const std::string& name);
// Names in /run/netns starting with `prefix`.
std::vector<std::string> listNamespaces(const std::string& prefix);
bool namespaceExists(const std::string& name);

// Writes a sysctl of that namespace, e.g. "net/ipv4/ip_forward" = "1".
[[nodiscard]] Expected<void> writeSysctl(const Netns& ns, const std::string& key, const std::string& value);

struct RouteSpec {
  enum class Type { kUnicast, kThrow, kLocal, kBlackhole };
  net::Cidr dst;
  std::string ifname;                      // empty for throw / blackhole
  std::optional<net::IpAddress> gateway;   // else on-link
  std::uint32_t table = 254;               // RT_TABLE_MAIN
  Type type = Type::kUnicast;
  bool onlink = false;                     // the gateway is on the link, whatever its address
};

// A policy-routing rule: packets from `from` look up `table`.
struct RuleSpec {
  net::Cidr from;
  std::uint32_t table = 254;
  std::uint32_t priority = 0;
};

bool operator==(const RouteSpec& a, const RouteSpec& b);
bool operator==(const RuleSpec& a, const RuleSpec& b);
std::string describe(const RouteSpec& r);  // "10.0.0.0/16 via 169.254.0.2 dev igw0 table 100", ...
std::string describe(const RuleSpec& r);   // "from 10.0.1.0/24 lookup 100 priority 1000"

struct AddressInfo {
  std::string ifname;
  net::IpAddress address;
  int prefix = 0;
};

struct LinkInfo {
  std::string name;
  unsigned index = 0;
  bool up = false;
  std::uint64_t rxPackets = 0, txPackets = 0;
};

class Rtnl {
 public:
  // A session in namespace `ns` (nullopt: the caller's own).
  [[nodiscard]] static Expected<Rtnl> open(const Netns& ns);
  Rtnl(Rtnl&& o) noexcept;
  Rtnl& operator=(Rtnl&& o) noexcept;
  Rtnl(const Rtnl&) = delete;
  Rtnl& operator=(const Rtnl&) = delete;
  ~Rtnl();

  // A veth pair: `name` here, `peer` in namespace `peerNs` (nullopt: here).
  [[nodiscard]] Expected<void> createVeth(const std::string& name, const Netns& peerNs, const std::string& peer);
  [[nodiscard]] Expected<void> setLinkUp(const std::string& ifname);
  [[nodiscard]] Expected<void> deleteLink(const std::string& ifname);  // a veth takes its peer with it
  // Adds addr/prefix to ifname (IPv6 without duplicate address detection).
  [[nodiscard]] Expected<void> addAddress(const std::string& ifname, const net::IpAddress& addr, int prefix);
  [[nodiscard]] Expected<void> addRoute(const RouteSpec& r);
  [[nodiscard]] Expected<void> addRule(const RuleSpec& r);
  [[nodiscard]] Expected<unsigned> ifindex(const std::string& ifname);
  [[nodiscard]] Expected<std::vector<LinkInfo>> links();
  // Routes vpcfw made (protocol static), in every table; rules in every family.
  [[nodiscard]] Expected<std::vector<RouteSpec>> staticRoutes();
  [[nodiscard]] Expected<std::vector<RuleSpec>> rules();
  [[nodiscard]] Expected<std::vector<AddressInfo>> addresses();
  [[nodiscard]] Expected<void> deleteRoute(const RouteSpec& r);
  [[nodiscard]] Expected<void> deleteRule(const RuleSpec& r);

 private:
  explicit Rtnl(mnl_socket* s) : sock_(s) {}
  Expected<void> talk(void* nlh, const std::string& what);
  Expected<void> dump(int type, int family, std::size_t headerSize, const std::function<void(const void* nlh)>& each,
                      const std::string& what);
  Expected<std::string> ifnameOf(unsigned index);
  void fillRoute(void* nlh, const RouteSpec& r, bool add, Expected<void>& status);
  mnl_socket* sock_ = nullptr;
  std::uint32_t seq_ = 1;
  int lastErrno_ = 0;  // the kernel's answer to the last failed request
  std::map<std::string, unsigned> indexCache_;
};

}  // namespace vpcfw::lab
