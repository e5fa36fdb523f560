// The namespace lab's plan: a config's VPCs, instances, internet gateways and
// peerings as network namespaces on one machine, with real routing and the
// compiled filter (docs/lab.md). Pure: nothing here touches the kernel, the
// environment or the filesystem; lab.h carries a plan out.
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
//   <internet>           the internet (vpcfw:internet unless the caller names
//                        another): every address of 192.0.2.0/24,
//                        198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32
//                        outside the VPCs is a host here.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vpcfw/base/error.h"
#include "vpcfw/compile/ir.h"
#include "vpcfw/lab/routing.h"
#include "vpcfw/model/model.h"

namespace vpcfw::lab {

// The namespaces of model objects, as names::* names them.
std::string instanceNamespace(const model::Instance& inst);  // its `netns:` or "vpcfw:i:<name>"
std::string routerNamespace(const model::Vpc& vpc);          // "vpcfw-<vpc>"
std::string gatewayNamespace(const model::Vpc& vpc);         // "vpcfw:igw:<vpc>"

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
  std::string internet;                    // the internet namespace's name (planned only with a gateway)
  const NamespacePlan* find(std::string_view name) const;
};

// The policy-routing rules compared against the plan in a lab namespace:
// every rule but the kernel's defaults, whoever made it (the lab makes its
// own at priorities 1000..1999; anything else is a difference to remove).
bool isLabRule(const RuleSpec& r);

// What the lab builds for `m`, with `internetNs` as the internet namespace
// (a valid namespace name, names::isValidNamespaceName). Errors: the config
// places no instance in the lab, or cannot be compiled, or `internetNs`
// cannot name a namespace or is one the config's own objects use.
[[nodiscard]] Expected<LabPlan> planLab(const model::Model& m, const std::string& internetNs);

}  // namespace vpcfw::lab
