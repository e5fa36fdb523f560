// IR -> nft text (render.h): what `nft -f` loads, laid out as `nft list` shows a table.
#include "vpcfw/compile/render.h"

#include <fmt/format.h>

namespace vpcfw::compile {
namespace {

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string fieldsText(const std::vector<Field>& fields, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) out += fmt::format("{}{}", i ? sep : "", fieldText(fields[i]));
  return out;
}

// TCP flags by name, as nft writes them: "syn", "(fin | syn | rst)".
std::string tcpFlagsText(std::uint32_t bits) {
  static constexpr std::pair<std::uint32_t, const char*> kNames[] = {
      {kTcpFin, "fin"}, {kTcpSyn, "syn"}, {kTcpRst, "rst"}, {kTcpPsh, "psh"},
      {kTcpAck, "ack"}, {kTcpUrg, "urg"}, {kTcpEcn, "ecn"}, {kTcpCwr, "cwr"}};
  std::vector<std::string> names;
  for (const auto& [bit, name] : kNames)
    if (bits & bit) names.push_back(name);
  if (names.size() == 1) return names[0];
  std::string out = "(";
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? " | " : "") + names[i];
  return out + ")";
}

std::string renderElement(const Set& s, const SetElement& e) {
  std::string out;
  for (std::size_t i = 0; i < e.key.size(); ++i) out += (i ? " . " : "") + renderValue(s.key[i], e.key[i]);
  if (e.verdict) {
    switch (e.verdict->kind) {
      case VerdictKind::kJump:
        out += " : jump " + e.verdict->chain;
        break;
      case VerdictKind::kGoto:
        out += " : goto " + e.verdict->chain;
        break;
      case VerdictKind::kAccept:
        out += " : accept";
        break;
      case VerdictKind::kDrop:
        out += " : drop";
        break;
      case VerdictKind::kReturn:
        out += " : return";
        break;
      case VerdictKind::kContinue:
        out += " : continue";
        break;
    }
  }
  return out;
}

std::string renderVerdict(const Verdict& v) {
  switch (v.kind) {
    case VerdictKind::kAccept:
      return "accept";
    case VerdictKind::kDrop:
      return "drop";
    case VerdictKind::kReturn:
      return "return";
    case VerdictKind::kJump:
      return "jump " + v.chain;
    case VerdictKind::kGoto:
      return "goto " + v.chain;
    case VerdictKind::kContinue:
      return "";
  }
  return "";
}

