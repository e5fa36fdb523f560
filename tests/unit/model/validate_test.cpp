// Validation: every AWS rule and quota of vpc-semantics.md, as a table of small
// configs and the diagnostic each must produce (or not produce).
#include <doctest/doctest.h>

#include <fmt/format.h>

#include "support/test_config.h"
#include "vpcfw/config/loader.h"
#include "vpcfw/model/validate.h"

using vpcfw::test::hasDiagnostic;
using vpcfw::test::loadDiagnostics;

namespace {

// A VPC with one subnet; cases append what they test.
const std::string kBase = R"(vpcs:
  - {name: v, cidr: 10.0.0.0/16, ipv6_cidr: "2001:db8:1::/56"}
subnets:
  - {name: s, vpc: v, cidr: 10.0.1.0/24, ipv6_cidr: "2001:db8:1:1::/64"}
)";

struct Case {
  const char* name;
  std::string yaml;
  const char* expect;  // a substring of one diagnostic; nullptr = must be valid
};

void runCases(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    std::string name = c.name;
    CAPTURE(name);
    bool ok = false;
    auto d = loadDiagnostics(c.yaml, &ok);
    std::string all;
    for (const auto& x : d) all += x + "\n";
    CAPTURE(all);
    if (c.expect == nullptr) {
      CHECK(ok);
    } else {
      CHECK(hasDiagnostic(d, c.expect));
      if (std::string(c.expect).find("warning:") == std::string::npos) CHECK_FALSE(ok);
    }
  }
}

std::string naclWith(int rules, const char* cidr, const char* limits = "") {
  std::string y = kBase + limits + "network_acls:\n  - name: a\n    vpc: v\n    ingress:\n";
  for (int i = 1; i <= rules; ++i)
    y += fmt::format("      - {{rule: {}, protocol: tcp, ports: {}, cidr: \"{}\", action: allow}}\n", i, i, cidr);
  return y;
}

std::string groupWith(int rules, const char* limits = "") {
  std::string y = kBase + limits + "security_groups:\n  - name: g\n    vpc: v\n    ingress:\n";
  for (int i = 1; i <= rules; ++i) y += fmt::format("      - {{protocol: tcp, ports: {}, cidr: 10.0.0.0/8}}\n", i);
  return y;
}

std::string instanceWithGroups(int groups, const char* limits = "") {
  std::string y = kBase + limits + "security_groups:\n";
  std::string names;
  for (int i = 1; i <= groups; ++i) {
    y += fmt::format("  - {{name: g{}, vpc: v}}\n", i);
    names += fmt::format("{}g{}", i > 1 ? ", " : "", i);
  }
  return y + fmt::format("instances: [{{name: i, subnet: s, private_ip: 10.0.1.10, security_groups: [{}]}}]\n", names);
}

std::string vpcs(int count) {
  std::string y = "vpcs:\n";
  for (int i = 1; i <= count; ++i) y += fmt::format("  - {{name: v{}, cidr: 10.{}.0.0/16}}\n", i, i);
  return y;
}

}  // namespace

