// The namespace lab: a config's VPCs, instances, internet gateways and
// peerings as network namespaces on one machine, with real routing and the
// compiled filter (docs/lab.md).
//
//   vpcfw-<vpc>          the VPC's router: the fabric its ruleset is applied in.
//                        One policy-routing table per subnet (the subnet's route
//                        table); packets from elsewhere (peerings, the gateway)
//                        see only the VPC's own instances, so nothing transits.
//   vpcfw:i:<instance>   an instance (or its own `netns:`): eth0 with its
//                        addresses, a default route to its subnet's router address.
//   vpcfw:igw:<vpc>      the VPC's internet gateway: 1:1 NAT between each
//                        instance's public and private IPv4 address, IPv6 as is,
//                        nothing else through.
//   vpcfw:internet       the internet: every address of 192.0.2.0/24,
//                        198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32
//                        outside the VPCs is a host here.
//
// The plan (planLab) is pure and says everything the lab makes; labUp
// carries it out over rtnetlink and libnftnl, in parallel where it can.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/ir.h"
#include "vpcfw/lab/rtnl.h"
#include "vpcfw/model/model.h"

namespace vpcfw::lab {

// "vpcfw:internet", or $VPCFW_LAB_INTERNET (several labs side by side, tests).
std::string internetNamespace();

// The namespaces of model objects, as names::* names them.
std::string instanceNamespace(const model::Instance& inst);  // its `netns:` or "vpcfw:i:<name>"
std::string routerNamespace(const model::Vpc& vpc);           // "vpcfw-<vpc>"
std::string gatewayNamespace(const model::Vpc& vpc);          // "vpcfw:igw:<vpc>"

// The internet's host ranges in the lab (the documentation ranges).
const std::vector<net::Cidr>& internetRanges();
bool isLabInternetHost(const net::IpAddress& a);

struct AddressPlan {
  std::string ifname;
  net::IpAddress address;
  int prefix = 32;
};

struct NamespacePlan {
  enum class Role { kRouter, kInstance, kGateway, kInternet };
  std::string name;
  Role role = Role::kInstance;
  std::string object;  // the VPC, instance or gateway it stands for
  std::vector<std::pair<std::string, std::string>> sysctls;
  std::vector<std::string> up;  // interfaces to bring up ("lo" included)
  std::vector<AddressPlan> addresses;
  std::vector<RouteSpec> routes;
  std::vector<RuleSpec> rules;
};
std::string_view roleName(NamespacePlan::Role r);  // "router", "instance", "gateway", "internet"

struct LinkPlan {  // a veth pair, made from `ns`
  std::string ns, name, peerNs, peer;
  std::string what;  // "instance web1", "peering a-b", ...
};

struct LabPlan {
  std::vector<NamespacePlan> namespaces;  // routers first, then gateways, the internet, instances
  std::vector<LinkPlan> links;
  std::vector<compile::Ruleset> rulesets;  // routers' filters and gateways' NAT, fabric = namespace
  std::vector<std::string> notes;          // what the lab leaves out, for people
  const NamespacePlan* find(std::string_view name) const;
};

// What the lab builds for `m`. Errors: the config places no instance in the
// lab, or cannot be compiled.
[[nodiscard]] Expected<LabPlan> planLab(const model::Model& m);

struct LabOptions {
  unsigned jobs = 0;  // parallel workers; 0: a few per CPU
  std::function<void(const std::string&)> progress;  // one line per phase
};

struct LabReport {
  std::vector<std::string> namespaces;  // created
  std::vector<std::pair<std::string, double>> phases;  // phase, milliseconds
  std::size_t links = 0, addresses = 0, routes = 0, rules = 0;
};

// Builds the plan's namespaces and applies its rulesets. Refuses when one of
// its namespaces already exists. On failure, whatever was created is removed.
[[nodiscard]] Expected<LabReport> labUp(const LabPlan& plan, const LabOptions& options);

// Without a plan: removes every namespace starting with "vpcfw-" or "vpcfw:"
// (also what a crash or a half-built lab left). With one: only the plan's
// namespaces, and the internet when no gateway is left on it. Returns how
// many went.
std::size_t labDown(const LabPlan* plan, const std::string& configPath = {});

// A running lab next to its plan.
struct NamespaceStatus {
  std::string name;
  std::string role, object;
  bool exists = false;
  bool planned = false;      // the config's plan has it
  std::size_t interfacesUp = 0, interfaces = 0;  // lo excluded
  std::uint64_t rxPackets = 0, txPackets = 0;
  bool hasRuleset = false;   // a vpcfw table is loaded
  bool rulesetCurrent = false;  // and it is what the config compiles to
};
struct LabStatus {
  std::vector<NamespaceStatus> namespaces;
  bool upToDate() const;  // every planned namespace exists, rules current, nothing extra
};
// With a plan: that lab's namespaces (planned, and made but no longer
// planned per its state file); without: every vpcfw namespace.
[[nodiscard]] Expected<LabStatus> labStatus(const LabPlan* plan, const std::string& configPath = {});

// Changes a running lab to `plan` without rebuilding it: namespaces the
// plan adds are built and wired in, those it drops (per the lab's state file)
// removed, an instance whose addresses changed is rebuilt; links, addresses,
// routes and policy-routing rules are reconciled (missing ones added, stale
// ones removed); every ruleset is brought up to date incrementally, so
// established flows survive what the rules still allow.
struct LabApplyReport {
  std::vector<std::string> added, removed, rebuilt;  // namespaces
  std::vector<std::string> changes;                  // "<namespace>: + route ...", "<fabric>: <ruleset change>"
};
[[nodiscard]] Expected<LabApplyReport> labApply(const LabPlan& plan, const std::string& configPath,
                                                const LabOptions& options);

// Where a lab built from `configPath` records its namespaces
// (/run/vpcfw/lab/<hash>.state), so apply and down find what it made even
// after the config changed.
std::string stateFile(const std::string& configPath);
[[nodiscard]] Expected<void> writeState(const LabPlan& plan, const std::string& configPath);
std::vector<std::string> readState(const std::string& configPath);

}  // namespace vpcfw::lab