std::string renderRule(const Rule& r, std::uint32_t g) {
  std::vector<std::string> parts;
  if (r.ctState == CtState::kEstablishedRelated) parts.push_back("ct state established,related");
  if (r.ctState == CtState::kInvalid) parts.push_back("ct state invalid");
  if (r.ctState == CtState::kEstablished) parts.push_back("ct state established");
  if (r.ctState == CtState::kRelated) parts.push_back("ct state related");
  if (r.ctState == CtState::kNew) parts.push_back("ct state new");
  if (r.cache) {
    const std::uint32_t bit = verdictCacheBit(*r.cache);
    parts.push_back(fmt::format("ct direction {}", r.cache->reply ? "reply" : "original"));
    switch (r.cache->step) {
      case VerdictCache::Step::kHit:
        parts.push_back(fmt::format("ct mark and 0x{:08x} == 0x{:08x}", ~(3u ^ bit), verdictCacheMark(g) | bit));
        break;
      case VerdictCache::Step::kExtend:
        parts.push_back(fmt::format("ct mark and 0xfffffffc == 0x{:08x}", verdictCacheMark(g)));
        break;
      case VerdictCache::Step::kRestart:
        break;
    }
  }
  for (const auto& m : r.matches) {
    switch (m.op) {
      case Op::kEq:
        parts.push_back(fmt::format("{} {}", fieldText(m.fields[0]), renderValue(m.fields[0], *m.value)));
        break;
      case Op::kNeq:
        parts.push_back(fmt::format("{} != {}", fieldText(m.fields[0]), renderValue(m.fields[0], *m.value)));
        break;
      case Op::kInSet:
        parts.push_back(fmt::format("{} @{}", fieldsText(m.fields, " . "), m.set));
        break;
      case Op::kNotInSet:
        parts.push_back(fmt::format("{} != @{}", fieldsText(m.fields, " . "), m.set));
        break;
      case Op::kVmap:
        parts.push_back(fmt::format("{} vmap @{}", fieldsText(m.fields, " . "), m.set));
        break;
      case Op::kAnyBits:
        parts.push_back(fmt::format("{} & {} != 0", fieldText(m.fields[0]), renderValue(m.fields[0], *m.value)));
        break;
    }
  }
  if (r.ctCount)
    parts.push_back(fmt::format("add @{} {{ {} ct count over {} }}", r.ctCount->set,
                                r.ctCount->keyName.empty() ? fieldText(r.ctCount->key) : quote(r.ctCount->keyName),
                                r.ctCount->over));
  if (r.log) parts.push_back(fmt::format("log prefix {} group {}", quote(r.log->prefix), r.log->group));
  if (r.counter) parts.push_back("counter");
  if (r.cache && r.cache->step == VerdictCache::Step::kExtend)
    parts.push_back(fmt::format("ct mark set ct mark or 0x{:08x}", verdictCacheBit(*r.cache)));
  if (r.cache && r.cache->step == VerdictCache::Step::kRestart)
    parts.push_back(fmt::format("ct mark set 0x{:08x}", verdictCacheMark(g) | verdictCacheBit(*r.cache)));
  if (r.nat)
    parts.push_back(fmt::format("{} {} to {}", r.nat->source ? "snat" : "dnat", r.nat->to.isV4() ? "ip" : "ip6",
                                r.nat->to.toString()));
  if (!r.ctTimeout.empty()) parts.push_back("ct timeout set " + quote(r.ctTimeout));
  if (auto v = renderVerdict(r.verdict); !v.empty()) parts.push_back(v);
  if (r.cache && r.cache->step == VerdictCache::Step::kHit)
    parts.push_back("comment " + quote(verdictCacheComment(g, r.comment)));
  else if (!r.comment.empty())
    parts.push_back("comment " + quote(r.comment));
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? " " : "") + parts[i];
  return out;
}

}  // namespace

std::vector<std::string_view> ctTimeoutStates(std::uint8_t l4proto) {
  if (l4proto == 6)
    return {"syn_sent",  "syn_recv", "established", "fin_wait", "close_wait", "last_ack",
            "time_wait", "close",    "syn_sent2",   "retrans",  "unack"};
  if (l4proto == 17) return {"unreplied", "replied"};
  return {};
}

std::string_view fieldText(Field f) {
  switch (f) {
    case Field::kIifname:
      return "iifname";
    case Field::kOifname:
      return "oifname";
    case Field::kIpSaddr:
      return "ip saddr";
    case Field::kIpDaddr:
      return "ip daddr";
    case Field::kIp6Saddr:
      return "ip6 saddr";
    case Field::kIp6Daddr:
      return "ip6 daddr";
    case Field::kL4proto:
      return "meta l4proto";
    case Field::kThDport:
      return "th dport";
    case Field::kIcmpType:
      return "icmp type";
    case Field::kIcmpCode:
      return "icmp code";
    case Field::kIcmp6Type:
      return "icmpv6 type";
    case Field::kIcmp6Code:
      return "icmpv6 code";
    case Field::kTcpFlags:
      return "tcp flags";
  }
  return "?";
}

std::string_view fieldTypeName(Field f) {
  switch (f) {
    case Field::kIifname:
    case Field::kOifname:
      return "ifname";
    case Field::kIpSaddr:
    case Field::kIpDaddr:
      return "ipv4_addr";
    case Field::kIp6Saddr:
    case Field::kIp6Daddr:
      return "ipv6_addr";
    case Field::kL4proto:
      return "inet_proto";
    case Field::kThDport:
      return "inet_service";
    case Field::kIcmpType:
      return "icmp_type";
    case Field::kIcmpCode:
      return "icmp_code";
    case Field::kIcmp6Type:
      return "icmpv6_type";
    case Field::kIcmp6Code:
      return "icmpv6_code";
    case Field::kTcpFlags:
      return "tcp_flag";
  }
  return "?";
}