TEST_CASE("VPC blocks: size /16../28, count quota, no overlap, no reserved ranges, IPv6 /56") {
  runCases({
      {"/15 is too large", "vpcs: [{name: v, cidr: 10.0.0.0/15}]",
       "1:24: error: VPC CIDR block 10.0.0.0/15 must be between /16 and /28"},
      {"/29 is too small", "vpcs: [{name: v, cidr: 10.0.0.0/29}]",
       "VPC CIDR block 10.0.0.0/29 must be between /16 and /28"},
      {"/28 is fine", "vpcs: [{name: v, cidr: 10.0.0.0/28}]", nullptr},
      {"/16 is fine", "vpcs: [{name: v, cidr: 10.0.0.0/16}]", nullptr},
      {"blocks of one VPC overlap", "vpcs: [{name: v, cidr: [10.0.0.0/16, 10.0.128.0/17]}]",
       "1:38: error: VPC block 10.0.128.0/17 overlaps block 10.0.0.0/16 of the same VPC"},
      {"loopback range", "vpcs: [{name: v, cidr: 127.0.0.0/16}]", "overlaps reserved range 127.0.0.0/8"},
      {"link-local range", "vpcs: [{name: v, cidr: 169.254.0.0/16}]", "overlaps reserved range 169.254.0.0/16"},
      {"IPv6 block must be /56", "vpcs: [{name: v, cidr: 10.0.0.0/16, ipv6_cidr: '2001:db8::/64'}]",
       "VPC IPv6 block 2001:db8::/64 must be a /56"},
      {"IPv6 in cidr", "vpcs: [{name: v, cidr: '2001:db8::/56'}]", "VPC block 2001:db8::/56 is not IPv4"},
      {"five VPCs are fine", vpcs(5), nullptr},
      {"six VPCs exceed the quota", vpcs(6), "6 VPCs exceed the quota of 5 per region"},
      {"six VPCs with a raised quota", "limits: {vpcs: 6}\n" + vpcs(6), nullptr},
      {"six blocks exceed the quota",
       "vpcs: [{name: v, cidr: [10.0.0.0/16, 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16, 10.4.0.0/16, 10.5.0.0/16]}]",
       "VPC 'v' has 6 IPv4 CIDR blocks, above the quota of 5"},
      {"six blocks with a raised quota",
       "limits: {vpc_cidr_blocks: 6}\nvpcs: [{name: v, cidr: [10.0.0.0/16, 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16, "
       "10.4.0.0/16, 10.5.0.0/16]}]",
       nullptr},
      {"duplicate VPC names", "vpcs: [{name: v, cidr: 10.0.0.0/16}, {name: v, cidr: 10.1.0.0/16}]",
       "duplicate VPC name 'v'"},
      {"VPC without a block", "vpcs: [{name: v}]", "VPC 'v' is missing required key 'cidr'"},
  });
}

TEST_CASE("limits: adjustable up to AWS's maxima, rules x groups <= 1000") {
  runCases({
      {"NACL rules up to 40", "limits: {nacl_rules_per_direction: 40}", nullptr},
      {"NACL rules above 40", "limits: {nacl_rules_per_direction: 41}",
       "limit 'nacl_rules_per_direction' is 41, above AWS's maximum of 40"},
      {"groups per ENI up to 16 (with 62 rules)", "limits: {groups_per_eni: 16, sg_rules_per_direction: 62}", nullptr},
      {"groups per ENI above 16", "limits: {groups_per_eni: 17}",
       "limit 'groups_per_eni' is 17, above AWS's maximum of 16"},
      {"rules x groups above 1000", "limits: {groups_per_eni: 16, sg_rules_per_direction: 63}",
       "sg_rules_per_direction (63) x groups_per_eni (16) = 1008 exceeds AWS's maximum of 1000"},
      {"blocks above 50", "limits: {vpc_cidr_blocks: 51}", "above AWS's maximum of 50"},
      {"zero is not a limit", "limits: {vpcs: 0}", "limit 'vpcs' must be at least 1"},
      {"unknown profile", "limits: {profile: huge}", "unknown limits profile 'huge'"},
      {"lab profile lifts maxima", "limits: {profile: lab, groups_per_eni: 100, sg_rules_per_direction: 500}",
       "warning: the lab profile lifts AWS quotas"},
      {"unknown limit", "limits: {rules: 5}", "limits: unknown key 'rules'"},
  });
}

