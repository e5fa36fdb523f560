#include "vpcfw/config/loader.h"

#include <fcntl.h>
#include <unistd.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <yaml-cpp/exceptions.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>

#include "document.h"
#include "read_file.h"
#include "vpcfw/flowlog/format.h"
#include "vpcfw/model/validate.h"
#include "vpcfw/names/names.h"

namespace vpcfw::config {
namespace {

using model::Origin;
using net::Cidr;
using net::IpAddress;

// Names end up in nftables chain names, namespace names and messages, so they
// are kept to the alphabet names:: allows.
bool validName(const std::string& n) { return names::isValidObjectName(n); }

class Reader {
 public:
  Reader(std::string file, Diagnostics& d) : file_(std::make_shared<const std::string>(std::move(file))), d_(d) {}

  SourceLocation loc(const Node& n) const {
    if (!n.IsDefined()) return SourceLocation{*file_, 0, 0};
    return SourceLocation{*file_, n.line() + 1, n.column() + 1};
  }
  // Records where `n` is as field `f` of `o`.
  void setField(Origin& o, model::FieldName f, const Node& n) const {
    if (n.IsDefined())
      o.set(f, n.line() + 1, n.column() + 1);
    else
      o.set(f, 0, 0);
  }

  void error(const Node& n, std::string msg, std::string hint = {}) {
    d_.error(loc(n), std::move(msg), std::move(hint));
  }
  void warning(const Node& n, std::string msg) { d_.warning(loc(n), std::move(msg)); }

  bool isMap(const Node& n, std::string_view what) {
    if (n.IsMap()) return true;
    error(n, fmt::format("{} must be a mapping (key: value)", what));
    return false;
  }
  bool isSeq(const Node& n, std::string_view what) {
    if (n.IsSequence()) return true;
    error(n, fmt::format("{} must be a list", what));
    return false;
  }

  // Reports unknown and duplicate keys; records each known key's position.
  void checkKeys(const Node& n, std::initializer_list<std::string_view> allowed, std::string_view what, Origin& o) {
    // Keys are views of the document's text. A mapping of a few keys (every
    // object of a valid config) is searched, not indexed.
    constexpr std::size_t kSearched = 16;
    const auto pairs = n.pairs();
    std::set<std::string_view> seen;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const Node& k = pairs[i].first;
      const Node& v = pairs[i].second;
      if (!k.IsScalar()) {
        error(k, fmt::format("{}: keys must be plain names", what));
        continue;
      }
      std::string_view key = k.Scalar();
      bool repeated = false;
      if (pairs.size() <= kSearched) {
        for (std::size_t j = 0; j < i && !repeated; ++j)
          repeated = pairs[j].first.IsScalar() && pairs[j].first.Scalar() == key;
      } else {
        repeated = !seen.insert(key).second;
      }
      if (repeated) error(k, fmt::format("{}: duplicate key {}", what, quoteForMessage(key)));
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::vector<std::string> names(allowed.begin(), allowed.end());
        auto hint = d_.didYouMean(key, names);
        error(k, fmt::format("{}: unknown key {}", what, quoteForMessage(key)),
              hint.empty() ? fmt::format("known keys: {}", fmt::join(names, ", ")) : hint);
        continue;
      }
      if (auto f = model::FieldName::named(key)) setField(o, *f, v);
    }
    o.place(file_, n.IsDefined() ? n.line() + 1 : 0, n.IsDefined() ? n.column() + 1 : 0);
  }

  // Places `o` where `n` is (an object without keys of its own).
  void placeAt(Origin& o, const Node& n) const {
    o.place(file_, n.IsDefined() ? n.line() + 1 : 0, n.IsDefined() ? n.column() + 1 : 0);
  }

  bool has(const Node& n, const char* key) const { return n[key].IsDefined() && !n[key].IsNull(); }

  std::optional<std::string> scalar(const Node& n, const char* key, std::string_view what, bool required) {
    Node v = n[key];
    if (!v.IsDefined() || v.IsNull()) {
      if (required) error(n, fmt::format("{} is missing required key '{}'", what, key));
      return std::nullopt;
    }
    if (!v.IsScalar()) {
      error(v, fmt::format("{}: '{}' must be a single value", what, key));
      return std::nullopt;
    }
    return text(v, fmt::format("{}: '{}'", what, key));
  }

  // A string value: bounded, valid UTF-8 and printable, or an error. Values
  // reach messages, JSON, nftables comments and file names.
  std::optional<std::string> text(const Node& v, std::string_view what) {
    std::string_view s = v.Scalar();
    if (s.size() > kMaxTextBytes) {
      error(v, fmt::format("{} is {} bytes long; at most {} are read", what, s.size(), kMaxTextBytes));
      return std::nullopt;
    }
    if (!isPrintableText(s)) {
      error(v, fmt::format("{} must be printable UTF-8 text, not {}", what, quoteForMessage(s)),
            "control characters and invalid UTF-8 bytes are shown as \\xNN");
      return std::nullopt;
    }
    return std::string(s);
  }

