// The policy model: VPCs, subnets, network ACLs, security groups, prefix lists,
// route tables, internet gateways, peerings and instances (ENIs).
//
// The config loader fills names, values and source positions; validate()
// (validate.h) checks every AWS rule and quota, adds the AWS defaults and fills
// the resolved indices. Only a model that validated without errors is used by
// anything else, and from then on it is treated as immutable.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "vpcfw/base/diagnostic.h"
#include "vpcfw/model/shared_list.h"
#include "vpcfw/net/address.h"
#include "vpcfw/net/protocol.h"

namespace vpcfw::model {

inline constexpr std::size_t kNone = static_cast<std::size_t>(-1);

// The name of a field an Origin records: a key of the config schema, or the
// k-th entry of a list under that key ("cidr" item 2). A small id rather than
// a string: every rule's origin holds several, and a model holds one origin per
// object and rule. A literal that is no schema key does not compile.
class FieldName {
 public:
  static constexpr std::string_view kKeys[] = {"name",
                                               "vpc",
                                               "cidr",
                                               "ipv6_cidr",
                                               "description",
                                               "ingress",
                                               "egress",
                                               "default",
                                               "rule",
                                               "protocol",
                                               "ports",
                                               "icmp_type",
                                               "icmp_code",
                                               "action",
                                               "group",
                                               "prefix_list",
                                               "entries",
                                               "max_entries",
                                               "main",
                                               "routes",
                                               "destination",
                                               "internet_gateway",
                                               "peering",
                                               "requester",
                                               "accepter",
                                               "status",
                                               "subnet",
                                               "private_ip",
                                               "secondary_ips",
                                               "ipv6_addresses",
                                               "public_ip",
                                               "security_groups",
                                               "netns",
                                               "host",
                                               "interface",
                                               "routed",
                                               "availability_zone",
                                               "route_table",
                                               "network_acl",
                                               "profile",
                                               "vpcs",
                                               "vpc_cidr_blocks",
                                               "subnets_per_vpc",
                                               "nacls_per_vpc",
                                               "nacl_rules_per_direction",
                                               "sg_rules_per_direction",
                                               "groups_per_eni",
                                               "groups_per_vpc",
                                               "peerings_per_vpc",
                                               "routes_per_table",
                                               "prefix_list_entries",
                                               "version",
                                               "limits",
                                               "subnets",
                                               "network_acls",
                                               "prefix_lists",
                                               "route_tables",
                                               "internet_gateways",
                                               "peerings",
                                               "instances",
                                               "flow_logs",
                                               "instance",
                                               "traffic_type",
                                               "log_format",
                                               "max_aggregation_interval",
                                               "account_id",
                                               "region",
                                               "files",
                                               "streams",
                                               "connection_tracking",
                                               "tcp_established_timeout",
                                               "udp_stream_timeout",
                                               "udp_timeout",
                                               "max_tracked_connections"};

  consteval FieldName(const char* key) : id_(static_cast<std::uint32_t>(keyIndex(key))) {
    if (keyIndex(key) < 0) throw "not a config key";  // makes the call not a constant expression
  }
  // A key read from a config; nothing when the schema has no such key.
  static std::optional<FieldName> named(std::string_view key) {
    const int k = keyIndex(key);
    if (k < 0) return std::nullopt;
    return FieldName(static_cast<std::uint32_t>(k));
  }
  // The k-th entry (0-based) of the list under this key. Entries past 2^24
  // (more than a config file can hold) share one name.
  FieldName item(std::size_t k) const {
    const std::size_t n = std::min<std::size_t>(k + 1, (std::size_t{1} << 24) - 1);
    return FieldName((id_ & 0xff) | static_cast<std::uint32_t>(n) << 8);
  }
  bool operator==(const FieldName&) const = default;
  std::uint32_t id() const { return id_; }

 private:
  explicit constexpr FieldName(std::uint32_t id) : id_(id) {}
  static constexpr int keyIndex(std::string_view key) {
    for (std::size_t i = 0; i < std::size(kKeys); ++i)
      if (kKeys[i] == key) return static_cast<int>(i);
    return -1;
  }
  std::uint32_t id_;
};

// Where an object and its individual fields were written in the config. The
// file name is one string shared by all origins of a file; up to kInline
// fields live in the origin itself and the rest in a list that copies share,
// so copying an origin allocates nothing.
class Origin {
 public:
  struct Field {
    std::uint32_t name, line, column;  // name: FieldName::id()
    bool operator==(const Field&) const = default;
  };
  static constexpr std::size_t kInline = 4;