TEST_CASE("subnets: inside their VPC, /16../28, no overlap, IPv6 /64 inside the VPC's /56") {
  const std::string v = "vpcs: [{name: v, cidr: 10.0.0.0/16, ipv6_cidr: '2001:db8:1::/56'}]\n";
  runCases({
      {"outside the VPC", v + "subnets: [{name: s, vpc: v, cidr: 10.1.0.0/24}]",
       "2:35: error: subnet 's' block 10.1.0.0/24 is not inside any block of VPC 'v'"},
      {"too small", v + "subnets: [{name: s, vpc: v, cidr: 10.0.0.0/29}]",
       "subnet CIDR block 10.0.0.0/29 must be between /16 and /28"},
      {"overlap", v + "subnets: [{name: a, vpc: v, cidr: 10.0.0.0/24}, {name: b, vpc: v, cidr: 10.0.0.128/25}]",
       "subnet 'b' block 10.0.0.128/25 overlaps subnet 'a' block 10.0.0.0/24"},
      {"whole VPC is fine", v + "subnets: [{name: s, vpc: v, cidr: 10.0.0.0/16}]", nullptr},
      {"IPv6 /64 inside", v + "subnets: [{name: s, vpc: v, cidr: 10.0.0.0/24, ipv6_cidr: '2001:db8:1:ff::/64'}]",
       nullptr},
      {"IPv6 not /64", v + "subnets: [{name: s, vpc: v, cidr: 10.0.0.0/24, ipv6_cidr: '2001:db8:1::/60'}]",
       "subnet IPv6 block 2001:db8:1::/60 must be a /64"},
      {"IPv6 outside", v + "subnets: [{name: s, vpc: v, cidr: 10.0.0.0/24, ipv6_cidr: '2001:db8:2::/64'}]",
       "is not inside VPC block 2001:db8:1::/56"},
      {"IPv6 without VPC IPv6",
       "vpcs: [{name: v, cidr: 10.0.0.0/16}]\nsubnets: [{name: s, vpc: v, cidr: 10.0.0.0/24, ipv6_cidr: "
       "'2001:db8:1::/64'}]",
       "subnet 's' has an IPv6 block but VPC 'v' has none"},
      {"unknown VPC", v + "subnets: [{name: s, vpc: w, cidr: 10.0.0.0/24}]", "subnet 's' refers to unknown VPC 'w'"},
      {"unknown NACL with suggestion",
       v + "network_acls: [{name: web-acl, vpc: v}]\nsubnets: [{name: s, vpc: v, cidr: 10.0.0.0/24, network_acl: "
           "web-acl2}]",
       "subnet 's' refers to network ACL 'web-acl2', which VPC 'v' does not have"},
      {"NACL of another VPC",
       v + "network_acls: [{name: a, vpc: w}]\nsubnets: [{name: s, vpc: v, cidr: 10.0.0.0/24, network_acl: a}]",
       "network ACL 'a' refers to unknown VPC 'w'"},
      {"unknown route table", v + "subnets: [{name: s, vpc: v, cidr: 10.0.0.0/24, route_table: nope}]",
       "refers to route table 'nope', which VPC 'v' does not have"},
      {"duplicate subnet names",
       v + "subnets: [{name: s, vpc: v, cidr: 10.0.0.0/24}, {name: s, vpc: v, cidr: 10.0.1.0/24}]",
       "duplicate subnet name 's'"},
  });
}

TEST_CASE("instances: addresses inside the subnet, not reserved, not duplicated") {
  auto inst = [](const std::string& fields) {
    return kBase + "instances:\n  - {name: i, subnet: s, " + fields + "}\n";
  };
  runCases({
      {"network address", inst("private_ip: 10.0.1.0"), "address 10.0.1.0 is reserved by AWS in subnet 's'"},
      {"router", inst("private_ip: 10.0.1.1"), "address 10.0.1.1 is reserved by AWS"},
      {"DNS", inst("private_ip: 10.0.1.2"), "address 10.0.1.2 is reserved by AWS"},
      {"future use", inst("private_ip: 10.0.1.3"), "address 10.0.1.3 is reserved by AWS"},
      {"last address", inst("private_ip: 10.0.1.255"), "address 10.0.1.255 is reserved by AWS"},
      {"first usable", inst("private_ip: 10.0.1.4"), nullptr},
      {"last usable", inst("private_ip: 10.0.1.254"), nullptr},
      {"IPv6 reserved", inst("private_ip: 10.0.1.4, ipv6_addresses: ['2001:db8:1:1::1']"),
       "address 2001:db8:1:1::1 is reserved by AWS"},
      {"IPv6 fine", inst("private_ip: 10.0.1.4, ipv6_addresses: ['2001:db8:1:1::10']"), nullptr},
      {"outside the subnet", inst("private_ip: 10.0.2.10"),
       "address 10.0.2.10 of instance 'i' is not inside subnet 's' (10.0.1.0/24)"},
      {"IPv6 private_ip", inst("private_ip: '2001:db8:1:1::10'"), "private_ip 2001:db8:1:1::10 must be IPv4"},
      {"duplicate address",
       kBase + "instances:\n  - {name: a, subnet: s, private_ip: 10.0.1.10}\n  - {name: b, subnet: s, private_ip: "
               "10.0.1.10}\n",
       "7:38: error: address 10.0.1.10 of instance 'b' is already used by instance 'a'"},
      {"secondary duplicates primary", inst("private_ip: 10.0.1.10, secondary_ips: [10.0.1.10]"),
       "address 10.0.1.10 of instance 'i' is already used by instance 'i'"},
      {"public IP inside a VPC", inst("private_ip: 10.0.1.10, public_ip: 10.0.9.9"),
       "public_ip 10.0.9.9 lies inside VPC 'v'"},
      {"public IP without gateway", inst("private_ip: 10.0.1.10, public_ip: 203.0.113.9"),
       "warning: instance 'i' has a public IP but VPC 'v' has no internet gateway"},
      {"duplicate public IP",
       kBase + "instances:\n  - {name: a, subnet: s, private_ip: 10.0.1.10, public_ip: 203.0.113.9}\n"
               "  - {name: b, subnet: s, private_ip: 10.0.1.11, public_ip: 203.0.113.9}\n",
       "public_ip 203.0.113.9 is already used by instance 'a'"},
      {"unknown subnet", kBase + "instances: [{name: i, subnet: t, private_ip: 10.0.1.10}]",
       "instance 'i' refers to unknown subnet 't'"},
      {"netns and host", inst("private_ip: 10.0.1.10, netns: x, host: h, interface: eth0"),
       "instance 'i' sets both 'netns' and 'host'/'interface'"},
      {"interface name too long", inst("private_ip: 10.0.1.10, host: h, interface: abcdefghijklmnop"),
       "'abcdefghijklmnop' is not a valid interface name"},
      {"host without interface", inst("private_ip: 10.0.1.10, host: h"), "is missing required key 'interface'"},
      {"missing private_ip", inst("netns: x"), "instance 'i' is missing required key 'private_ip'"},
      {"duplicate instance names",
       kBase + "instances:\n  - {name: a, subnet: s, private_ip: 10.0.1.10}\n  - {name: a, subnet: s, private_ip: "
               "10.0.1.11}\n",
       "duplicate instance name 'a'"},
  });
}

