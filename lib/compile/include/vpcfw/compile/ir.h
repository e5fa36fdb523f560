// The nftables intermediate representation the compiler produces: tables,
// chains, sets and maps, rules made of typed matches. It renders to nft text
// (render.h) and, in the nft module, to libnftnl objects. Pure values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "vpcfw/net/address.h"

namespace vpcfw::compile {

// Packet fields a rule can look at (and set keys are made of).
enum class Field {
  kIifname,
  kOifname,
  kIpSaddr,
  kIpDaddr,
  kIp6Saddr,
  kIp6Daddr,
  kL4proto,  // meta l4proto
  kThDport,  // th dport (tcp/udp destination port)
  kIcmpType,
  kIcmpCode,
  kIcmp6Type,
  kIcmp6Code,
  kTcpFlags,  // the TCP header's flags byte (Op::kAnyBits)
};
std::string_view fieldText(Field f);      // "ip saddr", "meta l4proto", ...
std::string_view fieldTypeName(Field f);  // nft set key type: "ipv4_addr", "inet_proto", ...

// One field's value in a match or a set element: an address range, an integer
// range or an interface name.
struct AddressRange {
  net::IpAddress lo, hi;
  auto operator<=>(const AddressRange&) const = default;
};
struct IntRange {
  std::uint32_t lo = 0, hi = 0;
  auto operator<=>(const IntRange&) const = default;
};
using Value = std::variant<AddressRange, IntRange, std::string>;

// Bits of Field::kTcpFlags, as in the TCP header.
inline constexpr std::uint32_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08, kTcpAck = 0x10,
                               kTcpUrg = 0x20, kTcpEcn = 0x40, kTcpCwr = 0x80;

enum class VerdictKind { kAccept, kDrop, kReturn, kJump, kGoto, kContinue };
struct Verdict {
  VerdictKind kind = VerdictKind::kContinue;
  std::string chain;  // for jump and goto
  auto operator<=>(const Verdict&) const = default;
  static Verdict accept() { return {VerdictKind::kAccept, {}}; }
  static Verdict drop() { return {VerdictKind::kDrop, {}}; }
  static Verdict ret() { return {VerdictKind::kReturn, {}}; }
  static Verdict jump(std::string c) { return {VerdictKind::kJump, std::move(c)}; }
  static Verdict goTo(std::string c) { return {VerdictKind::kGoto, std::move(c)}; }
};

struct SetElement {
  std::vector<Value> key;          // one value per key field
  std::optional<Verdict> verdict;  // maps only
  auto operator<=>(const SetElement&) const = default;
};

// A named set (or verdict map when isMap). Interval sets hold disjoint,
// merged elements: the kernel rejects overlaps.
struct Set {
  std::string name;
  std::vector<Field> key;
  bool interval = false;
  bool isMap = false;
  std::vector<SetElement> elements;
  std::string comment;
  // `flags dynamic`: rules add the elements (a ct count per ENI); they are
  // packet state, like counter values, so never part of the desired elements.
  bool dynamic = false;
  std::uint32_t size = 0;  // `size N` (0: none)
  bool operator==(const Set&) const = default;
};

// kAnyBits: `field & mask != 0`, some bit of the mask is set (the mask is
// the value, an IntRange of one number).
enum class Op { kEq, kNeq, kInSet, kNotInSet, kVmap, kAnyBits };
struct Match {
  std::vector<Field> fields;  // several = a concatenation
  Op op = Op::kEq;
  std::optional<Value> value;  // kEq / kNeq / kAnyBits: a single field's value
  std::string set;             // kInSet / kNotInSet / kVmap
  bool operator==(const Match&) const = default;
};

enum class CtState : std::uint8_t { kNone = 0, kEstablishedRelated, kInvalid, kEstablished, kRelated, kNew };

// The NACL verdict cache (docs/ruleset.md, "NACL verdict cache"): a flow's
// conntrack mark holds G << 2 | reply-passed << 1 | original-passed, where G
// is the cache generation the applier picks for the table (a new one with
// every change to what anti-spoofing and the NACLs decide with), so a packet
// of an established flow whose direction has passed them under G is
// accepted at once. Rules with a cache step match ct state established.
inline constexpr std::uint32_t kVerdictCacheGenerationMask = 0x3fffffff;
struct VerdictCache {
  enum class Step : std::uint8_t {
    kHit,      // this direction passed under G: accept
    kExtend,   // it passed now, and the mark is G's (the other direction): add this direction's bit
    kRestart,  // it passed now under a mark of another generation or none: the mark becomes G's
  };
  Step step = Step::kHit;
  bool reply = false;  // conntrack direction: original (false) or reply
  auto operator<=>(const VerdictCache&) const = default;
};
// The direction's bit of the mark, and the mark of generation g without bits.
inline std::uint32_t verdictCacheBit(const VerdictCache& c) { return c.reply ? 2u : 1u; }
inline std::uint32_t verdictCacheMark(std::uint32_t g) { return (g & kVerdictCacheGenerationMask) << 2; }
// A hit rule's comment as committed: "NACL verdict cache, generation G: "
// and the rule's own comment. The applier reads G back from it.
inline constexpr std::string_view kVerdictCacheComment = "NACL verdict cache, generation ";
inline std::string verdictCacheComment(std::uint32_t g, const std::string& comment) {
  return std::string(kVerdictCacheComment) + std::to_string(g & kVerdictCacheGenerationMask) + ": " + comment;
}

// Address translation through conntrack: the first packet of a flow picks
// the new address, its replies are translated back. The lab's internet
// gateways use it for 1:1 NAT between an instance's private and public IPv4.
struct Nat {
  bool source = false;  // snat (else dnat)
  net::IpAddress to;
  auto operator<=>(const Nat&) const = default;
};

// A copy of the packet to user space over nfnetlink_log (`log prefix P
// group G`): what the flow-log collector learns rejects and TCP flags from
// (docs/ruleset.md, "Flow-log logging"). nft refuses a prefix of more than
// 127 bytes.
struct Log {
  std::string prefix;
  std::uint16_t group = 0;
  auto operator<=>(const Log&) const = default;
};

// `add @set { key ct count over N }`: the key's element in a dynamic set
// counts the conntrack entries that passed here (nft_connlimit), and the
// rule goes on only when they are more than N: the tracked-connection
// allowance of the ENI the key names (docs/ruleset.md, "Connection tracking").
struct CtCount {
  Field key = Field::kIifname;
  std::string set;
  std::uint32_t over = 0;
  // When set, the key is this interface name rather than the packet's
  // `key` field: a routed host counts its own ENI's flows with a routed
  // ENI, found by address, under the ENI's own element.
  std::string keyName;
  auto operator<=>(const CtCount&) const = default;
};

struct Rule {
  std::vector<Match> matches;
  CtState ctState = CtState::kNone;   // an extra "ct state ..." match, before the others
  std::optional<VerdictCache> cache;  // after ct state, before the matches
  std::optional<CtCount> ctCount;     // after the matches
  std::optional<Log> log;             // after the matches, before the counter
  bool counter = false;
  std::optional<Nat> nat;  // after the matches
  std::string ctTimeout;   // `ct timeout set "NAME"` (a CtTimeout of the table) after the counter
  Verdict verdict;         // kContinue: no verdict statement (vmap rules, nat, ct timeout)
  std::string comment;     // names the config object the rule came from
  bool operator==(const Rule&) const = default;
};

struct Chain {
  std::string name;
  std::optional<std::string> hook;  // "forward", "input", "output", "prerouting", "postrouting"
  std::string type = "filter";      // base chains: "filter" or "nat"
  int priority = 0;
  Verdict policy = Verdict::accept();  // base chains only
  std::vector<Rule> rules;
  bool operator==(const Chain&) const = default;
};

// A ct timeout object: the idle timeouts, in seconds, that a flow assigned
// to it gets instead of the namespace's defaults. `seconds` holds every
// state of the protocol in the kernel's order (ctTimeoutStates), so that
// what the kernel reports back is exactly this.
struct CtTimeout {
  std::string name;
  std::uint8_t l4proto = 6;  // 6 tcp, 17 udp
  std::vector<std::uint32_t> seconds;
  auto operator<=>(const CtTimeout&) const = default;
};
// The states' names as nft writes them, in the kernel's order
// (CTA_TIMEOUT_TCP_* / CTA_TIMEOUT_UDP_*, less one); empty for another protocol.
std::vector<std::string_view> ctTimeoutStates(std::uint8_t l4proto);

struct Table {
  std::string family = "inet";
  std::string name;
  std::vector<CtTimeout> ctTimeouts;  // created before the rules that use them
  std::vector<Set> sets;
  std::vector<Chain> chains;
  bool operator==(const Table&) const = default;
};

// Everything vpcfw wants in one fabric (a network namespace or the host).
struct Ruleset {
  std::string fabric;
  bool hostMode = false;  // the fabric is a host (its own interfaces or those it routes for are ENIs)
  Table table;
  bool operator==(const Ruleset&) const = default;
};

// Which named objects of a fabric's Ruleset may differ from the same fabric's
// previous Ruleset (compile::IncrementalCompiler's result): sets and chains
// listed by name, including ones added or removed; every object not listed is
// equal to its previous self, element for element and rule for rule. `all`:
// nothing is known (a first compile, a fallback): compare everything.
struct RulesetChanges {
  bool all = true;
  bool table = false;  // the table's own attributes or its set of objects' order
  std::vector<std::string> sets, chains;
};

}  // namespace vpcfw::compile