  // The object itself: file, 1-based line and column (0 = unknown).
  SourceLocation at() const { return SourceLocation{file_ ? *file_ : std::string(), int(line_), int(column_)}; }
  int line() const { return static_cast<int>(line_); }
  void place(std::shared_ptr<const std::string> file, int line, int column) {
    file_ = std::move(file);
    line_ = static_cast<std::uint32_t>(line);
    column_ = static_cast<std::uint32_t>(column);
  }
  // Placed where `o`'s object is, without its fields (AWS defaults made for a VPC).
  void placeAs(const Origin& o) { place(o.file_, o.line(), static_cast<int>(o.column_)); }

  // The position of `field`, or of the object when the field was not written.
  SourceLocation of(FieldName field) const;
  bool has(FieldName field) const { return find(field) != nullptr; }
  void set(FieldName field, int line, int column);

  // Same place and same fields (the same file name, whichever string holds it).
  bool operator==(const Origin& o) const;

 private:
  const Field* find(FieldName field) const;

  std::shared_ptr<const std::string> file_;
  std::uint32_t line_ = 0, column_ = 0;
  std::uint32_t count_ = 0;
  std::array<Field, kInline> inline_{};
  SharedList<Field> more_;  // the fields past kInline: copies share them
};

enum class Direction { kIngress, kEgress };
std::string_view directionName(Direction d);  // "ingress" / "egress"
std::optional<Direction> parseDirection(std::string_view text);

enum class Action { kAllow, kDeny };
std::string_view actionName(Action a);  // "allow" / "deny"
std::optional<Action> parseAction(std::string_view text);

// ---------------------------------------------------------------- NACLs

struct NaclRule {
  int number = 0;  // 1..32766 for declared rules; 32767 (IPv4) / 32768 (IPv6) for the implicit "*"
  net::Protocol protocol;
  net::PortRange ports;  // tcp/udp only
  net::IcmpMatch icmp;   // icmp/icmpv6 only
  net::Cidr cidr;        // source for ingress, destination for egress
  Action action = Action::kDeny;
  Origin origin;

  bool isImplicitDeny() const { return number >= 32767; }
  std::string label() const;  // "100" or "*"

  bool operator==(const NaclRule&) const = default;
};

struct NetworkAcl {
  std::string name;
  std::string vpcName;
  std::size_t vpc = kNone;
  bool isDefault = false;         // the VPC's default NACL
  bool generated = false;         // made by vpcfw (AWS default), not written in the config
  std::vector<NaclRule> ingress;  // sorted by number after validation
  std::vector<NaclRule> egress;
  Origin origin;

  const std::vector<NaclRule>& rules(Direction d) const { return d == Direction::kIngress ? ingress : egress; }

  bool operator==(const NetworkAcl&) const = default;
};

// ------------------------------------------------------- security groups

struct GroupRef {
  std::string name;  // "web-sg" (same VPC) or "other-vpc/web-sg"
  std::size_t group = kNone;

  bool operator==(const GroupRef&) const = default;
};
struct PrefixListRef {
  std::string name;
  std::size_t prefixList = kNone;

  bool operator==(const PrefixListRef&) const = default;
};
using Peer = std::variant<net::Cidr, GroupRef, PrefixListRef>;

struct SgRule {
  net::Protocol protocol;
  net::PortRange ports;
  net::IcmpMatch icmp;
  Peer peer;  // source for ingress, destination for egress
  std::string description;
  Origin origin;
  int index = 0;  // 1-based position in its list, for messages and comments

  std::string peerText() const;

  bool operator==(const SgRule&) const = default;
};

struct SecurityGroup {
  std::string name;
  std::string vpcName;
  std::size_t vpc = kNone;
  std::string description;
  bool isDefault = false;        // the VPC's "default" group
  bool generated = false;        // made by vpcfw, not written in the config
  bool egressDefaulted = false;  // `egress` omitted: AWS's allow-all egress was added
  // Shared with the config cache and earlier models until changed.
  SharedList<SgRule> ingress;
  SharedList<SgRule> egress;
  std::vector<std::size_t> members;  // instances that carry this group (filled by validate)
  Origin origin;

  const std::vector<SgRule>& rules(Direction d) const { return (d == Direction::kIngress ? ingress : egress).get(); }
  std::string qualifiedName() const { return vpcName + "/" + name; }

  bool operator==(const SecurityGroup&) const = default;
};

struct PrefixList {
  std::string name;
  std::vector<net::Cidr> entries;
  int maxEntries = 0;
  net::Family family = net::Family::kIpv4;
  Origin origin;

  bool operator==(const PrefixList&) const = default;
};

// ---------------------------------------------------------------- routing

struct Route {
  enum class Target { kLocal, kInternetGateway, kPeering };
  net::Cidr destination;
  Target target = Target::kLocal;
  std::string targetName;  // gateway or peering name; empty for local
  std::size_t targetIndex = kNone;
  Origin origin;