TEST_CASE("instances: groups of their own VPC, at most the per-ENI quota, no repeats") {
  runCases({
      {"five groups", instanceWithGroups(5), nullptr},
      {"six groups", instanceWithGroups(6), "instance 'i' has 6 security groups, above the quota of 5 per ENI"},
      {"six groups with a raised quota", instanceWithGroups(6, "limits: {groups_per_eni: 6}\n"), nullptr},
      {"unknown group", kBase + "instances: [{name: i, subnet: s, private_ip: 10.0.1.10, security_groups: [nope]}]",
       "instance 'i' refers to unknown security group 'nope'"},
      {"group twice",
       kBase + "security_groups: [{name: g, vpc: v}]\ninstances: [{name: i, subnet: s, private_ip: 10.0.1.10, "
               "security_groups: [g, g]}]",
       "instance 'i' lists security group 'g' twice"},
      {"empty group list", kBase + "instances: [{name: i, subnet: s, private_ip: 10.0.1.10, security_groups: []}]",
       "instance 'i' lists no security groups"},
  });
  // A group of another VPC, even a peered one, cannot be put on an ENI.
  bool ok = true;
  auto d = loadDiagnostics(R"(vpcs:
  - {name: v, cidr: 10.0.0.0/16}
  - {name: w, cidr: 10.1.0.0/16}
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]
security_groups: [{name: g, vpc: w}]
instances: [{name: i, subnet: s, private_ip: 10.0.1.10, security_groups: [w/g]}]
)",
                           &ok);
  CHECK_FALSE(ok);
  CHECK(hasDiagnostic(d, "security group 'w/g' is in VPC 'w', not in instance 'i''s VPC 'v'"));
}