  // The object's name; empty (and an error) when it is missing or not valid,
  // so that messages built from names echo only valid ones.
  std::string name(const Node& n, std::string_view what) {
    auto s = scalar(n, "name", what, true);
    if (!s) return {};
    if (!validName(*s)) {
      error(n["name"], fmt::format("{} name {} is not valid", what, quoteForMessage(*s)),
            "use 1..64 characters from a-z A-Z 0-9 - _ .");
      return {};
    }
    return *s;
  }

  // A value for a parser of addresses, ports or protocols: printable and short
  // enough to echo whole. Anything longer cannot be one.
  bool token(const Node& v, std::string_view what, std::string_view kind) {
    std::string_view s = v.Scalar();
    if (s.size() <= kQuotedChars && isPrintableText(s)) return true;
    error(v, fmt::format("{}: {} is not {}", what, quoteForMessage(s), kind));
    return false;
  }

  std::optional<long long> integer(const Node& v, std::string_view what) {
    if (!v.IsScalar()) {
      error(v, fmt::format("{} must be a number", what));
      return std::nullopt;
    }
    std::string_view s = v.Scalar();
    long long out = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
      error(v, fmt::format("{} must be a whole number, not {}", what, quoteForMessage(s)));
      return std::nullopt;
    }
    return out;
  }

  std::optional<int> intField(const Node& n, const char* key, std::string_view what, long long lo, long long hi) {
    Node v = n[key];
    if (!v.IsDefined() || v.IsNull()) return std::nullopt;
    auto x = integer(v, fmt::format("{} '{}'", what, key));
    if (!x) return std::nullopt;
    if (*x < lo || *x > hi) {
      error(v, fmt::format("{} '{}' is {}, outside {}..{}", what, key, *x, lo, hi));
      return std::nullopt;
    }
    return static_cast<int>(*x);
  }

  std::optional<bool> boolean(const Node& n, const char* key, std::string_view what) {
    Node v = n[key];
    if (!v.IsDefined() || v.IsNull()) return std::nullopt;
    if (v.IsScalar()) {
      std::string_view s = v.Scalar();
      if (s == "true" || s == "yes") return true;
      if (s == "false" || s == "no") return false;
    }
    error(v, fmt::format("{} '{}' must be true or false", what, key));
    return std::nullopt;
  }

  std::optional<Cidr> cidr(const Node& v, std::string_view what) {
    if (!v.IsScalar()) {
      error(v, fmt::format("{} must be a CIDR block such as 10.0.0.0/16", what));
      return std::nullopt;
    }
    if (!token(v, what, "a CIDR block")) return std::nullopt;
    auto p = Cidr::parse(v.Scalar());
    if (!p) {
      error(v, fmt::format("{}: {}", what, p.error()));
      return std::nullopt;
    }
    if (p->hostBitsSet)
      warning(v, fmt::format("{} {} has host bits set; using {}", what, v.Scalar(), p->cidr.toString()));
    return p->cidr;
  }

  std::optional<IpAddress> address(const Node& v, std::string_view what) {
    if (!v.IsScalar()) {
      error(v, fmt::format("{} must be an IP address", what));
      return std::nullopt;
    }
    if (!token(v, what, "an IPv4 or IPv6 address")) return std::nullopt;
    auto a = IpAddress::parse(v.Scalar());
    if (!a) {
      error(v, fmt::format("{}: {}", what, a.error()));
      return std::nullopt;
    }
    return *a;
  }

  // A scalar or a list of scalars, each with its position.
  std::vector<Node> oneOrMany(const Node& v) {
    std::vector<Node> out;
    if (!v.IsDefined() || v.IsNull()) return out;
    if (v.IsSequence())
      for (const auto& x : v) out.push_back(x);
    else
      out.push_back(v);
    return out;
  }

  // Protocol, ports and ICMP type/code, shared by NACL and SG rules.
  void ruleMatch(const Node& n, std::string_view what, net::Protocol& proto, net::PortRange& ports,
                 net::IcmpMatch& icmp) {
    if (auto p = scalar(n, "protocol", what, true); p && token(n["protocol"], what, "a protocol")) {
      auto parsed = net::Protocol::parse(*p);
      if (parsed)
        proto = *parsed;
      else
        error(n["protocol"], fmt::format("{}: {}", what, parsed.error()));
    }
    if (has(n, "ports")) {
      Node v = n["ports"];
      if (!v.IsScalar()) {
        error(v, fmt::format("{}: ports must be a port (443) or a range (1024-65535)", what));
      } else if (!token(v, what, "a port or port range")) {
      } else if (auto r = net::PortRange::parse(v.Scalar()); r) {
        ports = *r;
      } else {
        error(v, fmt::format("{}: {}", what, r.error()));
      }
    }
    if (auto t = intField(n, "icmp_type", what, -1, 255)) icmp.type = *t;
    if (auto c = intField(n, "icmp_code", what, -1, 255)) icmp.code = *c;
  }

 private:
  std::shared_ptr<const std::string> file_;  // shared by every origin of the file
  Diagnostics& d_;
};