std::string renderValue(Field f, const Value& v) {
  if (auto* s = std::get_if<std::string>(&v)) return quote(*s);
  if (auto* r = std::get_if<IntRange>(&v); r && f == Field::kTcpFlags && r->lo == r->hi && r->lo != 0 && r->lo <= 0xff)
    return tcpFlagsText(r->lo);
  if (auto* r = std::get_if<IntRange>(&v))
    return r->lo == r->hi ? fmt::format("{}", r->lo) : fmt::format("{}-{}", r->lo, r->hi);
  const auto& a = std::get<AddressRange>(v);
  if (a.lo == a.hi) return a.lo.toString();
  // A range that is exactly one CIDR block is shown as the block.
  for (int prefix = 0; prefix <= a.lo.bits(); ++prefix) {
    auto c = net::Cidr::make(a.lo, prefix);
    if (c.network() == a.lo && c.last() == a.hi) return c.toString();
  }
  return a.lo.toString() + "-" + a.hi.toString();
}

std::string renderTable(const Table& t, std::uint32_t cacheGeneration) {
  std::string out = fmt::format("table {} {} {{\n", t.family, t.name);
  for (const auto& o : t.ctTimeouts) {
    // Every state, so that `nft -f` sends what vpcfw does whatever nft's defaults.
    const auto states = ctTimeoutStates(o.l4proto);
    std::string policy;
    for (std::size_t i = 0; i < states.size() && i < o.seconds.size(); ++i)
      policy += fmt::format("{}{} : {}", i ? ", " : "", states[i], o.seconds[i]);
    out += fmt::format("\tct timeout {} {{\n\t\tprotocol {}\n\t\tl3proto inet\n\t\tpolicy = {{ {} }}\n\t}}\n\n", o.name,
                       o.l4proto == 6 ? "tcp" : "udp", policy);
  }
  for (const auto& s : t.sets) {
    std::string type;
    for (std::size_t i = 0; i < s.key.size(); ++i) type += fmt::format("{}{}", i ? " . " : "", fieldTypeName(s.key[i]));
    out +=
        fmt::format("\t{} {} {{\n\t\ttype {}{}\n", s.isMap ? "map" : "set", s.name, type, s.isMap ? " : verdict" : "");
    if (s.size) out += fmt::format("\t\tsize {}\n", s.size);
    if (s.interval) out += "\t\tflags interval\n";
    if (s.dynamic) out += "\t\tflags dynamic\n";
    if (!s.comment.empty()) out += fmt::format("\t\tcomment {}\n", quote(s.comment));
    if (!s.elements.empty()) {
      out += "\t\telements = { ";
      for (std::size_t i = 0; i < s.elements.size(); ++i)
        out += (i ? ",\n\t\t\t     " : "") + renderElement(s, s.elements[i]);
      out += " }\n";
    }
    out += "\t}\n\n";
  }
  for (std::size_t ci = 0; ci < t.chains.size(); ++ci) {
    const auto& c = t.chains[ci];
    out += fmt::format("\tchain {} {{\n", c.name);
    if (c.hook)
      out += fmt::format("\t\ttype {} hook {} priority {}; policy {};\n", c.type, *c.hook,
                         c.priority == 0 ? std::string("filter") : std::to_string(c.priority), renderVerdict(c.policy));
    for (const auto& r : c.rules) {
      // Generation 0 is no cache: without a commit's generation, which never
      // repeats, a hit could match marks made under other NACLs.
      if (r.cache && r.cache->step == VerdictCache::Step::kHit && cacheGeneration == 0) continue;
      out += "\t\t" + renderRule(r, cacheGeneration) + "\n";
    }
    out += "\t}\n";
    if (ci + 1 < t.chains.size()) out += "\n";
  }
  return out + "}\n";
}

std::string renderScript(const Ruleset& r, std::uint32_t cacheGeneration) {
  // Create-if-missing, delete, recreate: one nft transaction that replaces
  // the table whatever it held, and touches nothing else.
  return fmt::format("# vpcfw ruleset for fabric {}\ntable {} {}\ndelete table {} {}\n{}", r.fabric, r.table.family,
                     r.table.name, r.table.family, r.table.name, renderTable(r.table, cacheGeneration));
}

}  // namespace vpcfw::compile