TEST_CASE("NACL rules: numbers 1..32766 unique per direction, fields consistent, quota per family") {
  auto acl = [](const std::string& rule) {
    return kBase + "network_acls:\n  - name: a\n    vpc: v\n    ingress:\n      - " + rule + "\n";
  };
  runCases({
      {"rule 0", acl("{rule: 0, protocol: all, cidr: 0.0.0.0/0, action: allow}"),
       "NACL rule number 0 is outside 1..32766"},
      {"rule 32767", acl("{rule: 32767, protocol: all, cidr: 0.0.0.0/0, action: allow}"),
       "NACL rule number 32767 is outside 1..32766"},
      {"rule 32766", acl("{rule: 32766, protocol: all, cidr: 0.0.0.0/0, action: allow}"), nullptr},
      {"rule 1", acl("{rule: 1, protocol: all, cidr: 0.0.0.0/0, action: allow}"), nullptr},
      {"duplicate number",
       acl("{rule: 10, protocol: all, cidr: 0.0.0.0/0, action: allow}\n      - {rule: 10, protocol: tcp, ports: 22, "
           "cidr: '::/0', action: deny}"),
       "NACL 'a' already has ingress rule number 10"},
      {"same number in both directions",
       kBase +
           "network_acls:\n  - name: a\n    vpc: v\n    ingress: [{rule: 10, protocol: all, cidr: 0.0.0.0/0, action: "
           "allow}]\n    egress: [{rule: 10, protocol: all, cidr: 0.0.0.0/0, action: allow}]\n",
       nullptr},
      {"bad action", acl("{rule: 10, protocol: all, cidr: 0.0.0.0/0, action: permit}"),
       "action must be allow or deny, not 'permit'"},
      {"missing cidr", acl("{rule: 10, protocol: all, action: allow}"), "is missing required key 'cidr'"},
      {"missing protocol", acl("{rule: 10, cidr: 0.0.0.0/0, action: allow}"), "is missing required key 'protocol'"},
      {"unknown protocol", acl("{rule: 10, protocol: http, cidr: 0.0.0.0/0, action: allow}"),
       "unknown protocol 'http'"},
      {"protocol 256", acl("{rule: 10, protocol: 256, cidr: 0.0.0.0/0, action: allow}"), "unknown protocol '256'"},
      {"port above 65535", acl("{rule: 10, protocol: tcp, ports: 70000, cidr: 0.0.0.0/0, action: allow}"),
       "port range '70000' is outside 0..65535"},
      {"from > to", acl("{rule: 10, protocol: tcp, ports: 100-90, cidr: 0.0.0.0/0, action: allow}"),
       "port range '100-90' has from > to"},
      {"ports on icmp are ignored", acl("{rule: 10, protocol: icmp, ports: 80, cidr: 0.0.0.0/0, action: allow}"),
       "warning: ports are ignored for protocol icmp"},
      {"ports on all are ignored", acl("{rule: 10, protocol: -1, ports: 80, cidr: 0.0.0.0/0, action: allow}"),
       "warning: ports are ignored for protocol all"},
      {"icmp type above 255", acl("{rule: 10, protocol: icmp, icmp_type: 300, cidr: 0.0.0.0/0, action: allow}"),
       "'icmp_type' is 300, outside -1..255"},
      {"icmp code without type", acl("{rule: 10, protocol: icmp, icmp_code: 3, cidr: 0.0.0.0/0, action: allow}"),
       "an ICMP code needs an ICMP type"},
      {"icmp with IPv6 CIDR", acl("{rule: 10, protocol: icmp, cidr: '::/0', action: allow}"),
       "protocol icmp (1) does not match IPv6 traffic"},
      {"icmpv6 with IPv4 CIDR means all ICMP",
       acl("{rule: 10, protocol: 58, icmp_type: 128, cidr: 0.0.0.0/0, action: allow}"),
       "warning: protocol 58 (icmpv6) with an IPv4 CIDR means all ICMP"},
      {"icmpv6 with IPv6 CIDR", acl("{rule: 10, protocol: icmpv6, icmp_type: 128, cidr: '::/0', action: allow}"),
       nullptr},
      {"19 IPv4 rules fit with '*'", naclWith(19, "0.0.0.0/0"), nullptr},
      {"20 IPv4 rules do not", naclWith(20, "0.0.0.0/0"),
       "NACL 'a' has 20 IPv4 ingress rules; with the '*' rule that is above the quota of 20"},
      {"19 IPv6 rules fit too", naclWith(19, "::/0"), nullptr},
      {"39 rules with the quota at 40", naclWith(39, "0.0.0.0/0", "limits: {nacl_rules_per_direction: 40}\n"), nullptr},
      {"duplicate NACL names", kBase + "network_acls: [{name: a, vpc: v}, {name: a, vpc: v}]",
       "duplicate network ACL name 'a' in VPC 'v'"},
      {"two default NACLs",
       kBase + "network_acls: [{name: a, vpc: v, default: true}, {name: b, vpc: v, default: true}]",
       "VPC 'v' already has default NACL 'a'"},
  });
}