// "VPC 'v'", or "VPC" for an object whose name is missing or not valid.
std::string named(std::string_view kind, const std::string& name) {
  return name.empty() ? std::string(kind) : fmt::format("{} '{}'", kind, name);
}

class ConfigParser {
 public:
  ConfigParser(Reader& r, model::Model& m) : r_(r), m_(m) {}

  void parseRoot(const Node& root) {
    if (root.IsNull() || !root.IsDefined()) return;  // empty file: nothing declared
    if (!r_.isMap(root, "the config file")) return;
    Origin o;
    r_.checkKeys(root,
                 {"version", "limits", "vpcs", "subnets", "network_acls", "security_groups", "prefix_lists",
                  "route_tables", "internet_gateways", "peerings", "instances", "region", "flow_logs"},
                 "config", o);
    if (r_.has(root, "version")) {
      auto v = r_.intField(root, "version", "config", 1, 1);
      (void)v;
    }
    if (r_.has(root, "limits")) parseLimits(root["limits"]);
    list(root, "vpcs", "VPC", [&](const Node& n) { parseVpc(n); });
    list(root, "internet_gateways", "internet gateway", [&](const Node& n) { parseIgw(n); });
    list(root, "peerings", "peering", [&](const Node& n) { parsePeering(n); });
    list(root, "prefix_lists", "prefix list", [&](const Node& n) { parsePrefixList(n); });
    list(root, "route_tables", "route table", [&](const Node& n) { parseRouteTable(n); });
    list(root, "network_acls", "network ACL", [&](const Node& n) { parseNacl(n); });
    list(root, "security_groups", "security group", [&](const Node& n) { parseGroup(n); });
    list(root, "subnets", "subnet", [&](const Node& n) { parseSubnet(n); });
    list(root, "instances", "instance", [&](const Node& n) { parseInstance(n); });
    if (r_.has(root, "region")) parseRegion(root["region"]);
    list(root, "flow_logs", "flow log", [&](const Node& n) { parseFlowLog(n); });
  }

 private:
  Reader& r_;
  model::Model& m_;

  template <class F>
  void list(const Node& root, const char* key, std::string_view what, F each) {
    Node v = root[key];
    if (!v.IsDefined() || v.IsNull()) return;
    if (!r_.isSeq(v, key)) return;
    for (const auto& item : v)
      if (r_.isMap(item, fmt::format("each entry of '{}' ({})", key, what))) each(item);
  }

