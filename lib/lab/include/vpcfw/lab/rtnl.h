// Namespaces, links, addresses, routes and policy-routing rules over
// rtnetlink (libmnl), for the namespace lab. An Rtnl session holds one
// netlink socket opened inside a namespace; the socket stays there, so its
// requests act in that namespace from whatever thread sends them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/lab/record.h"
#include "vpcfw/lab/routing.h"
#include "vpcfw/net/address.h"

struct mnl_socket;

namespace vpcfw::lab {

using Netns = std::optional<std::string>;

// Creates /run/netns/NAME (as `ip netns add` does) and returns its nsfs
// identity. `journal` is called with the identity after the namespace exists
// and before its name does (the file is made O_EXCL, then bind-mounted), so
// a record of it is on disk before anything could find it, whenever the
// process dies; an error from `journal` aborts the creation.
[[nodiscard]] Expected<NsId> createNamespace(const std::string& name,
                                             const std::function<Expected<void>(const NsId&)>& journal);
// The identity of /run/netns/NAME: nullopt when there is no such entry;
// kNotOwned when it is not an nsfs mount (a plain file, a symlink, ...).
// Errors: kInvalidArgument for a name that is not a valid namespace name.
[[nodiscard]] Expected<std::optional<NsId>> namespaceIdentity(const std::string& name);
// Removes /run/netns/NAME only when NAME is a valid namespace name and the
// entry is an nsfs mount with identity `id`: kNotOwned otherwise (left as
// it is). Nothing but that one mount point is ever unmounted.
[[nodiscard]] Expected<void> deleteNamespace(const std::string& name, const NsId& id);
// Removes /run/netns/NAME when it is an empty file with no namespace mounted
// on it: what a creation killed between making the name and mounting leaves
// (`ip netns add` leaves the same). Only for names a lab's record holds,
// which vpcfw journals before it makes the name. True when it removed one.
bool removePlaceholder(const std::string& name);
// Names in /run/netns starting with `prefix`.
std::vector<std::string> listNamespaces(const std::string& prefix);
bool namespaceExists(const std::string& name);
// Processes (other than this one) whose network namespace is `id`, as
// "pid (command)": they keep it alive after its name is removed.
std::vector<std::string> namespaceHolders(const NsId& id);

// Waits until interface `ifname` of namespace `ns` is gone (a removed
// namespace takes its veth ends along a moment later): subscribes to the
// namespace's link events and waits for the RTM_DELLINK, up to `timeout`.
// Returns false when it is still there then.
[[nodiscard]] Expected<bool> waitLinkGone(const std::string& ns, const std::string& ifname,
                                          std::chrono::milliseconds timeout);

// Writes a sysctl of that namespace, e.g. "net/ipv4/ip_forward" = "1".
[[nodiscard]] Expected<void> writeSysctl(const Netns& ns, const std::string& key, const std::string& value);

struct AddressInfo {
  std::string ifname;
  net::IpAddress address;
  int prefix = 0;
};

struct LinkInfo {
  std::string name;
  unsigned index = 0;
  unsigned peerIndex = 0;  // a veth's peer (IFLA_LINK), in the peer's namespace; 0 when none
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
  [[nodiscard]] Expected<void> deleteAddress(const std::string& ifname, const net::IpAddress& addr, int prefix);
  [[nodiscard]] Expected<void> addRoute(const RouteSpec& r);
  [[nodiscard]] Expected<void> addRule(const RuleSpec& r);
  [[nodiscard]] Expected<unsigned> ifindex(const std::string& ifname);
  [[nodiscard]] Expected<std::vector<LinkInfo>> links();
  // Routes that change forwarding, in every table but the local one and
  // whoever made them (all protocols but the kernel's); rules in every family.
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