  std::string targetText() const;  // "local", "igw prod-igw", "peering prod-shared"

  bool operator==(const Route&) const = default;
};

struct RouteTable {
  std::string name;
  std::string vpcName;
  std::size_t vpc = kNone;
  bool isMain = false;
  bool generated = false;
  std::vector<Route> routes;  // local routes for every VPC block are added by validate
  Origin origin;

  bool operator==(const RouteTable&) const = default;
};

struct InternetGateway {
  std::string name;
  std::string vpcName;
  std::size_t vpc = kNone;
  Origin origin;

  bool operator==(const InternetGateway&) const = default;
};

struct Peering {
  std::string name;
  std::string requesterName, accepterName;
  std::size_t requester = kNone, accepter = kNone;
  bool active = true;
  Origin origin;

  bool connects(std::size_t a, std::size_t b) const {
    return (requester == a && accepter == b) || (requester == b && accepter == a);
  }
  std::size_t other(std::size_t v) const { return v == requester ? accepter : requester; }

  bool operator==(const Peering&) const = default;
};

// ------------------------------------------------------ VPCs and subnets

struct Vpc {
  std::string name;
  std::vector<net::Cidr> cidrs;  // IPv4 blocks, the first is the primary
  std::optional<net::Cidr> ipv6Cidr;
  std::size_t defaultNacl = kNone;
  std::size_t defaultGroup = kNone;
  std::size_t mainRouteTable = kNone;
  std::size_t internetGateway = kNone;
  Origin origin;

  bool contains(const net::IpAddress& a) const;

  bool operator==(const Vpc&) const = default;
};

struct Subnet {
  std::string name;
  std::string vpcName;
  std::size_t vpc = kNone;
  net::Cidr cidr;
  std::optional<net::Cidr> ipv6Cidr;
  std::string availabilityZone;
  std::string routeTableName;  // empty: the VPC's main route table
  std::size_t routeTable = kNone;
  std::string naclName;  // empty: the VPC's default NACL
  std::size_t nacl = kNone;
  Origin origin;

  bool contains(const net::IpAddress& a) const { return cidr.contains(a) || (ipv6Cidr && ipv6Cidr->contains(a)); }

  bool operator==(const Subnet&) const = default;
};

// Where an instance's ENI lives when vpcfw enforces it.
struct Placement {
  enum class Kind { kLabNamespace, kHostInterface };
  Kind kind = Kind::kLabNamespace;
  std::string netns;      // lab namespace name; empty = derived from the instance name
  std::string host;       // host mode: the host's name
  std::string interface;  // host mode: the interface on that host
  // Host mode, `routed: true`: the interface is the host's side of a link to
  // a namespace, VM or container behind the host, which the host routes for
  // (a /32 or /128 per instance): the ENI's traffic crosses the host's
  // forward hook, filtered as in a lab router. false: the interface is the
  // host's own, filtered on input and output.
  bool routed = false;

  bool operator==(const Placement&) const = default;
};

// An ENI's connection tracking (AWS's ConnectionTrackingSpecification, and
// the tracked-connection allowance AWS sizes by instance type): idle
// timeouts in seconds and a cap on tracked flows. Unset fields take AWS's
// defaults (kDefault*); the compiler turns them into ct timeout objects and
// ct count rules (docs/ruleset.md, "Connection tracking").
struct ConnectionTracking {
  static constexpr int kDefaultTcpEstablished = 432000, kDefaultUdpStream = 180, kDefaultUdp = 30;
  std::optional<int> tcpEstablished, udpStream, udp;
  std::optional<std::uint32_t> maxTracked;  // none: no allowance
  Origin origin;                            // the `connection_tracking` mapping and its keys

  int tcpEstablishedOr() const { return tcpEstablished.value_or(kDefaultTcpEstablished); }
  int udpStreamOr() const { return udpStream.value_or(kDefaultUdpStream); }
  int udpOr() const { return udp.value_or(kDefaultUdp); }
  // Whether any idle timeout was written (an allowance alone sets none).
  bool setsTimeouts() const { return tcpEstablished || udpStream || udp; }
  bool operator==(const ConnectionTracking&) const = default;
};

struct Instance {
  std::string name;
  std::string subnetName;
  std::size_t subnet = kNone;
  std::size_t vpc = kNone;
  net::IpAddress privateIp;
  std::vector<net::IpAddress> secondaryIps;
  std::vector<net::IpAddress> ipv6Addresses;
  std::optional<net::IpAddress> publicIp;
  std::vector<std::string> groupNames;  // empty: the VPC's default group
  std::vector<std::size_t> groups;
  Placement placement;
  std::optional<ConnectionTracking> connectionTracking;
  Origin origin;