  void parseLimits(const Node& n) {
    auto& l = m_.limits;
    if (!r_.isMap(n, "limits")) return;
    r_.checkKeys(n,
                 {"profile", "vpcs", "vpc_cidr_blocks", "subnets_per_vpc", "nacls_per_vpc", "nacl_rules_per_direction",
                  "sg_rules_per_direction", "groups_per_eni", "groups_per_vpc", "peerings_per_vpc", "routes_per_table",
                  "prefix_list_entries"},
                 "limits", l.origin);
    if (auto p = r_.scalar(n, "profile", "limits", false)) {
      if (*p == "lab") {
        l.profile = model::Limits::Profile::kLab;
        constexpr int kLab = 1'000'000;
        l.vpcs = l.vpcCidrBlocks = l.subnetsPerVpc = l.naclsPerVpc = l.naclRulesPerDirection = kLab;
        l.sgRulesPerDirection = l.groupsPerEni = l.groupsPerVpc = l.peeringsPerVpc = l.routesPerTable = kLab;
        l.prefixListEntries = kLab;
      } else if (*p != "aws") {
        r_.error(n["profile"], fmt::format("unknown limits profile {}", quoteForMessage(*p)),
                 "use 'aws' (the default) or 'lab'");
      }
    }
    auto set = [&](const char* key, int& field) {
      if (auto v = r_.intField(n, key, "limits", 0, 1'000'000'000)) field = *v;
    };
    set("vpcs", l.vpcs);
    set("vpc_cidr_blocks", l.vpcCidrBlocks);
    set("subnets_per_vpc", l.subnetsPerVpc);
    set("nacls_per_vpc", l.naclsPerVpc);
    set("nacl_rules_per_direction", l.naclRulesPerDirection);
    set("sg_rules_per_direction", l.sgRulesPerDirection);
    set("groups_per_eni", l.groupsPerEni);
    set("groups_per_vpc", l.groupsPerVpc);
    set("peerings_per_vpc", l.peeringsPerVpc);
    set("routes_per_table", l.routesPerTable);
    set("prefix_list_entries", l.prefixListEntries);
  }

  // A region name as AWS spells them ("us-east-1"): it becomes a directory
  // and part of file names in the flow logs' S3 layout.
  void parseRegion(const Node& n) {
    r_.placeAt(m_.regionOrigin, n);
    if (!n.IsScalar()) {
      r_.error(n, "region must be a single value such as us-east-1");
      return;
    }
    std::string_view s = n.Scalar();
    const bool ok = !s.empty() && s.size() <= 32 && s.front() != '-' && s.back() != '-' &&
                    std::all_of(s.begin(), s.end(),
                                [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
    if (!ok) {
      r_.error(n, fmt::format("region {} is not a region name", quoteForMessage(s)),
               "use 1..32 of a-z 0-9 and '-', such as us-east-1");
      return;
    }
    m_.region = std::string(s);
  }

  // A flow log, shaped like AWS's CreateFlowLogs (docs/config.md, "flow_logs").
  void parseFlowLog(const Node& n) {
    model::FlowLog f;
    r_.checkKeys(n,
                 {"name", "vpc", "subnet", "instance", "traffic_type", "log_format", "max_aggregation_interval",
                  "destination", "account_id"},
                 "flow log", f.origin);
    f.name = r_.name(n, "flow log");
    const std::string what = named("flow log", f.name);
    const int resources = r_.has(n, "vpc") + r_.has(n, "subnet") + r_.has(n, "instance");
    if (resources != 1) {
      r_.error(n, fmt::format("{} needs exactly one resource: 'vpc', 'subnet' or 'instance'", what),
               "a flow log records the ENIs of one VPC, one subnet or one instance");
    } else {
      const char* key = r_.has(n, "vpc") ? "vpc" : r_.has(n, "subnet") ? "subnet" : "instance";
      f.resourceKind = key[0] == 'v'   ? model::FlowLog::Resource::kVpc
                       : key[0] == 's' ? model::FlowLog::Resource::kSubnet
                                       : model::FlowLog::Resource::kInstance;
      f.resourceName = r_.scalar(n, key, what, true).value_or("");
    }
    if (auto t = r_.scalar(n, "traffic_type", what, false)) {
      if (*t == "ACCEPT")
        f.traffic = model::FlowLog::Traffic::kAccept;
      else if (*t == "REJECT")
        f.traffic = model::FlowLog::Traffic::kReject;
      else if (*t == "ALL")
        f.traffic = model::FlowLog::Traffic::kAll;
      else
        r_.error(n["traffic_type"],
                 fmt::format("{}: traffic_type {} is not ACCEPT, REJECT or ALL", what, quoteForMessage(*t)));
    }
    if (auto text = r_.scalar(n, "log_format", what, false)) {
      auto format = flowlog::Format::parse(*text);
      if (format)
        f.logFormat = format->text();
      else
        r_.error(n["log_format"], fmt::format("{}: log_format: {}", what, format.error().message),
                 "fields are written ${name}, separated by spaces; docs/flowlogs.md lists them");
    }
    // 60 or 600, or 1..59 with the lab profile: validate knows the profile.
    if (auto i = r_.intField(n, "max_aggregation_interval", what, 1, 600)) f.maxAggregationInterval = *i;
    if (auto a = r_.scalar(n, "account_id", what, false)) {
      if (a->size() == 12 && std::all_of(a->begin(), a->end(), [](char c) { return c >= '0' && c <= '9'; }))
        f.accountId = *a;
      else
        r_.error(n["account_id"], fmt::format("{}: account_id {} is not 12 digits", what, quoteForMessage(*a)));
    }
    parseFlowLogDestination(n, what, f);
    m_.flowLogs.push_back(std::move(f));
  }

  // `stdout`, {files: DIR} or {streams: DIR}; DIR is absolute, without '.'
  // or '..' components (the writers open it component by component).
  void parseFlowLogDestination(const Node& n, const std::string& what, model::FlowLog& f) {
    const Node d = n["destination"];
    if (!d.IsDefined() || d.IsNull()) {
      r_.error(n, fmt::format("{} is missing required key 'destination'", what));
      return;
    }
    if (d.IsScalar()) {
      if (d.Scalar() == "stdout") {
        f.destination = model::FlowLog::Destination::kStdout;
        return;
      }
      r_.error(d, fmt::format("{}: destination {} is not stdout, {{files: DIR}} or {{streams: DIR}}", what,
                              quoteForMessage(d.Scalar())));
      return;
    }
    if (!r_.isMap(d, what + " destination")) return;
    model::Origin o;
    r_.checkKeys(d, {"files", "streams"}, what + " destination", o);
    const int kinds = r_.has(d, "files") + r_.has(d, "streams");
    if (kinds != 1) {
      r_.error(d, fmt::format("{} destination needs exactly one of 'files' and 'streams'", what));
      return;
    }
    const char* key = r_.has(d, "files") ? "files" : "streams";
    f.destination = key[0] == 'f' ? model::FlowLog::Destination::kFiles : model::FlowLog::Destination::kStreams;
    auto path = r_.scalar(d, key, what + " destination", true);
    if (!path) return;
    bool ok = path->size() > 1 && path->front() == '/' && path->size() <= 1024;
    for (std::size_t i = 1; ok && i <= path->size();) {
      std::size_t slash = path->find('/', i);
      if (slash == std::string::npos) slash = path->size();
      const std::string_view c = std::string_view(*path).substr(i, slash - i);
      ok = c != "." && c != ".." && (!c.empty() || slash == path->size());
      i = slash + 1;
    }
    if (!ok) {
      r_.error(d[key], fmt::format("{} destination {} is not an absolute directory path", what, quoteForMessage(*path)),
               "write it from '/', without '.', '..' or '//'");
      return;
    }
    if (path->size() > 1 && path->back() == '/') path->pop_back();
    f.path = *path;
  }

  void parseVpc(const Node& n) {
    model::Vpc v;
    r_.checkKeys(n, {"name", "cidr", "ipv6_cidr"}, "VPC", v.origin);
    v.name = r_.name(n, "VPC");
    if (!r_.has(n, "cidr")) r_.error(n, fmt::format("{} is missing required key 'cidr'", named("VPC", v.name)));
    auto blocks = r_.oneOrMany(n["cidr"]);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      r_.setField(v.origin, model::FieldName("cidr").item(i), blocks[i]);
      if (auto c = r_.cidr(blocks[i], "VPC cidr")) v.cidrs.push_back(*c);
    }
    if (r_.has(n, "ipv6_cidr")) v.ipv6Cidr = r_.cidr(n["ipv6_cidr"], "VPC ipv6_cidr");
    m_.vpcs.push_back(std::move(v));
  }

  void parseIgw(const Node& n) {
    model::InternetGateway g;
    r_.checkKeys(n, {"name", "vpc"}, "internet gateway", g.origin);
    g.name = r_.name(n, "internet gateway");
    g.vpcName = r_.scalar(n, "vpc", "internet gateway", true).value_or("");
    m_.internetGateways.push_back(std::move(g));
  }

  void parsePeering(const Node& n) {
    model::Peering p;
    r_.checkKeys(n, {"name", "requester", "accepter", "status"}, "peering", p.origin);
    p.name = r_.name(n, "peering");
    p.requesterName = r_.scalar(n, "requester", "peering", true).value_or("");
    p.accepterName = r_.scalar(n, "accepter", "peering", true).value_or("");
    if (auto s = r_.scalar(n, "status", "peering", false)) {
      if (*s == "active")
        p.active = true;
      else if (*s == "pending-acceptance" || *s == "rejected" || *s == "deleted")
        p.active = false;
      else
        r_.error(n["status"], fmt::format("unknown peering status {}", quoteForMessage(*s)),
                 "use active, pending-acceptance, rejected or deleted");
    }
    m_.peerings.push_back(std::move(p));
  }

  void parsePrefixList(const Node& n) {
    model::PrefixList pl;
    r_.checkKeys(n, {"name", "entries", "max_entries"}, "prefix list", pl.origin);
    pl.name = r_.name(n, "prefix list");
    if (!r_.has(n, "entries"))
      r_.error(n, fmt::format("{} is missing required key 'entries'", named("prefix list", pl.name)));
    else if (r_.isSeq(n["entries"], "entries"))
      for (const auto& e : n["entries"])
        if (auto c = r_.cidr(e, "prefix list entry")) pl.entries.push_back(*c);
    if (auto m = r_.intField(n, "max_entries", "prefix list", 1, 1'000'000)) pl.maxEntries = *m;
    m_.prefixLists.push_back(std::move(pl));
  }

  void parseRouteTable(const Node& n) {
    model::RouteTable t;
    r_.checkKeys(n, {"name", "vpc", "main", "routes"}, "route table", t.origin);
    t.name = r_.name(n, "route table");
    t.vpcName = r_.scalar(n, "vpc", "route table", true).value_or("");
    t.isMain = r_.boolean(n, "main", "route table").value_or(false);
    if (r_.has(n, "routes") && r_.isSeq(n["routes"], "routes")) {
      for (const auto& rn : n["routes"]) {
        if (!r_.isMap(rn, "a route")) continue;
        model::Route r;
        r_.checkKeys(rn, {"destination", "internet_gateway", "peering"}, "route", r.origin);
        if (r_.has(rn, "destination")) {
          if (auto c = r_.cidr(rn["destination"], "route destination")) r.destination = *c;
        } else {
          r_.error(rn, "route is missing required key 'destination'");
        }
        bool igw = r_.has(rn, "internet_gateway"), peer = r_.has(rn, "peering");
        if (igw == peer) {
          r_.error(rn, "a route needs exactly one target: 'internet_gateway' or 'peering'",
                   "local routes for the VPC's blocks are added automatically");
        } else if (igw) {
          r.target = model::Route::Target::kInternetGateway;
          r.targetName = r_.scalar(rn, "internet_gateway", "route", true).value_or("");
        } else {
          r.target = model::Route::Target::kPeering;
          r.targetName = r_.scalar(rn, "peering", "route", true).value_or("");
        }
        t.routes.push_back(std::move(r));
      }
    }
    m_.routeTables.push_back(std::move(t));
  }

  void parseNacl(const Node& n) {
    model::NetworkAcl a;
    r_.checkKeys(n, {"name", "vpc", "default", "ingress", "egress"}, "network ACL", a.origin);
    a.name = r_.name(n, "network ACL");
    a.vpcName = r_.scalar(n, "vpc", "network ACL", true).value_or("");
    a.isDefault = r_.boolean(n, "default", "network ACL").value_or(false);
    for (auto [key, list] : {std::pair{"ingress", &a.ingress}, std::pair{"egress", &a.egress}}) {
      Node rules = n[key];
      if (!rules.IsDefined() || rules.IsNull()) continue;
      if (!r_.isSeq(rules, key)) continue;
      for (const auto& rn : rules) {
        if (!r_.isMap(rn, "a network ACL rule")) continue;
        list->push_back(parseNaclRule(rn, a.name, key));
      }
    }
    m_.nacls.push_back(std::move(a));
  }

  model::NaclRule parseNaclRule(const Node& n, const std::string& acl, std::string_view dir) {
    model::NaclRule r;
    std::string what = fmt::format("{} {} rule", named("NACL", acl), dir);
    r_.checkKeys(n, {"rule", "protocol", "ports", "icmp_type", "icmp_code", "cidr", "action"}, what, r.origin);
    if (!r_.has(n, "rule"))
      r_.error(n, fmt::format("{} is missing required key 'rule' (its number)", what));
    else if (auto num = r_.integer(n["rule"], "rule number")) {
      r.number = *num < -1'000'000 || *num > 1'000'000 ? 0 : static_cast<int>(*num);
      what = fmt::format("{} {} rule {}", named("NACL", acl), dir, r.number);
    }
    r_.ruleMatch(n, what, r.protocol, r.ports, r.icmp);
    if (!r_.has(n, "cidr"))
      r_.error(n, fmt::format("{} is missing required key 'cidr'", what));
    else if (auto c = r_.cidr(n["cidr"], "cidr"))
      r.cidr = *c;
    if (auto act = r_.scalar(n, "action", what, true)) {
      if (auto a = model::parseAction(*act))
        r.action = *a;
      else
        r_.error(n["action"], fmt::format("{}: action must be allow or deny, not {}", what, quoteForMessage(*act)));
    }
    return r;
  }

  void parseGroup(const Node& n) {
    model::SecurityGroup g;
    r_.checkKeys(n, {"name", "vpc", "description", "ingress", "egress"}, "security group", g.origin);
    g.name = r_.name(n, "security group");
    g.vpcName = r_.scalar(n, "vpc", "security group", true).value_or("");
    g.description = r_.scalar(n, "description", "security group", false).value_or("");
    // Omitted egress = AWS's default for a new group (allow all); an explicit
    // empty list = no egress at all.
    g.egressDefaulted = !n["egress"].IsDefined() || n["egress"].IsNull();
    for (auto [key, list] : {std::pair{"ingress", &g.ingress}, std::pair{"egress", &g.egress}}) {
      Node rules = n[key];
      if (!rules.IsDefined() || rules.IsNull()) continue;
      if (!r_.isSeq(rules, key)) continue;
      for (const auto& rn : rules) {
        if (!r_.isMap(rn, "a security group rule")) continue;
        list->push_back(parseGroupRule(rn, g.name, key));
      }
    }
    m_.groups.push_back(std::move(g));
  }

  model::SgRule parseGroupRule(const Node& n, const std::string& group, std::string_view dir) {
    model::SgRule r;
    std::string what = fmt::format("{} {} rule", named("security group", group), dir);
    r_.checkKeys(n, {"protocol", "ports", "icmp_type", "icmp_code", "cidr", "group", "prefix_list", "description"},
                 what, r.origin);
    r_.ruleMatch(n, what, r.protocol, r.ports, r.icmp);
    int peers = r_.has(n, "cidr") + r_.has(n, "group") + r_.has(n, "prefix_list");
    if (peers != 1) {
      r_.error(n, fmt::format("{} needs exactly one peer: 'cidr', 'group' or 'prefix_list'", what));
    } else if (r_.has(n, "cidr")) {
      if (auto c = r_.cidr(n["cidr"], "cidr")) r.peer = *c;
    } else if (r_.has(n, "group")) {
      r.peer = model::GroupRef{r_.scalar(n, "group", what, true).value_or(""), model::kNone};
    } else {
      r.peer = model::PrefixListRef{r_.scalar(n, "prefix_list", what, true).value_or(""), model::kNone};
    }
    r.description = r_.scalar(n, "description", what, false).value_or("");
    return r;
  }

  void parseSubnet(const Node& n) {
    model::Subnet s;
    r_.checkKeys(n, {"name", "vpc", "cidr", "ipv6_cidr", "availability_zone", "route_table", "network_acl"}, "subnet",
                 s.origin);
    s.name = r_.name(n, "subnet");
    s.vpcName = r_.scalar(n, "vpc", "subnet", true).value_or("");
    if (!r_.has(n, "cidr"))
      r_.error(n, fmt::format("{} is missing required key 'cidr'", named("subnet", s.name)));
    else if (auto c = r_.cidr(n["cidr"], "subnet cidr"))
      s.cidr = *c;
    if (r_.has(n, "ipv6_cidr")) s.ipv6Cidr = r_.cidr(n["ipv6_cidr"], "subnet ipv6_cidr");
    s.availabilityZone = r_.scalar(n, "availability_zone", "subnet", false).value_or("");
    s.routeTableName = r_.scalar(n, "route_table", "subnet", false).value_or("");
    s.naclName = r_.scalar(n, "network_acl", "subnet", false).value_or("");
    m_.subnets.push_back(std::move(s));
  }

  void parseInstance(const Node& n) {
    model::Instance i;
    r_.checkKeys(n,
                 {"name", "subnet", "private_ip", "secondary_ips", "ipv6_addresses", "public_ip", "security_groups",
                  "netns", "host", "interface", "routed", "connection_tracking"},
                 "instance", i.origin);
    i.name = r_.name(n, "instance");
    i.subnetName = r_.scalar(n, "subnet", "instance", true).value_or("");
    if (!r_.has(n, "private_ip"))
      r_.error(n, fmt::format("{} is missing required key 'private_ip'", named("instance", i.name)));
    else if (auto a = r_.address(n["private_ip"], "private_ip"))
      i.privateIp = *a;
    auto addresses = [&](const char* key, model::FieldName field, std::vector<IpAddress>& out) {
      if (!r_.has(n, key)) return;
      if (!r_.isSeq(n[key], key)) return;
      std::size_t k = 0;
      for (const auto& e : n[key]) {
        r_.setField(i.origin, field.item(k++), e);
        if (auto a = r_.address(e, key)) out.push_back(*a);
      }
    };
    addresses("secondary_ips", "secondary_ips", i.secondaryIps);
    addresses("ipv6_addresses", "ipv6_addresses", i.ipv6Addresses);
    if (r_.has(n, "public_ip")) i.publicIp = r_.address(n["public_ip"], "public_ip");
    if (r_.has(n, "security_groups") && r_.isSeq(n["security_groups"], "security_groups")) {
      std::size_t k = 0;
      for (const auto& g : n["security_groups"]) {
        r_.setField(i.origin, model::FieldName("security_groups").item(k++), g);
        if (g.IsScalar()) {
          if (auto name = r_.text(g, "security_groups entry")) i.groupNames.push_back(*name);
        } else
          r_.error(g, "security_groups entries must be group names");
      }
      if (k == 0)
        r_.error(n["security_groups"], fmt::format("{} lists no security groups", named("instance", i.name)),
                 "omit the key to use the VPC's default group");
    }
    bool hostMode = r_.has(n, "host") || r_.has(n, "interface");
    if (hostMode && r_.has(n, "netns"))
      r_.error(n["netns"], fmt::format("{} sets both 'netns' and 'host'/'interface'", named("instance", i.name)),
               "an ENI lives either in a lab namespace or on an interface of a host");
    if (hostMode) {
      i.placement.kind = model::Placement::Kind::kHostInterface;
      std::string what = named("instance", i.name) + " (host mode)";
      i.placement.host = r_.scalar(n, "host", what, true).value_or("");
      i.placement.interface = r_.scalar(n, "interface", what, true).value_or("");
    } else {
      i.placement.netns = r_.scalar(n, "netns", "instance", false).value_or("");
    }
    // Validation says where `routed` is wrong (without a host, say).
    i.placement.routed = r_.boolean(n, "routed", named("instance", i.name)).value_or(false);
    if (r_.has(n, "connection_tracking")) parseConnectionTracking(n["connection_tracking"], i);
    m_.instances.push_back(std::move(i));
  }

  // The bounds here are what any profile allows; validation holds AWS's
  // ranges unless the lab profile lets short timeouts be watched expiring.
  void parseConnectionTracking(const Node& n, model::Instance& i) {
    const std::string what = named("instance", i.name) + " connection_tracking";
    if (!r_.isMap(n, what)) return;
    model::ConnectionTracking ct;
    r_.checkKeys(n, {"tcp_established_timeout", "udp_stream_timeout", "udp_timeout", "max_tracked_connections"}, what,
                 ct.origin);
    ct.tcpEstablished =
        r_.intField(n, "tcp_established_timeout", what, 1, model::ConnectionTracking::kDefaultTcpEstablished);
    ct.udpStream = r_.intField(n, "udp_stream_timeout", what, 1, model::ConnectionTracking::kDefaultUdpStream);
    ct.udp = r_.intField(n, "udp_timeout", what, 1, 60);
    // A cap the kernel's ct count can hold, far above any ENI's real allowance.
    if (auto m = r_.intField(n, "max_tracked_connections", what, 1, 100'000'000))
      ct.maxTracked = static_cast<std::uint32_t>(*m);
    i.connectionTracking = std::move(ct);
  }
};

// yaml-cpp's scanner reads a whole flow collection ahead before the first
// event (about 230 bytes of memory per '[' of an unclosed run), so nesting
// is bounded on the text first, in one pass: a '[' or '{' that can open a
// flow collection (at a line's start, or after ':', '-', ',', '[' or '{' and
// blanks), outside quotes and comments, counts one level; ']' and '}' close one.
// Block levels are not counted here; the event pass then applies the bound
// to all levels.
std::optional<ShapeError> flowNestingError(std::string_view text) {
  int depth = 0, line = 0, column = 0;
  char quote = 0;
  char previous = '\n';  // the last character that was not a blank
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      column = 0;
      if (!quote || depth == 0) quote = 0;  // a block scalar's quote does not span lines
      previous = '\n';
      continue;
    }
    ++column;
    if (quote) {
      if (c == quote && (quote == '\'' || text[i - 1] != '\\')) quote = 0;
      continue;
    }
    if (c == ' ' || c == '\t') continue;
    if (c == '#' && (previous == '\n' || text[i - 1] == ' ' || text[i - 1] == '\t')) {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      continue;
    }
    const bool atNodeStart =
        previous == '\n' || previous == ':' || previous == '-' || previous == ',' || previous == '[' || previous == '{';
    if ((c == '"' || c == '\'') && atNodeStart) quote = c;
    if ((c == '[' || c == '{') && atNodeStart && ++depth > kMaxNesting) {
      YAML::Mark mark;
      mark.line = line;
      mark.column = column - 1;
      return ShapeError{mark, fmt::format("lists and mappings nested more than {} deep", kMaxNesting), {}};
    }
    if ((c == ']' || c == '}') && depth > 0) --depth;
    previous = c;
  }
  return std::nullopt;
}

SourceLocation markLocation(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return SourceLocation{file, 0, 0};
  return SourceLocation{file, m.line + 1, m.column + 1};
}

// Closes a file descriptor on every path out of readConfigFile.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string notRegular(mode_t mode) {
  if (S_ISDIR(mode)) return "the config path is a directory, not a file";
  if (S_ISFIFO(mode)) return "the config path is a FIFO, not a regular file";
  if (S_ISCHR(mode)) return "the config path is a character device, not a regular file";
  if (S_ISBLK(mode)) return "the config path is a block device, not a regular file";
  if (S_ISSOCK(mode)) return "the config path is a socket, not a regular file";
  return "the config path is not a regular file";
}

}  // namespace