TEST_CASE("security group rules: one peer, families match, references resolve, quotas, no duplicates") {
  auto sg = [](const std::string& rule, const std::string& extra = "") {
    return kBase + extra + "security_groups:\n  - name: g\n    vpc: v\n    ingress:\n      - " + rule + "\n";
  };
  runCases({
      {"no peer", sg("{protocol: tcp, ports: 22}"), "needs exactly one peer: 'cidr', 'group' or 'prefix_list'"},
      {"two peers", sg("{protocol: tcp, ports: 22, cidr: 10.0.0.0/8, group: g}"), "needs exactly one peer"},
      {"icmp with IPv6", sg("{protocol: icmp, cidr: '::/0'}"), "protocol icmp (1) does not match IPv6 traffic"},
      {"icmpv6 with IPv4", sg("{protocol: icmpv6, cidr: 0.0.0.0/0}"),
       "protocol icmpv6 (58) does not match IPv4 traffic"},
      {"self reference", sg("{protocol: all, group: g}"), nullptr},
      {"unknown group", sg("{protocol: all, group: gg2}"), "unknown security group 'gg2'"},
      {"unknown prefix list", sg("{protocol: all, prefix_list: office}"), "unknown prefix list 'office'"},
      {"prefix list",
       sg("{protocol: tcp, ports: 22, prefix_list: office}",
          "prefix_lists: [{name: office, entries: [192.0.2.0/24]}]\n"),
       nullptr},
      {"description of 256", sg("{protocol: all, cidr: 10.0.0.0/8, description: " + std::string(256, 'x') + "}"),
       "rule description is 256 characters; AWS allows 255"},
      {"description of 255", sg("{protocol: all, cidr: 10.0.0.0/8, description: " + std::string(255, 'x') + "}"),
       nullptr},
      {"description characters", sg("{protocol: all, cidr: 10.0.0.0/8, description: 'caf\xc3\xa9 <b>'}"),
       "rule description has characters AWS does not allow"},
      {"duplicate rule",
       sg("{protocol: tcp, ports: 22, cidr: 10.0.0.0/8}\n      - {protocol: tcp, ports: 22, cidr: 10.0.0.0/8}"),
       "security group 'g' ingress rule 2 duplicates rule 1"},
      {"60 rules", groupWith(60), nullptr},
      {"61 rules", groupWith(61), "security group 'g' has 61 IPv4 ingress rules, above the quota of 60"},
      {"61 rules with a raised quota", groupWith(61, "limits: {sg_rules_per_direction: 61, groups_per_eni: 5}\n"),
       nullptr},
      {"name with a slash", kBase + "security_groups: [{name: a/b, vpc: v}]", "security group name 'a/b' is not valid"},
      {"duplicate group names", kBase + "security_groups: [{name: g, vpc: v}, {name: g, vpc: v}]",
       "duplicate security group name 'g' in VPC 'v'"},
  });
}

TEST_CASE("group references cross VPCs only over an active peering") {
  auto cfg = [](const char* status) {
    return fmt::format(R"(vpcs:
  - {{name: a, cidr: 10.1.0.0/16}}
  - {{name: b, cidr: 10.2.0.0/16}}
peerings: [{{name: ab, requester: a, accepter: b, status: {}}}]
security_groups:
  - {{name: client, vpc: a}}
  - {{name: svc, vpc: b, ingress: [{{protocol: tcp, ports: 80, group: a/client}}]}}
)",
                       status);
  };
  runCases({
      {"active peering", cfg("active"), nullptr},
      {"pending peering", cfg("pending-acceptance"),
       "security group 'a/client' is in VPC 'a', which has no active peering with VPC 'b'"},
      {"no peering",
       "vpcs: [{name: a, cidr: 10.1.0.0/16}, {name: b, cidr: 10.2.0.0/16}]\nsecurity_groups: [{name: client, vpc: a}, "
       "{name: svc, vpc: b, ingress: [{protocol: tcp, ports: 80, group: a/client}]}]",
       "which has no active peering with VPC 'b'"},
  });
}

