// `vpcfw reach`: the exact set of flows between two selections of ends
// (lib/analysis), as text or JSON. Exit 0 when some pair reaches, 1 when
// nothing does, 2 for usage and config errors.
#include <fmt/format.h>

#include <memory>

#include "commands.h"
#include "vpcfw/analysis/reach.h"
#include "vpcfw/analysis/report.h"
#include "vpcfw/cli/cli.h"

namespace vpcfw::cli {
namespace {

struct ReachOptions {
  std::string config, from, to, proto = "all";
  bool json = false;
};

int reachCommand(const ReachOptions& o, std::ostream& out, std::ostream& err) {
  auto m = loadReported(o.config, "cannot compute reachability", err);
  if (!m) return kExitUsage;
  analysis::ReachRequest req;
  req.from = o.from;
  req.to = o.to;
  auto proto = net::Protocol::parse(o.proto);
  if (!proto) {
    err << "vpcfw reach: --proto: " << proto.error() << '\n';
    return kExitUsage;
  }
  if (!proto->isAll()) req.protocol = *proto;
  auto r = analysis::computeReach(*m, req);
  if (!r) {
    err << "vpcfw reach: " << r.error().message << '\n';
    return kExitUsage;
  }
  if (o.json)
    out << jsonText(analysis::reachToJson(*m, *r)) << '\n';
  else
    out << analysis::formatReachText(*m, *r);
  for (const auto& p : r->pairs)
    if (!p.protocols.empty()) return kExitOk;
  return kExitBlocked;
}

}  // namespace

void addReachCommand(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<ReachOptions>();
  auto* cmd = app.add_subcommand(
      "reach", "The exact set of flows (and client source ports) that get through, and back, between two ends");
  cmd->add_option("config", o->config, "Config file (YAML)")->required();
  cmd->add_option("--from", o->from, "Source: instance, subnet, VPC, CIDR or 'internet'")->required();
  cmd->add_option("--to", o->to, "Destination: instance, subnet, VPC, CIDR or 'internet'")->required();
  cmd->add_option("--proto", o->proto, "Only this protocol: tcp, udp, icmp, icmpv6, a number, or all")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "As JSON (docs/analysis.md)");
  cmd->callback(
      [&selected, o] { selected = [o](std::ostream& out, std::ostream& err) { return reachCommand(*o, out, err); }; });
}

}  // namespace vpcfw::cli