bool parseConfig(std::string_view yaml, const std::string& sourceName, model::Model& out, Diagnostics& diags) {
  std::size_t before = diags.errorCount();
  out.sourceFile = sourceName;
  Reader reader(sourceName, diags);
  if (auto deep = flowNestingError(yaml)) {
    diags.error(markLocation(sourceName, deep->mark), deep->message, deep->hint);
    return false;
  }
  // yaml-cpp reports syntax errors by exception; this is the boundary where
  // they become diagnostics.
  Document doc;
  try {
    doc = parseDocument(yaml, std::max(kMinExpansion, kExpansionFactor * static_cast<std::uint64_t>(yaml.size())));
  } catch (const ShapeError& e) {
    diags.error(markLocation(sourceName, e.mark), e.message, e.hint);
    return false;
  } catch (const YAML::Exception& e) {
    diags.error(markLocation(sourceName, e.mark), "YAML syntax error: " + e.msg);
    return false;
  }
  ConfigParser(reader, out).parseRoot(doc.root());
  return diags.errorCount() == before;
}

std::optional<model::Model> loadConfigString(std::string_view yaml, const std::string& sourceName, Diagnostics& diags) {
  model::Model m;
  if (!parseConfig(yaml, sourceName, m, diags)) return std::nullopt;
  if (!model::validate(m, diags)) return std::nullopt;
  return m;
}