TEST_CASE("peerings: existing, distinct, non-overlapping VPCs, one per pair, quota") {
  runCases({
      {"overlapping VPCs",
       "vpcs: [{name: a, cidr: 10.1.0.0/16}, {name: b, cidr: 10.1.128.0/17}]\npeerings: [{name: ab, requester: a, "
       "accepter: b}]",
       "VPC 'a' block 10.1.0.0/16 overlaps VPC 'b' block 10.1.128.0/17; peered VPCs must not overlap"},
      {"to itself", "vpcs: [{name: a, cidr: 10.1.0.0/16}]\npeerings: [{name: aa, requester: a, accepter: a}]",
       "peering 'aa' connects VPC 'a' to itself"},
      {"unknown VPC", "vpcs: [{name: a, cidr: 10.1.0.0/16}]\npeerings: [{name: ab, requester: a, accepter: b}]",
       "peering 'ab' refers to unknown VPC 'b'"},
      {"two active peerings of one pair",
       "vpcs: [{name: a, cidr: 10.1.0.0/16}, {name: b, cidr: 10.2.0.0/16}]\npeerings: [{name: ab, requester: a, "
       "accepter: b}, {name: ba, requester: b, accepter: a}]",
       "VPCs 'b' and 'a' already have an active peering"},
      {"quota",
       "limits: {peerings_per_vpc: 1}\n" + vpcs(3) +
           "peerings: [{name: p12, requester: v1, accepter: v2}, {name: p13, requester: v1, accepter: v3}]",
       "VPC 'v1' has more than 1 active peerings"},
      {"bad status",
       "vpcs: [{name: a, cidr: 10.1.0.0/16}, {name: b, cidr: 10.2.0.0/16}]\npeerings: [{name: ab, "
       "requester: a, accepter: b, status: up}]",
       "unknown peering status 'up'"},
  });
}

TEST_CASE("route tables: targets of the right VPC, no routes inside the VPC, one main") {
  const std::string two = R"(vpcs:
  - {name: a, cidr: 10.1.0.0/16}
  - {name: b, cidr: 10.2.0.0/16}
  - {name: c, cidr: 10.3.0.0/16}
internet_gateways: [{name: igw-a, vpc: a}, {name: igw-b, vpc: b}]
peerings: [{name: bc, requester: b, accepter: c}]
)";
  runCases({
      {"gateway of another VPC",
       two + "route_tables: [{name: t, vpc: a, routes: [{destination: 0.0.0.0/0, internet_gateway: igw-b}]}]",
       "internet gateway 'igw-b' is attached to VPC 'b', not 'a'"},
      {"peering of other VPCs",
       two + "route_tables: [{name: t, vpc: a, routes: [{destination: 10.3.0.0/16, peering: bc}]}]",
       "peering 'bc' does not involve VPC 'a'"},
      {"unknown peering", two + "route_tables: [{name: t, vpc: b, routes: [{destination: 10.3.0.0/16, peering: cb}]}]",
       "unknown peering 'cb'"},
      {"route inside the VPC",
       two + "route_tables: [{name: t, vpc: a, routes: [{destination: 10.1.5.0/24, internet_gateway: igw-a}]}]",
       "route 10.1.5.0/24 lies inside VPC block 10.1.0.0/16, which the local route covers"},
      {"duplicate destination",
       two + "route_tables: [{name: t, vpc: a, routes: [{destination: 0.0.0.0/0, internet_gateway: igw-a}, "
             "{destination: 0.0.0.0/0, internet_gateway: igw-a}]}]",
       "route table 't' has two routes for 0.0.0.0/0"},
      {"no target", two + "route_tables: [{name: t, vpc: a, routes: [{destination: 0.0.0.0/0}]}]",
       "a route needs exactly one target"},
      {"two mains", two + "route_tables: [{name: t, vpc: a, main: true}, {name: u, vpc: a, main: true}]",
       "VPC 'a' already has main route table 't'"},
      {"two gateways on one VPC",
       "vpcs: [{name: a, cidr: 10.1.0.0/16}]\ninternet_gateways: [{name: g1, vpc: a}, {name: g2, vpc: a}]",
       "VPC 'a' already has internet gateway 'g1'; a VPC can have only one"},
      {"fine",
       two + "route_tables: [{name: t, vpc: b, routes: [{destination: 10.3.0.0/16, peering: bc}, {destination: "
             "0.0.0.0/0, internet_gateway: igw-b}]}]",
       nullptr},
  });
}

TEST_CASE("prefix lists: one family, entries within max_entries") {
  runCases({
      {"mixed families", "prefix_lists: [{name: p, entries: [10.0.0.0/8, '2001:db8::/32']}]",
       "prefix list 'p' mixes IPv4 and IPv6 entries"},
      {"over max", "prefix_lists: [{name: p, entries: [10.0.0.0/8, 192.0.2.0/24], max_entries: 1}]",
       "prefix list 'p' has 2 entries, above its max_entries of 1"},
      {"empty", "prefix_lists: [{name: p, entries: []}]", "prefix list 'p' has no entries"},
  });
}