  bool owns(const net::IpAddress& a) const;  // any private/IPv6 address of this ENI

  bool operator==(const Instance&) const = default;
};

// ---------------------------------------------------------------- limits

// AWS quotas. The defaults are AWS's defaults; a config may raise adjustable
// ones up to AWS's maxima, or pick the lab profile, which lifts them all.
struct Limits {
  enum class Profile { kAws, kLab };
  Profile profile = Profile::kAws;
  int vpcs = 5;                    // per region (adjustable)
  int vpcCidrBlocks = 5;           // IPv4 blocks per VPC (max 50)
  int subnetsPerVpc = 200;         // (adjustable)
  int naclsPerVpc = 200;           // (adjustable)
  int naclRulesPerDirection = 20;  // per family, including "*" (max 40)
  int sgRulesPerDirection = 60;    // per group, per family (max 1000, with groups x rules <= 1000)
  int groupsPerEni = 5;            // (max 16)
  int groupsPerVpc = 2500;         // per region in AWS; a config is one region
  int peeringsPerVpc = 50;         // active (max 125)
  int routesPerTable = 50;         // non-propagated routes (max 1000)
  int prefixListEntries = 1000;    // per prefix list
  Origin origin;

  bool operator==(const Limits&) const = default;
};

// ------------------------------------------------------------- flow logs

// A flow log as AWS's CreateFlowLogs declares one (docs/flowlogs.md): which
// ENIs (those of a VPC, a subnet or one instance), which traffic, in which
// record format, aggregated over which interval, written where.
struct FlowLog {
  enum class Resource { kVpc, kSubnet, kInstance };
  enum class Traffic { kAccept, kReject, kAll };
  enum class Destination { kFiles, kStreams, kStdout };
  static constexpr std::string_view kLabAccountId = "123456789010";  // AWS's documented examples' account

  std::string name;
  Resource resourceKind = Resource::kVpc;
  std::string resourceName;
  std::size_t resource = kNone;  // index into vpcs, subnets or instances (by resourceKind); filled by validate
  Traffic traffic = Traffic::kAll;
  std::string logFormat;             // AWS's ${field} syntax, checked by the loader; empty = the version-2 default
  int maxAggregationInterval = 600;  // seconds: 60 or 600 (1..59 too with the lab profile)
  Destination destination = Destination::kStdout;
  std::string path;  // kFiles: the S3 layout's prefix directory; kStreams: the directory of per-ENI files
  std::string accountId{kLabAccountId};
  Origin origin;

  bool operator==(const FlowLog&) const = default;
};

struct Model {
  std::string sourceFile;
  Limits limits;
  std::string region = "us-east-1";  // what flow logs print as region, and their files' key layout
  Origin regionOrigin;
  std::vector<Vpc> vpcs;
  std::vector<Subnet> subnets;
  std::vector<NetworkAcl> nacls;
  std::vector<SecurityGroup> groups;
  std::vector<PrefixList> prefixLists;
  std::vector<RouteTable> routeTables;
  std::vector<InternetGateway> internetGateways;
  std::vector<Peering> peerings;
  std::vector<Instance> instances;
  std::vector<FlowLog> flowLogs;

  // Look-ups by name; kNone when absent.
  std::size_t findVpc(std::string_view name) const;
  std::size_t findSubnet(std::string_view name) const;
  std::size_t findInstance(std::string_view name) const;
  std::size_t findPrefixList(std::string_view name) const;
  // "name" is looked up in `vpc`; "vpc/name" in that VPC.
  std::size_t findGroup(std::string_view ref, std::size_t vpc) const;
  std::size_t findNacl(std::string_view name, std::size_t vpc) const;
  std::size_t findRouteTable(std::string_view name, std::size_t vpc) const;
  // The instance owning a private/IPv6 address, or kNone.
  std::size_t instanceWithAddress(const net::IpAddress& a) const;
  // The instance whose public IP this is, or kNone.
  std::size_t instanceWithPublicIp(const net::IpAddress& a) const;
  // The VPC whose blocks contain the address, or kNone.
  std::size_t vpcContaining(const net::IpAddress& a) const;
  // An active peering between two VPCs, or kNone.
  std::size_t activePeering(std::size_t a, std::size_t b) const;

  bool operator==(const Model&) const = default;
};

// The instances a flow log covers, in model order: those of its VPC or
// subnet, or its one instance. The compiler logs for their fabrics; the
// flow-log collector records their ENIs.
std::vector<std::size_t> flowLogInstances(const Model& m, const FlowLog& log);

}  // namespace vpcfw::model