std::optional<std::string> readConfigFile(const std::string& path, const LoadOptions& options, Diagnostics& diags) {
  struct stat st {};
  return readRegularFile(path, options, diags, st);
}

std::optional<std::string> readRegularFile(const std::string& path, const LoadOptions& options, Diagnostics& diags,
                                           struct stat& st) {
  auto fail = [&](std::string message, std::string hint = {}) -> std::optional<std::string> {
    diags.error(SourceLocation{path, 0, 0}, std::move(message), std::move(hint));
    return std::nullopt;
  };
  auto failErrno = [&](std::string_view what) { return fail(fmt::format("{}: {}", what, std::strerror(errno))); };
  auto tooLarge = [&] {
    return fail(fmt::format("the config file is larger than the limit of {} bytes", options.maxBytes),
                options.limitHint);
  };
  // stat() first, so that a device or FIFO is not even opened (opening some
  // devices acts on them); the fstat() of what was opened is the check that
  // counts, as the path may change in between. O_NONBLOCK: opening a FIFO
  // must not wait for a writer.
  if (::stat(path.c_str(), &st) != 0) return failErrno("cannot open config file");
  if (!S_ISREG(st.st_mode)) return fail(notRegular(st.st_mode));
  Fd f{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
  if (f.fd < 0) return failErrno("cannot open config file");
  if (::fstat(f.fd, &st) != 0) return failErrno("cannot read config file");
  if (!S_ISREG(st.st_mode)) return fail(notRegular(st.st_mode));
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > options.maxBytes) return tooLarge();
  // The size is checked again while reading: a file may grow, and /proc-like
  // files report 0.
  std::string text;
  text.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failErrno("cannot read config file");
    }
    if (n == 0) break;
    if (static_cast<std::size_t>(n) > options.maxBytes - text.size()) return tooLarge();
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

std::optional<model::Model> loadConfigFile(const std::string& path, Diagnostics& diags, const LoadOptions& options) {
  auto text = readConfigFile(path, options, diags);
  if (!text) return std::nullopt;
  return loadConfigString(*text, path, diags);
}

}  // namespace vpcfw::config
