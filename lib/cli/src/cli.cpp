#include "vpcfw/cli/cli.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <ostream>

#include "vpcfw/compile/compiler.h"
#include "vpcfw/compile/render.h"
#include "vpcfw/config/loader.h"
#include "vpcfw/eval/evaluator.h"
#include "vpcfw/eval/report.h"
#include "show.h"

namespace vpcfw::cli {
namespace {

nlohmann::json diagnosticsToJson(const Diagnostics& d) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& x : d.all()) {
    nlohmann::json j{{"severity", x.severity == Severity::kError ? "error" : "warning"},
                     {"file", x.where.file},
                     {"line", x.where.line},
                     {"column", x.where.column},
                     {"message", x.message}};
    if (!x.hint.empty()) j["hint"] = x.hint;
    arr.push_back(std::move(j));
  }
  return arr;
}

std::string summary(const model::Model& m) {
  std::size_t rules = 0;
  for (const auto& a : m.nacls) rules += a.ingress.size() + a.egress.size();
  for (const auto& g : m.groups) rules += g.ingress.size() + g.egress.size();
  return fmt::format("{} VPCs, {} subnets, {} network ACLs, {} security groups, {} instances, {} rules (AWS defaults included)",
                     m.vpcs.size(), m.subnets.size(), m.nacls.size(), m.groups.size(), m.instances.size(), rules);
}

int validateCommand(const std::string& path, bool json, std::ostream& out, std::ostream& err) {
  Diagnostics diags;
  auto m = config::loadConfigFile(path, diags);
  if (json) {
    nlohmann::json j{{"file", path}, {"valid", m.has_value()}, {"diagnostics", diagnosticsToJson(diags)}};
    if (m) j["summary"] = summary(*m);
    out << j.dump(2) << '\n';
  } else {
    err << diags.format();
    if (m) out << fmt::format("{}: valid: {}\n", path, summary(*m));
    else err << fmt::format("{}: {} error(s); nothing was used\n", path, diags.errorCount());
  }
  return m ? kExitOk : kExitUsage;
}

struct ExplainOptions {
  std::string config, from, to, proto = "tcp", family;
  int port = -1, sourcePort = 50000, icmpType = -1, icmpCode = 0;
  bool json = false;
};

int explainCommand(const ExplainOptions& o, std::ostream& out, std::ostream& err) {
  Diagnostics diags;
  auto m = config::loadConfigFile(o.config, diags);
  err << diags.format();
  if (!m) {
    err << fmt::format("{}: {} error(s); cannot explain\n", o.config, diags.errorCount());
    return kExitUsage;
  }
  eval::FlowRequest req;
  req.from = o.from;
  req.to = o.to;
  auto proto = net::Protocol::parse(o.proto);
  if (!proto || proto->isAll()) {
    err << "vpcfw explain: --proto: " << (proto ? "a flow has one protocol, not 'all'" : proto.error()) << '\n';
    return kExitUsage;
  }
  req.protocol = *proto;
  if (req.protocol.hasPorts()) {
    if (o.port < 0 || o.port > 65535) {
      err << fmt::format("vpcfw explain: --port 0..65535 is required for {}\n", req.protocol.toString());
      return kExitUsage;
    }
    req.port = static_cast<std::uint16_t>(o.port);
  }
  req.sourcePort = static_cast<std::uint16_t>(o.sourcePort);
  req.icmpType = o.icmpType;
  req.icmpCode = o.icmpCode;
  if (o.family == "4") req.family = net::Family::kIpv4;
  if (o.family == "6") req.family = net::Family::kIpv6;
  auto v = eval::explainFlow(*m, req);
  if (!v) {
    err << "vpcfw explain: " << v.error().message << '\n';
    return kExitUsage;
  }
  if (o.json)
    out << eval::verdictToJson(*v).dump(2) << '\n';
  else
    out << eval::formatVerdictText(*v);
  return v->reachable() ? kExitOk : kExitBlocked;
}

int showCommand(const std::string& path, std::ostream& out, std::ostream& err) {
  Diagnostics diags;
  auto m = config::loadConfigFile(path, diags);
  err << diags.format();
  if (!m) {
    err << fmt::format("{}: {} error(s)\n", path, diags.errorCount());
    return kExitUsage;
  }
  out << modelToJson(*m).dump(2) << '\n';
  return kExitOk;
}