TEST_CASE("a reference typo gets a suggestion") {
  vpcfw::Diagnostics diags;
  auto d = loadDiagnostics(kBase + "instances: [{name: i, subnet: ss, private_ip: 10.0.1.10}]");
  CHECK(hasDiagnostic(d, "instance 'i' refers to unknown subnet 'ss'"));
  CHECK(vpcfw::closestName("web-sgg", {"web-sg", "db-sg"}) == "web-sg");
  CHECK(vpcfw::closestName("zzzzzz", {"web-sg", "db-sg"}).empty());
}

TEST_CASE("per-VPC quotas: subnets, NACLs, groups, routes per table, prefix list size") {
  runCases({
      {"subnets per VPC", "limits: {subnets_per_vpc: 1}\n" + kBase + "  - {name: t, vpc: v, cidr: 10.0.2.0/24}\n",
       "VPC 'v' has more than 1 subnets"},
      {"subnets at the quota", "limits: {subnets_per_vpc: 1}\n" + kBase, nullptr},
      {"NACLs per VPC (the default NACL counts)",
       "limits: {nacls_per_vpc: 1}\n" + kBase + "network_acls: [{name: a, vpc: v}]\n",
       "VPC 'v' has 2 network ACLs (the default one included), above the quota of 1"},
      {"NACLs at the quota", "limits: {nacls_per_vpc: 2}\n" + kBase + "network_acls: [{name: a, vpc: v}]\n", nullptr},
      {"groups per VPC",
       "limits: {groups_per_vpc: 1}\n" + kBase + "security_groups: [{name: a, vpc: v}, {name: b, vpc: v}]\n",
       "VPC 'v' has 2 security groups, above the quota of 1"},
      {"routes per table",
       "limits: {routes_per_table: 1}\n" + kBase +
           "internet_gateways: [{name: g, vpc: v}]\nroute_tables: [{name: t, vpc: v, routes: [{destination: 0.0.0.0/0, "
           "internet_gateway: g}, {destination: '::/0', internet_gateway: g}]}]\n",
       "route table 't' has 2 routes, above the quota of 1"},
      {"prefix list above the entry quota",
       "limits: {prefix_list_entries: 2}\nprefix_lists: [{name: p, entries: [10.0.0.0/8], max_entries: 3}]",
       "prefix list 'p' max_entries 3 exceeds the quota of 2"},
      {"a prefix list reference counts its max entries",
       "limits: {sg_rules_per_direction: 10}\n" + kBase +
           "prefix_lists: [{name: p, entries: [10.0.0.0/8], max_entries: 10}]\nsecurity_groups: [{name: g, vpc: v, "
           "ingress: [{protocol: tcp, ports: 22, prefix_list: p}, {protocol: tcp, ports: 23, cidr: 10.0.0.0/8}]}]\n",
       "security group 'g' has 11 IPv4 ingress rules, above the quota of 10"},
  });
}

TEST_CASE("pairwise checks report each object once, so a config of n copies costs linear work") {
  // n aliased copies of one subnet, one rule and one VPC block: the old
  // pairwise checks reported n^2/2 overlaps and duplicates.
  const int n = 3000;
  std::string yaml = "vpcs:\n  - {name: v, cidr: [10.0.0.0/16";
  for (int i = 0; i < 40; ++i) yaml += ", 10.0.0.0/16";
  yaml += "]}\nlimits: {profile: lab}\nsubnets:\n  - &s {name: s, vpc: v, cidr: 10.0.1.0/24}\n";
  for (int i = 0; i < n; ++i) yaml += "  - *s\n";
  yaml +=
      "security_groups:\n  - name: g\n    vpc: v\n    ingress:\n      - &r {protocol: tcp, ports: 22, cidr: "
      "10.0.0.0/8}\n";
  for (int i = 0; i < n; ++i) yaml += "      - *r\n";
  vpcfw::Diagnostics diags;
  auto m = vpcfw::config::loadConfigString(yaml, "t.yaml", diags);
  REQUIRE_FALSE(m);
  // n duplicate names + n overlaps + n duplicate rules + 40 block overlaps (+ a couple of others).
  CHECK(diags.errorCount() >= static_cast<std::size_t>(3 * n));
  CHECK(diags.errorCount() <= static_cast<std::size_t>(3 * n + 50));
  CHECK(diags.all().size() <= vpcfw::Diagnostics::kDefaultCap + vpcfw::Diagnostics::kDefaultWarningCap);
}