int compileCommand(const std::string& path, const std::string& fabric, std::ostream& out, std::ostream& err) {
  Diagnostics diags;
  auto m = config::loadConfigFile(path, diags);
  err << diags.format();
  if (!m) {
    err << fmt::format("{}: {} error(s); nothing compiled\n", path, diags.errorCount());
    return kExitUsage;
  }
  auto rulesets = compile::compileRulesets(*m, compile::labPlacement(*m));
  if (!rulesets) {
    err << "vpcfw compile: " << rulesets.error().message << '\n';
    return kExitUsage;
  }
  bool found = false;
  for (const auto& r : *rulesets) {
    if (!fabric.empty() && r.fabric != fabric) continue;
    found = true;
    out << compile::renderScript(r) << '\n';
  }
  if (!found && !fabric.empty()) {
    err << fmt::format("vpcfw compile: no fabric named '{}'\n", fabric);
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"vpcfw: AWS VPC filtering (network ACLs and security groups) on Linux", "vpcfw"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vpcfw 0.1.0");

  std::string validatePath;
  bool validateJson = false;
  auto* validate = app.add_subcommand("validate", "Check a config against AWS's rules and quotas");
  validate->add_option("config", validatePath, "Config file (YAML)")->required();
  validate->add_flag("--json", validateJson, "Diagnostics as JSON");

  ExplainOptions ex;
  auto* explain = app.add_subcommand("explain", "Explain, rule by rule, whether a flow and its reply get through");
  explain->add_option("config", ex.config, "Config file (YAML)")->required();
  explain->add_option("--from", ex.from, "Source: instance name or IP address")->required();
  explain->add_option("--to", ex.to, "Destination: instance name or IP address")->required();
  explain->add_option("--proto", ex.proto, "tcp, udp, icmp, icmpv6 or a protocol number")->capture_default_str();
  explain->add_option("--port", ex.port, "Destination port (tcp/udp)")->check(CLI::Range(0, 65535));
  explain->add_option("--sport", ex.sourcePort, "Source port (tcp/udp)")->check(CLI::Range(0, 65535))->capture_default_str();
  explain->add_option("--icmp-type", ex.icmpType, "ICMP type (default: echo request)")->check(CLI::Range(0, 255));
  explain->add_option("--icmp-code", ex.icmpCode, "ICMP code")->check(CLI::Range(0, 255))->capture_default_str();
  explain->add_option("--family", ex.family, "4 or 6, when both ends are instances")->check(CLI::IsMember({"4", "6"}));
  explain->add_flag("--json", ex.json, "Verdict and trace as JSON");

  std::string compilePath, compileFabric;
  auto* compileCmd = app.add_subcommand("compile", "Print the nftables ruleset of each fabric (nft -f syntax)");
  compileCmd->add_option("config", compilePath, "Config file (YAML)")->required();
  compileCmd->add_option("--fabric", compileFabric, "Only this fabric (lab: vpcfw-<vpc>)");

  std::string showPath;
  bool showJson = true;
  auto* show = app.add_subcommand("show", "Print the effective model (AWS defaults included) and the lab placement");
  show->add_option("config", showPath, "Config file (YAML)")->required();
  show->add_flag("--json", showJson, "JSON (the only format for now)");

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      out << (dynamic_cast<const CLI::CallForHelp*>(&e) || dynamic_cast<const CLI::CallForAllHelp*>(&e)
                  ? app.help()
                  : std::string(e.what()) + "\n");
      if (dynamic_cast<const CLI::CallForHelp*>(&e) && app.get_subcommands().size() == 1)
        out.clear();
      return kExitOk;
    }
    err << "vpcfw: " << e.what() << "\n" << "Run 'vpcfw --help' for usage.\n";
    return kExitUsage;
  }
  if (validate->parsed()) return validateCommand(validatePath, validateJson, out, err);
  if (explain->parsed()) return explainCommand(ex, out, err);
  if (show->parsed()) return showCommand(showPath, out, err);
  if (compileCmd->parsed()) return compileCommand(compilePath, compileFabric, out, err);
  return kExitUsage;
}

}  // namespace vpcfw::cli
