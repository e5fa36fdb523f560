// IR -> libnftnl objects with nft's own encodings, and the canonical
// signatures of tables, chains, rules, sets and elements that diff compares
// (the same functions run on desired and dumped objects).
#include <arpa/inet.h>
#include <cstdio>
#include <net/if.h>      // IFNAMSIZ
#include <netinet/in.h>  // before linux/netfilter.h
#include <libnftnl/expr.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "nftnl_objects.h"
#include "vpcfw/compile/render.h"
#include "vpcfw/nft/applier.h"

namespace vpcfw::nft {
static std::string exprText(nftnl_expr* e);
std::string dynamicExpressionsOf(const compile::Table& t, const std::string& set);
namespace {

using compile::Field;
using compile::IntRange;
using compile::Op;

// nftables datatype ids (nftables include/datatype.h); a concatenation packs
// them 6 bits each.
constexpr std::uint32_t kTypeIpAddr = 7, kTypeIp6Addr = 8, kTypeInetProto = 12, kTypeInetService = 13,
                        kTypeIcmpType = 14, kTypeTcpFlag = 15, kTypeIcmp6Type = 29, kTypeIcmpCode = 32,
                        kTypeIcmp6Code = 33, kTypeIfname = 41;

struct FieldInfo {
  std::uint32_t type;
  std::uint32_t len;  // bytes in the packet / register
  bool bigEndian;     // for the set's key byte order (nft's userdata)
};

FieldInfo info(Field f) {
  switch (f) {
    case Field::kIifname:
    case Field::kOifname:
      return {kTypeIfname, 16, false};
    case Field::kIpSaddr:
    case Field::kIpDaddr:
      return {kTypeIpAddr, 4, true};
    case Field::kIp6Saddr:
    case Field::kIp6Daddr:
      return {kTypeIp6Addr, 16, true};
    case Field::kL4proto:
      return {kTypeInetProto, 1, false};
    case Field::kThDport:
      return {kTypeInetService, 2, true};
    case Field::kIcmpType:
      return {kTypeIcmpType, 1, false};
    case Field::kIcmpCode:
      return {kTypeIcmpCode, 1, false};
    case Field::kIcmp6Type:
      return {kTypeIcmp6Type, 1, false};
    case Field::kIcmp6Code:
      return {kTypeIcmp6Code, 1, false};
    case Field::kTcpFlags:
      return {kTypeTcpFlag, 1, false};
  }
  return {0, 0, false};
}

std::uint32_t round4(std::uint32_t n) { return (n + 3) / 4 * 4; }

// The register holding 32-bit slot `slot` of a concatenation, named as nft does.
std::uint32_t slotRegister(std::uint32_t slot) { return slot % 4 == 0 ? NFT_REG_1 + slot / 4 : NFT_REG32_00 + slot; }

// A field value as the bytes the kernel compares (network order where the
// packet has it, NUL-padded names).
std::string valueBytes(Field f, const compile::Value& v, bool high) {
  const auto fi = info(f);
  if (auto* s = std::get_if<std::string>(&v)) {
    std::string out(16, '\0');
    std::memcpy(out.data(), s->data(), std::min<std::size_t>(s->size(), 15));
    return out;
  }
  if (auto* a = std::get_if<compile::AddressRange>(&v)) {
    const auto& ip = high ? a->hi : a->lo;
    return std::string(reinterpret_cast<const char*>(ip.bytes().data()), ip.isV4() ? 4 : 16);
  }
  const auto& r = std::get<IntRange>(v);
  std::uint32_t x = high ? r.hi : r.lo;
  if (fi.len == 2) {
    std::uint16_t be = htons(static_cast<std::uint16_t>(x));
    return std::string(reinterpret_cast<const char*>(&be), 2);
  }
  return std::string(1, static_cast<char>(x & 0xff));
}

std::string padded(std::string s, std::uint32_t to) {
  s.resize(to, '\0');
  return s;
}

// ------------------------------------------------------------------ exprs
struct RuleBuilder {
  nftnl_rule* r;

  nftnl_expr* add(const char* name) {
    nftnl_expr* e = nftnl_expr_alloc(name);
    nftnl_rule_add_expr(r, e);
    return e;
  }
  void meta(std::uint32_t key, std::uint32_t dreg) {
    auto* e = add("meta");
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
  }
  void payload(std::uint32_t base, std::uint32_t offset, std::uint32_t len, std::uint32_t dreg) {
    auto* e = add("payload");
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
  }
  // Shortens the payload load just added (prefix matches load only the bytes they need).
  void rewindLoad(std::uint32_t len) {
    nftnl_expr* last = nullptr;
    nftnl_expr_iter* it = nftnl_expr_iter_create(r);
    for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) last = e;
    nftnl_expr_iter_destroy(it);
    if (last && std::strcmp(nftnl_expr_get_str(last, NFTNL_EXPR_NAME), "payload") == 0)
      nftnl_expr_set_u32(last, NFTNL_EXPR_PAYLOAD_LEN, len);
  }
  void cmp(std::uint32_t op, const std::string& data, std::uint32_t sreg = NFT_REG_1) {
    auto* e = add("cmp");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data.data(), static_cast<std::uint32_t>(data.size()));
  }
  void range(std::uint32_t op, const std::string& from, const std::string& to) {
    auto* e = add("range");
    nftnl_expr_set_u32(e, NFTNL_EXPR_RANGE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_RANGE_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_RANGE_FROM_DATA, from.data(), static_cast<std::uint32_t>(from.size()));
    nftnl_expr_set(e, NFTNL_EXPR_RANGE_TO_DATA, to.data(), static_cast<std::uint32_t>(to.size()));
  }
  void bitwise(const std::string& mask, std::string xorWith = {}) {
    auto* e = add("bitwise");
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_OP, NFT_BITWISE_BOOL);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, static_cast<std::uint32_t>(mask.size()));
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask.data(), static_cast<std::uint32_t>(mask.size()));
    if (xorWith.empty()) xorWith.assign(mask.size(), '\0');
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, xorWith.data(), static_cast<std::uint32_t>(xorWith.size()));
  }
  void byteorderHton(std::uint32_t reg) {
    auto* e = add("byteorder");
    nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_DREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_OP, NFT_BYTEORDER_HTON);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_LEN, 1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SIZE, 2);
  }
  void lookup(const std::string& set, std::uint32_t sreg, bool invert, bool verdictMap) {
    auto* e = add("lookup");
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
    if (verdictMap) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
    // Always present, as the kernel reports it back.
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, invert ? NFT_LOOKUP_F_INV : 0);
  }
  // nft's encodings of `ct direction D`, `ct mark and M == V`, `ct mark set
  // ct mark or B` and `ct mark set V` (ct mark is host order).
  void ctDirection(bool reply) {
    auto* e = add("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_DIRECTION);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    cmp(NFT_CMP_EQ, std::string(1, reply ? '\1' : '\0'));
  }
  static std::string u32Bytes(std::uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
  void ctMarkLoad() {
    auto* e = add("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
  }
  void ctMarkMatch(std::uint32_t mask, std::uint32_t value) {
    ctMarkLoad();
    bitwise(u32Bytes(mask));
    cmp(NFT_CMP_EQ, u32Bytes(value));
  }
  void ctMarkSetOr(std::uint32_t bits) {
    ctMarkLoad();
    bitwise(u32Bytes(~bits), u32Bytes(bits));
    ctMarkSet();
  }
  void ctMarkSetTo(std::uint32_t value) {
    auto* imm = add("immediate");
    nftnl_expr_set_u32(imm, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
    const std::string v = u32Bytes(value);
    nftnl_expr_set(imm, NFTNL_EXPR_IMM_DATA, v.data(), 4);
    ctMarkSet();
  }
  // An interface name as a set key holds it: IFNAMSIZ bytes, zero-padded.
  void ifnameConstant(const std::string& name, std::uint32_t reg) {
    auto* imm = add("immediate");
    nftnl_expr_set_u32(imm, NFTNL_EXPR_IMM_DREG, reg);
    std::string v = name.substr(0, IFNAMSIZ);
    v.resize(IFNAMSIZ, '\0');
    nftnl_expr_set(imm, NFTNL_EXPR_IMM_DATA, v.data(), IFNAMSIZ);
  }
  void ctMarkSet() {
    auto* e = add("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_SREG, NFT_REG_1);
  }
  void ctState(std::uint32_t bits) {
    auto* e = add("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    std::string mask(reinterpret_cast<const char*>(&bits), 4);  // ct state is host order
    bitwise(mask);
    cmp(NFT_CMP_NEQ, std::string(4, '\0'));
  }
  // `add @set { key ct count over N }`, as nft 1.0.6 encodes it. The
  // kernel reports the flags back, so they are said; a timeout it refuses
  // for a set without timeouts.
  void ctCount(const compile::CtCount& c, std::uint32_t keyReg) {
    auto* e = add("dynset");
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, keyReg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_ADD);
    nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, c.set.c_str());
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_FLAGS, 0);
    nftnl_expr_set(e, NFTNL_EXPR_DYNSET_EXPR, connlimit(c.over), 0);
  }
  static nftnl_expr* connlimit(std::uint32_t over) {
    nftnl_expr* e = nftnl_expr_alloc("connlimit");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_COUNT, over);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
    return e;
  }
  // `ct timeout set "NAME"`: a reference to the table's object.
  void ctTimeoutSet(const std::string& name) {
    auto* e = add("objref");
    nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_CT_TIMEOUT);
    nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_IMM_NAME, name.c_str());
  }
  // "log prefix P group G": to nfnetlink_log (the kernel keeps the prefix
  // and the group, and reports just those back).
  void log(const compile::Log& l) {
    auto* e = add("log");
    nftnl_expr_set_str(e, NFTNL_EXPR_LOG_PREFIX, l.prefix.c_str());
    nftnl_expr_set_u16(e, NFTNL_EXPR_LOG_GROUP, l.group);
  }
  // "snat ip to ADDR" / "dnat ip6 to ADDR".
  void nat(const compile::Nat& n) {
    auto* imm = add("immediate");
    nftnl_expr_set_u32(imm, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
    nftnl_expr_set(imm, NFTNL_EXPR_IMM_DATA, n.to.bytes().data(), n.to.isV4() ? 4 : 16);
    auto* e = add("nat");
    nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, n.source ? NFT_NAT_SNAT : NFT_NAT_DNAT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, n.to.isV4() ? NFPROTO_IPV4 : NFPROTO_IPV6);
    nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
    // What the kernel stores (and lists) for "to ADDR": a range of one
    // address. Said explicitly so that a read-back compares equal.
    nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MAX, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FLAGS, 1 /* NF_NAT_RANGE_MAP_IPS */);
  }

  void verdict(const compile::Verdict& v) {
    if (v.kind == compile::VerdictKind::kContinue) return;
    auto* e = add("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    switch (v.kind) {
      case compile::VerdictKind::kAccept:
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_ACCEPT);
        break;
      case compile::VerdictKind::kDrop:
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
        break;
      case compile::VerdictKind::kReturn:
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<std::uint32_t>(NFT_RETURN));
        break;
      case compile::VerdictKind::kJump:
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<std::uint32_t>(NFT_JUMP));
        nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, v.chain.c_str());
        break;
      case compile::VerdictKind::kGoto:
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<std::uint32_t>(NFT_GOTO));
        nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, v.chain.c_str());
        break;
      case compile::VerdictKind::kContinue:
        break;
    }
  }

  // The dependency a field needs before it is loaded (nft adds the same).
  void dependency(Field f, std::vector<std::string>& done) {
    auto need = [&](const std::string& key, auto&& emit) {
      if (std::find(done.begin(), done.end(), key) != done.end()) return;
      done.push_back(key);
      emit();
    };
    switch (f) {
      case Field::kIpSaddr:
      case Field::kIpDaddr:
        need("nfproto4", [&] {
          meta(NFT_META_NFPROTO, NFT_REG_1);
          cmp(NFT_CMP_EQ, std::string(1, static_cast<char>(NFPROTO_IPV4)));
        });
        break;
      case Field::kIp6Saddr:
      case Field::kIp6Daddr:
        need("nfproto6", [&] {
          meta(NFT_META_NFPROTO, NFT_REG_1);
          cmp(NFT_CMP_EQ, std::string(1, static_cast<char>(NFPROTO_IPV6)));
        });
        break;
      case Field::kIcmpType:
      case Field::kIcmpCode:
        need("icmp", [&] {
          meta(NFT_META_L4PROTO, NFT_REG_1);
          cmp(NFT_CMP_EQ, std::string(1, static_cast<char>(IPPROTO_ICMP)));
        });
        break;
      case Field::kIcmp6Type:
      case Field::kIcmp6Code:
        need("icmp6", [&] {
          meta(NFT_META_L4PROTO, NFT_REG_1);
          cmp(NFT_CMP_EQ, std::string(1, static_cast<char>(IPPROTO_ICMPV6)));
        });
        break;
      case Field::kTcpFlags:
        need("tcp", [&] {
          meta(NFT_META_L4PROTO, NFT_REG_1);
          cmp(NFT_CMP_EQ, std::string(1, static_cast<char>(IPPROTO_TCP)));
        });
        break;
      default:
        break;
    }
  }

  void load(Field f, std::uint32_t reg, bool inConcat) {
    switch (f) {
      case Field::kIifname:
        meta(NFT_META_IIFNAME, reg);
        break;
      case Field::kOifname:
        meta(NFT_META_OIFNAME, reg);
        break;
      case Field::kIpSaddr:
        payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4, reg);
        break;
      case Field::kIpDaddr:
        payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, reg);
        break;
      case Field::kIp6Saddr:
        payload(NFT_PAYLOAD_NETWORK_HEADER, 8, 16, reg);
        break;
      case Field::kIp6Daddr:
        payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 16, reg);
        break;
      case Field::kL4proto:
        meta(NFT_META_L4PROTO, reg);
        if (inConcat) byteorderHton(reg);
        break;
      case Field::kThDport:
        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg);
        break;
      case Field::kIcmpType:
      case Field::kIcmp6Type:
        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, reg);
        break;
      case Field::kIcmpCode:
      case Field::kIcmp6Code:
        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 1, 1, reg);
        break;
      case Field::kTcpFlags:
        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1, reg);
        break;
    }
  }

  void match(const compile::Match& m, std::vector<std::string>& deps) {
    for (auto f : m.fields) dependency(f, deps);
    // An explicit "meta l4proto icmp" is the dependency icmp fields need later.
    if (m.op == Op::kEq && m.fields[0] == Field::kL4proto) {
      const auto& p = std::get<IntRange>(*m.value);
      if (p.lo == p.hi && p.lo == IPPROTO_ICMP) deps.push_back("icmp");
      if (p.lo == p.hi && p.lo == IPPROTO_ICMPV6) deps.push_back("icmp6");
      if (p.lo == p.hi && p.lo == IPPROTO_TCP) deps.push_back("tcp");
    }
    if (m.op == Op::kAnyBits) {
      // nft's `f & mask != 0`: the masked field against zero.
      const Field f = m.fields[0];
      load(f, NFT_REG_1, false);
      const std::string mask = valueBytes(f, *m.value, false);
      bitwise(mask);
      cmp(NFT_CMP_NEQ, std::string(mask.size(), '\0'));
      return;
    }
    if (m.op == Op::kEq || m.op == Op::kNeq) {
      const Field f = m.fields[0];
      load(f, NFT_REG_1, false);
      const auto& v = *m.value;
      const std::uint32_t op = m.op == Op::kEq ? NFT_CMP_EQ : NFT_CMP_NEQ;
      if (auto* a = std::get_if<compile::AddressRange>(&v)) {
        // A CIDR, encoded as nft does: a byte-aligned prefix loads just its
        // bytes; otherwise the covering bytes are masked; /0 masks everything.
        const int bits = a->lo.bits();
        for (int prefix = 0; prefix <= bits; ++prefix) {
          auto c = net::Cidr::make(a->lo, prefix);
          if (c.network() != a->lo || c.last() != a->hi) continue;
          const std::string full = valueBytes(f, v, false);
          if (prefix == bits) {
            cmp(op, full);
          } else {
            const auto bytes = static_cast<std::uint32_t>(prefix == 0 ? bits / 8 : (prefix + 7) / 8);
            rewindLoad(bytes);
            if (prefix % 8 != 0 || prefix == 0) {
              std::string mask(bytes, '\0');
              for (int i = 0; i < prefix; ++i)
                mask[static_cast<std::size_t>(i / 8)] |= static_cast<char>(0x80 >> (i % 8));
              bitwise(mask);
            }
            cmp(op, full.substr(0, bytes));
          }
          return;
        }
        range(m.op == Op::kEq ? NFT_RANGE_EQ : NFT_RANGE_NEQ, valueBytes(f, v, false), valueBytes(f, v, true));
        return;
      }
      if (auto* ir = std::get_if<IntRange>(&v); ir && ir->lo != ir->hi) {
        if (m.op == Op::kEq) {
          cmp(NFT_CMP_GTE, valueBytes(f, v, false));
          cmp(NFT_CMP_LTE, valueBytes(f, v, true));
        } else {
          range(NFT_RANGE_NEQ, valueBytes(f, v, false), valueBytes(f, v, true));
        }
        return;
      }
      cmp(op, valueBytes(f, v, false));
      return;
    }
    std::uint32_t slot = 0;
    const bool concat = m.fields.size() > 1;
    for (auto f : m.fields) {
      load(f, slotRegister(slot), concat);
      slot += round4(info(f).len) / 4;
    }
    lookup(m.set, NFT_REG_1, m.op == Op::kNotInSet, m.op == Op::kVmap);
  }
};

void setUserdataComment(nftnl_rule* r, const std::string& comment) {
  if (comment.empty()) return;
  nftnl_udata_buf* buf = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
  nftnl_udata_put_strz(buf, NFTNL_UDATA_RULE_COMMENT, comment.c_str());
  nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(buf), nftnl_udata_buf_len(buf));
  nftnl_udata_buf_free(buf);
}

// The set userdata nft 1.0.6 writes, so that `nft list` prints our sets.
std::string setUserdata(const compile::Set& s) {
  nftnl_udata_buf* buf = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
  if (s.key.size() > 1) {
    nftnl_udata_put_u32(buf, NFTNL_UDATA_SET_KEYBYTEORDER, 0);
    // typeof: a concatenation (expression id 13), no data
    nftnl_udata* nest = nftnl_udata_nest_start(buf, NFTNL_UDATA_SET_KEY_TYPEOF);
    nftnl_udata_put_u32(buf, NFTNL_UDATA_SET_TYPEOF_EXPR, 13);
    nftnl_udata_put(buf, NFTNL_UDATA_SET_TYPEOF_DATA, 0, nullptr);
    nftnl_udata_nest_end(buf, nest);
  } else {
    nftnl_udata_put_u32(buf, NFTNL_UDATA_SET_KEYBYTEORDER, info(s.key[0]).bigEndian ? 2 : 1);
  }
  if (s.isMap) {
    nftnl_udata_put_u32(buf, NFTNL_UDATA_SET_DATABYTEORDER, 0);
    nftnl_udata_put_u32(buf, NFTNL_UDATA_SET_DATA_INTERVAL, 0);
  }
  if (!s.comment.empty()) nftnl_udata_put_strz(buf, NFTNL_UDATA_SET_COMMENT, s.comment.c_str());
  std::string out(static_cast<const char*>(nftnl_udata_buf_data(buf)), nftnl_udata_buf_len(buf));
  nftnl_udata_buf_free(buf);
  return out;
}

std::string openIntervalUserdata() {
  nftnl_udata_buf* buf = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
  nftnl_udata_put_u32(buf, NFTNL_UDATA_SET_ELEM_FLAGS, NFTNL_SET_ELEM_F_INTERVAL_OPEN);
  std::string out(static_cast<const char*>(nftnl_udata_buf_data(buf)), nftnl_udata_buf_len(buf));
  nftnl_udata_buf_free(buf);
  return out;
}

std::vector<ElementBytes> elementsOf(const compile::Set& s) {
  std::vector<ElementBytes> out;
  const bool concat = s.key.size() > 1;
  auto keyBytes = [&](const compile::SetElement& e, bool high) {
    std::string k;
    for (std::size_t i = 0; i < s.key.size(); ++i) {
      std::string b = valueBytes(s.key[i], e.key[i], high);
      k += concat ? padded(b, round4(info(s.key[i]).len)) : b;
    }
    return k;
  };
  for (const auto& e : s.elements) {
    if (s.interval && !concat) {
      // rbtree: the start, then the first key past the end flagged as an end.
      ElementBytes start;
      start.key = keyBytes(e, false);
      std::string end = keyBytes(e, true);
      bool carry = true;
      for (std::size_t i = end.size(); i-- > 0 && carry;) {
        auto b = static_cast<unsigned char>(end[i]);
        end[i] = static_cast<char>(b + 1);
        carry = b == 0xff;
      }
      // A range up to the maximum has no end element; nft marks its start
      // as open in the element's userdata (and lists it as x/0 or x-max).
      if (carry) start.userdata = openIntervalUserdata();
      out.push_back(std::move(start));
      if (!carry) {
        ElementBytes last;
        last.key = std::move(end);
        last.flags = NFT_SET_ELEM_INTERVAL_END;
        out.push_back(std::move(last));
      }
      continue;
    }
    ElementBytes eb;
    eb.key = keyBytes(e, false);
    if (s.interval) eb.keyEnd = keyBytes(e, true);
    if (e.verdict) {
      eb.hasVerdict = true;
      switch (e.verdict->kind) {
        case compile::VerdictKind::kJump:
          eb.verdict = NFT_JUMP;
          eb.chain = e.verdict->chain;
          break;
        case compile::VerdictKind::kGoto:
          eb.verdict = NFT_GOTO;
          eb.chain = e.verdict->chain;
          break;
        case compile::VerdictKind::kAccept:
          eb.verdict = NF_ACCEPT;
          break;
        case compile::VerdictKind::kDrop:
          eb.verdict = NF_DROP;
          break;
        case compile::VerdictKind::kReturn:
          eb.verdict = NFT_RETURN;
          break;
        case compile::VerdictKind::kContinue:
          eb.verdict = NFT_CONTINUE;
          break;
      }
    }
    out.push_back(std::move(eb));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string hex(const void* p, std::uint32_t len) {
  static const char* d = "0123456789abcdef";
  std::string out;
  auto* b = static_cast<const unsigned char*>(p);
  for (std::uint32_t i = 0; i < len; ++i) {
    out += d[b[i] >> 4];
    out += d[b[i] & 15];
  }
  return out;
}

}  // namespace

TablePtr makeTable(const std::string& name) {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, name.c_str());
  return t;
}

TablePtr makeOwnedTable(const std::string& name) {
  TablePtr t = makeTable(name);
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, 0);
  // The comment nft writes for `table inet vpcfw { comment "..." }`.
  nftnl_udata_buf* buf = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
  nftnl_udata_put_strz(buf, NFTNL_UDATA_TABLE_COMMENT, std::string(kOwnerMarker).c_str());
  nftnl_table_set_data(t.get(), NFTNL_TABLE_USERDATA, nftnl_udata_buf_data(buf), nftnl_udata_buf_len(buf));
  nftnl_udata_buf_free(buf);
  return t;
}

bool hasOwnerMarker(nftnl_table* t) {
  if (!nftnl_table_is_set(t, NFTNL_TABLE_USERDATA)) return false;
  std::uint32_t len = 0;
  const void* ud = nftnl_table_get_data(t, NFTNL_TABLE_USERDATA, &len);
  struct Found {
    bool marker = false;
  } found;
  nftnl_udata_parse(
      ud, len,
      [](const nftnl_udata* attr, void* data) -> int {
        if (nftnl_udata_type(attr) != NFTNL_UDATA_TABLE_COMMENT) return 0;
        const auto* text = static_cast<const char*>(nftnl_udata_get(attr));
        const std::uint32_t n = nftnl_udata_len(attr);
        // The comment is NUL-terminated; compare its text exactly.
        if (n == kOwnerMarker.size() + 1 && std::memcmp(text, kOwnerMarker.data(), kOwnerMarker.size()) == 0 &&
            text[kOwnerMarker.size()] == '\0')
          static_cast<Found*>(data)->marker = true;
        return 0;
      },
      &found);
  return found.marker;
}

LinearTable linearize(const compile::Table& t, const LinearizeOnly* only, std::uint32_t cacheGeneration) {
  LinearTable out;
  out.name = t.name;
  // Objects always: they are few, and a hint names only sets and chains.
  for (const auto& o : t.ctTimeouts) {
    LinearObject lo;
    lo.obj.reset(nftnl_obj_alloc());
    nftnl_obj* no = lo.obj.get();
    nftnl_obj_set_str(no, NFTNL_OBJ_TABLE, t.name.c_str());
    nftnl_obj_set_str(no, NFTNL_OBJ_NAME, o.name.c_str());
    nftnl_obj_set_u32(no, NFTNL_OBJ_FAMILY, NFPROTO_INET);
    nftnl_obj_set_u32(no, NFTNL_OBJ_TYPE, NFT_OBJECT_CT_TIMEOUT);
    nftnl_obj_set_u16(no, NFTNL_OBJ_CT_TIMEOUT_L3PROTO, NFPROTO_INET);
    nftnl_obj_set_u8(no, NFTNL_OBJ_CT_TIMEOUT_L4PROTO, o.l4proto);
    std::uint32_t seconds[NFTNL_CTTIMEOUT_ARRAY_MAX] = {};
    for (std::size_t i = 0; i < o.seconds.size() && i < NFTNL_CTTIMEOUT_ARRAY_MAX; ++i) seconds[i] = o.seconds[i];
    nftnl_obj_set_data(no, NFTNL_OBJ_CT_TIMEOUT_ARRAY, seconds, sizeof seconds);
    lo.name = o.name;
    lo.type = NFT_OBJECT_CT_TIMEOUT;
    lo.signature = objectSignature(no);
    out.objects.push_back(std::move(lo));
  }
  out.cacheGeneration = cacheGeneration & compile::kVerdictCacheGenerationMask;
  out.signature = tableSignature(makeOwnedTable(t.name).get());
  // A set's id is its place in the whole table, so that a partial
  // linearization gives each set the id the whole one would.
  std::uint32_t setId = 0;
  for (const auto& s : t.sets) {
    ++setId;
    if (only && !only->sets.contains(s.name)) continue;
    LinearSet ls;
    ls.set.reset(nftnl_set_alloc());
    nftnl_set* ns = ls.set.get();
    nftnl_set_set_str(ns, NFTNL_SET_TABLE, t.name.c_str());
    nftnl_set_set_str(ns, NFTNL_SET_NAME, s.name.c_str());
    nftnl_set_set_u32(ns, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(ns, NFTNL_SET_ID, setId);
    std::uint32_t type = 0, len = 0, flags = 0;
    std::vector<std::uint8_t> fieldLens;
    for (auto f : s.key) {
      type = (type << 6) | info(f).type;
      len += s.key.size() > 1 ? round4(info(f).len) : info(f).len;
      fieldLens.push_back(static_cast<std::uint8_t>(info(f).len));
    }
    if (s.interval) flags |= NFT_SET_INTERVAL;
    if (s.dynamic) flags |= NFT_SET_EVAL;
    if (s.interval && s.key.size() > 1) flags |= NFT_SET_CONCAT;
    if (s.isMap) flags |= NFT_SET_MAP;
    nftnl_set_set_u32(ns, NFTNL_SET_FLAGS, flags);
    nftnl_set_set_u32(ns, NFTNL_SET_KEY_TYPE, type);
    nftnl_set_set_u32(ns, NFTNL_SET_KEY_LEN, len);
    if (s.isMap) {
      nftnl_set_set_u32(ns, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
      nftnl_set_set_u32(ns, NFTNL_SET_DATA_LEN, 16);
    }
    if (s.size) nftnl_set_set_u32(ns, NFTNL_SET_DESC_SIZE, s.size);
    if (s.interval && s.key.size() > 1)
      nftnl_set_set_data(ns, NFTNL_SET_DESC_CONCAT, fieldLens.data(), static_cast<std::uint32_t>(fieldLens.size()));
    auto ud = setUserdata(s);
    nftnl_set_set_data(ns, NFTNL_SET_USERDATA, ud.data(), static_cast<std::uint32_t>(ud.size()));
    ls.elements = elementsOf(s);
    ls.signature = setSignature(ns);
    ls.flags = flags;
    if (s.dynamic) ls.dynamicExpressions = dynamicExpressionsOf(t, s.name);
    out.sets.push_back(std::move(ls));
  }
  for (const auto& c : t.chains) {
    if (only && !only->chains.contains(c.name)) continue;
    LinearChain lc;
    lc.chain.reset(nftnl_chain_alloc());
    nftnl_chain* nc = lc.chain.get();
    nftnl_chain_set_str(nc, NFTNL_CHAIN_TABLE, t.name.c_str());
    nftnl_chain_set_str(nc, NFTNL_CHAIN_NAME, c.name.c_str());
    nftnl_chain_set_u32(nc, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    if (c.hook) {
      std::uint32_t hook = *c.hook == "forward"       ? NF_INET_FORWARD
                           : *c.hook == "input"       ? NF_INET_LOCAL_IN
                           : *c.hook == "prerouting"  ? NF_INET_PRE_ROUTING
                           : *c.hook == "postrouting" ? NF_INET_POST_ROUTING
                                                      : NF_INET_LOCAL_OUT;
      nftnl_chain_set_u32(nc, NFTNL_CHAIN_HOOKNUM, hook);
      nftnl_chain_set_s32(nc, NFTNL_CHAIN_PRIO, c.priority);
      nftnl_chain_set_str(nc, NFTNL_CHAIN_TYPE, c.type.c_str());
      nftnl_chain_set_u32(nc, NFTNL_CHAIN_POLICY, c.policy.kind == compile::VerdictKind::kDrop ? NF_DROP : NF_ACCEPT);
    }
    lc.signature = chainSignature(nc);
    for (const auto& r : c.rules) {
      // Generation 0 is no cache (compile/render.h): no hit rules.
      if (r.cache && r.cache->step == compile::VerdictCache::Step::kHit && cacheGeneration == 0) continue;
      LinearRule lr;
      lr.rule.reset(nftnl_rule_alloc());
      nftnl_rule* nr = lr.rule.get();
      nftnl_rule_set_str(nr, NFTNL_RULE_TABLE, t.name.c_str());
      nftnl_rule_set_str(nr, NFTNL_RULE_CHAIN, c.name.c_str());
      nftnl_rule_set_u32(nr, NFTNL_RULE_FAMILY, NFPROTO_INET);
      RuleBuilder b{nr};
      if (r.ctState == compile::CtState::kEstablishedRelated)
        b.ctState(NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED));
      if (r.ctState == compile::CtState::kInvalid) b.ctState(NF_CT_STATE_INVALID_BIT);
      if (r.ctState == compile::CtState::kEstablished) b.ctState(NF_CT_STATE_BIT(IP_CT_ESTABLISHED));
      if (r.ctState == compile::CtState::kRelated) b.ctState(NF_CT_STATE_BIT(IP_CT_RELATED));
      if (r.ctState == compile::CtState::kNew) b.ctState(NF_CT_STATE_BIT(IP_CT_NEW));
      using Step = compile::VerdictCache::Step;
      const std::uint32_t mark = compile::verdictCacheMark(cacheGeneration);
      if (r.cache) {
        const std::uint32_t bit = compile::verdictCacheBit(*r.cache);
        b.ctDirection(r.cache->reply);
        if (r.cache->step == Step::kHit) b.ctMarkMatch(~(3u ^ bit), mark | bit);
        if (r.cache->step == Step::kExtend) b.ctMarkMatch(~3u, mark);
      }
      std::vector<std::string> deps;
      for (const auto& m : r.matches) b.match(m, deps);
      if (r.ctCount) {
        if (r.ctCount->keyName.empty())
          b.load(r.ctCount->key, NFT_REG_1, false);
        else
          b.ifnameConstant(r.ctCount->keyName, NFT_REG_1);
        b.ctCount(*r.ctCount, NFT_REG_1);
      }
      if (r.log) b.log(*r.log);
      if (r.counter) b.add("counter");
      if (r.cache && r.cache->step == Step::kExtend) b.ctMarkSetOr(compile::verdictCacheBit(*r.cache));
      if (r.cache && r.cache->step == Step::kRestart) b.ctMarkSetTo(mark | compile::verdictCacheBit(*r.cache));
      if (r.nat) b.nat(*r.nat);
      if (!r.ctTimeout.empty()) b.ctTimeoutSet(r.ctTimeout);
      b.verdict(r.verdict);
      const bool hit = r.cache && r.cache->step == Step::kHit;
      lr.comment = hit ? compile::verdictCacheComment(cacheGeneration, r.comment) : r.comment;
      setUserdataComment(nr, lr.comment);
      if (hit) out.cacheChains.insert(c.name);
      lr.signature = ruleSignature(nr);
      lc.rules.push_back(std::move(lr));
    }
    out.chains.push_back(std::move(lc));
  }
  return out;
}

std::string objectSignature(nftnl_obj* o) {
  const std::uint32_t type = nftnl_obj_get_u32(o, NFTNL_OBJ_TYPE);
  std::string sig = "type=" + std::to_string(type);
  if (type == NFT_OBJECT_CT_TIMEOUT) {
    const std::uint8_t l4 =
        nftnl_obj_is_set(o, NFTNL_OBJ_CT_TIMEOUT_L4PROTO) ? nftnl_obj_get_u8(o, NFTNL_OBJ_CT_TIMEOUT_L4PROTO) : 0;
    sig += " l3=" + std::to_string(nftnl_obj_is_set(o, NFTNL_OBJ_CT_TIMEOUT_L3PROTO)
                                       ? nftnl_obj_get_u16(o, NFTNL_OBJ_CT_TIMEOUT_L3PROTO)
                                       : 0);
    sig += " l4=" + std::to_string(l4);
    // The states the protocol has (libnftnl keeps a fixed-size array).
    const std::size_t states = compile::ctTimeoutStates(l4).size();
    std::uint32_t len = 0;
    const auto* v = nftnl_obj_is_set(o, NFTNL_OBJ_CT_TIMEOUT_ARRAY)
                        ? static_cast<const std::uint32_t*>(nftnl_obj_get_data(o, NFTNL_OBJ_CT_TIMEOUT_ARRAY, &len))
                        : nullptr;
    sig += " policy=";
    for (std::size_t i = 0; v && i < states && (i + 1) * 4 <= len; ++i) sig += std::to_string(v[i]) + ",";
  } else {
    // Any other kind is not vpcfw's: it never matches a desired object.
    sig += " foreign";
  }
  if (nftnl_obj_is_set(o, NFTNL_OBJ_USERDATA)) {
    std::uint32_t len = 0;
    const void* ud = nftnl_obj_get_data(o, NFTNL_OBJ_USERDATA, &len);
    sig += " udata=" + hex(ud, len);
  }
  return sig;
}

// What each element of dynamic set `set` carries: the expression of the
// first rule that adds to it.
std::string dynamicExpressionsOf(const compile::Table& t, const std::string& set) {
  for (const auto& c : t.chains)
    for (const auto& r : c.rules)
      if (r.ctCount && r.ctCount->set == set) {
        nftnl_expr* e = RuleBuilder::connlimit(r.ctCount->over);
        std::string text = exprText(e);
        nftnl_expr_free(e);
        return text;
      }
  return "none";
}

bool elementsMatch(const LinearSet& s, const PackedElements& have) {
  if (s.dynamicExpressions.empty()) return have == packAll(s.elements);
  for (std::size_t i = 0; i < have.size(); ++i) {
    const ElementBytes e = unpack(have[i]);
    if (!e.keyEnd.empty() || e.flags || e.hasVerdict || !e.data.empty() || e.timeout || !e.userdata.empty() ||
        !e.objref.empty() || e.expressions != s.dynamicExpressions)
      return false;
  }
  return true;
}

void addElements(nftnl_set* s, const std::vector<ElementBytes>& elements, bool keysOnly) {
  for (const auto& e : elements) {
    nftnl_set_elem* ne = nftnl_set_elem_alloc();
    // A catch-all element has no key.
    if (!e.key.empty())
      nftnl_set_elem_set(ne, NFTNL_SET_ELEM_KEY, e.key.data(), static_cast<std::uint32_t>(e.key.size()));
    if (!e.keyEnd.empty())
      nftnl_set_elem_set(ne, NFTNL_SET_ELEM_KEY_END, e.keyEnd.data(), static_cast<std::uint32_t>(e.keyEnd.size()));
    if (e.flags) nftnl_set_elem_set_u32(ne, NFTNL_SET_ELEM_FLAGS, e.flags);
    if (!e.userdata.empty() && !keysOnly)
      nftnl_set_elem_set(ne, NFTNL_SET_ELEM_USERDATA, e.userdata.data(), static_cast<std::uint32_t>(e.userdata.size()));
    if (e.hasVerdict && !keysOnly) {
      nftnl_set_elem_set_u32(ne, NFTNL_SET_ELEM_VERDICT, static_cast<std::uint32_t>(e.verdict));
      if (!e.chain.empty()) nftnl_set_elem_set_str(ne, NFTNL_SET_ELEM_CHAIN, e.chain.c_str());
    }
    nftnl_set_elem_add(s, ne);
  }
}

static std::string exprText(nftnl_expr* e) {
  const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
  // Counters change with traffic; they are not part of what we want.
  if (std::strcmp(name, "counter") == 0) return "[counter]";
  char buf[4096];
  nftnl_expr_snprintf(buf, sizeof buf, e, NFTNL_OUTPUT_DEFAULT, 0);
  std::string text(buf);
  // The kernel reports a dynset's timeout even when none was given (and
  // refuses one for a set without timeouts): no timeout and 0 are the same.
  if (std::strcmp(name, "dynset") == 0)
    if (auto at = text.find(" timeout 0ms"); at != std::string::npos) text.erase(at, 12);
  return std::string("[") + name + " " + text + "]";
}

std::string ruleSignature(nftnl_rule* r) {
  std::string sig;
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) sig += exprText(e);
  nftnl_expr_iter_destroy(it);
  std::uint32_t len = 0;
  if (nftnl_rule_is_set(r, NFTNL_RULE_USERDATA)) {
    const void* ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
    sig += " udata=" + hex(ud, len);
  }
  // xtables-compat rules (iptables-nft) carry their match in these.
  if (nftnl_rule_is_set(r, NFTNL_RULE_COMPAT_PROTO))
    sig += " compat=" + std::to_string(nftnl_rule_get_u32(r, NFTNL_RULE_COMPAT_PROTO)) + "/" +
           std::to_string(nftnl_rule_is_set(r, NFTNL_RULE_COMPAT_FLAGS) ? nftnl_rule_get_u32(r, NFTNL_RULE_COMPAT_FLAGS)
                                                                        : 0);
  return sig;
}

std::string ruleComment(nftnl_rule* r) {
  if (!nftnl_rule_is_set(r, NFTNL_RULE_USERDATA)) return {};
  std::uint32_t len = 0;
  const auto* ud = static_cast<const char*>(nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len));
  // One TLV: type, length, NUL-terminated text.
  if (len < 3) return {};
  return std::string(ud + 2, strnlen(ud + 2, len - 2));
}

std::string tableSignature(nftnl_table* t) {
  std::string sig =
      "flags=" +
      std::to_string(nftnl_table_is_set(t, NFTNL_TABLE_FLAGS) ? nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS) : 0);
  if (nftnl_table_is_set(t, NFTNL_TABLE_USERDATA)) {
    std::uint32_t len = 0;
    const void* ud = nftnl_table_get_data(t, NFTNL_TABLE_USERDATA, &len);
    sig += " udata=" + hex(ud, len);
  }
  if (nftnl_table_is_set(t, NFTNL_TABLE_OWNER))
    sig += " owner=" + std::to_string(nftnl_table_get_u32(t, NFTNL_TABLE_OWNER));
  return sig;
}

std::string setSignature(nftnl_set* s) {
  std::string sig;
  auto u32 = [&](std::uint16_t attr, const char* name) {
    if (nftnl_set_is_set(s, attr)) sig += std::string(name) + "=" + std::to_string(nftnl_set_get_u32(s, attr)) + " ";
  };
  auto u64 = [&](std::uint16_t attr, const char* name) {
    if (nftnl_set_is_set(s, attr)) sig += std::string(name) + "=" + std::to_string(nftnl_set_get_u64(s, attr)) + " ";
  };
  // The kernel leaves out a zero flags attribute.
  sig +=
      "flags=" + std::to_string(nftnl_set_is_set(s, NFTNL_SET_FLAGS) ? nftnl_set_get_u32(s, NFTNL_SET_FLAGS) : 0) + " ";
  u32(NFTNL_SET_KEY_TYPE, "keytype");
  u32(NFTNL_SET_KEY_LEN, "keylen");
  u32(NFTNL_SET_DATA_TYPE, "datatype");
  u32(NFTNL_SET_DATA_LEN, "datalen");
  u32(NFTNL_SET_OBJ_TYPE, "objtype");
  u32(NFTNL_SET_POLICY, "policy");
  u32(NFTNL_SET_DESC_SIZE, "size");
  u64(NFTNL_SET_TIMEOUT, "timeout");
  u32(NFTNL_SET_GC_INTERVAL, "gc");
  std::uint32_t len = 0;
  if (nftnl_set_is_set(s, NFTNL_SET_DESC_CONCAT)) {
    const void* fields = nftnl_set_get_data(s, NFTNL_SET_DESC_CONCAT, &len);
    sig += "concat=" + hex(fields, len) + " ";
  }
  struct Exprs {
    std::string text;
  } exprs;
  nftnl_set_expr_foreach(
      s,
      [](nftnl_expr* e, void* data) -> int {
        static_cast<Exprs*>(data)->text += exprText(e);
        return 0;
      },
      &exprs);
  if (!exprs.text.empty()) sig += "exprs=" + exprs.text + " ";
  if (nftnl_set_is_set(s, NFTNL_SET_USERDATA)) {
    const void* ud = nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len);
    sig += "udata=" + hex(ud, len);
  }
  return sig;
}

std::string chainSignature(nftnl_chain* c) {
  std::string sig;
  // The kernel reports NFT_CHAIN_BASE among a base chain's flags; the hook says that already.
  const std::uint32_t flags = nftnl_chain_is_set(c, NFTNL_CHAIN_FLAGS) ? nftnl_chain_get_u32(c, NFTNL_CHAIN_FLAGS) : 0;
  sig += "flags=" + std::to_string(flags & ~static_cast<std::uint32_t>(NFT_CHAIN_BASE));
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM)) {
    sig += " hook=" + std::to_string(nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM));
    sig += " prio=" + std::to_string(nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO));
    sig +=
        " type=" + std::string(nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE) ? nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE) : "");
    sig += " policy=" + (nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY)
                             ? std::to_string(nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY))
                             : std::string("none"));
  } else {
    sig += " regular";
  }
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_DEV)) sig += std::string(" dev=") + nftnl_chain_get_str(c, NFTNL_CHAIN_DEV);
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_DEVICES)) {
    const char* const* devs = nftnl_chain_get_array(c, NFTNL_CHAIN_DEVICES);
    for (std::size_t i = 0; devs && devs[i]; ++i) sig += std::string(" dev=") + devs[i];
  }
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_USERDATA)) {
    std::uint32_t len = 0;
    const void* ud = nftnl_chain_get_data(c, NFTNL_CHAIN_USERDATA, &len);
    sig += " udata=" + hex(ud, len);
  }
  return sig;
}

namespace {
void putBytes(std::string& out, const std::string& s) {
  // A varint length: keys and names are short.
  for (std::size_t n = s.size();; n >>= 7) {
    out += static_cast<char>((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
    if (n <= 0x7f) break;
  }
  out += s;
}
template <typename T>
void putInt(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
struct Reader {
  std::string_view p;
  std::size_t at = 0;
  std::string bytes() {
    std::size_t n = 0;
    for (int shift = 0;; shift += 7) {
      const auto b = static_cast<unsigned char>(p[at++]);
      n |= static_cast<std::size_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    std::string s(p.substr(at, n));
    at += n;
    return s;
  }
  template <typename T>
  T integer() {
    T v;
    std::memcpy(&v, p.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
};
}  // namespace

PackedElement pack(const ElementBytes& e) {
  PackedElement out;
  out.reserve(e.key.size() + e.keyEnd.size() + e.chain.size() + 12);
  putBytes(out, e.key);
  // A concatenated interval element of single values ends where it starts.
  const char end = e.keyEnd.empty() ? 0 : e.keyEnd == e.key ? 1 : 2;
  out += end;
  if (end == 2) putBytes(out, e.keyEnd);
  putInt(out, e.flags);
  putInt(out, e.verdict);
  out += static_cast<char>(e.hasVerdict);
  putBytes(out, e.chain);
  // Only foreign elements have these: one byte says none of them.
  const bool rare = !e.data.empty() || e.timeout || !e.userdata.empty() || !e.expressions.empty() || !e.objref.empty();
  out += static_cast<char>(rare);
  if (rare) {
    putBytes(out, e.data);
    putInt(out, e.timeout);
    putBytes(out, e.userdata);
    putBytes(out, e.expressions);
    putBytes(out, e.objref);
  }
  return out;
}

ElementBytes unpack(std::string_view p) {
  Reader r{p};
  ElementBytes e;
  e.key = r.bytes();
  const char end = r.integer<char>();
  if (end == 1) e.keyEnd = e.key;
  if (end == 2) e.keyEnd = r.bytes();
  e.flags = r.integer<std::uint32_t>();
  e.verdict = r.integer<int>();
  e.hasVerdict = r.integer<char>() != 0;
  e.chain = r.bytes();
  if (r.integer<char>()) {
    e.data = r.bytes();
    e.timeout = r.integer<std::uint64_t>();
    e.userdata = r.bytes();
    e.expressions = r.bytes();
    e.objref = r.bytes();
  }
  return e;
}

PackedElements::PackedElements(std::vector<PackedElement> elements) {
  std::sort(elements.begin(), elements.end());
  std::size_t bytes = 0;
  for (const auto& e : elements) bytes += e.size();
  buf_.reserve(bytes);
  ends_.reserve(elements.size());
  for (const auto& e : elements) {
    buf_ += e;
    ends_.push_back(static_cast<std::uint32_t>(buf_.size()));
  }
}

PackedElements packAll(const std::vector<ElementBytes>& elements) {
  std::vector<PackedElement> out;
  out.reserve(elements.size());
  for (const auto& e : elements) out.push_back(pack(e));
  return PackedElements(std::move(out));
}

std::vector<ElementBytes> missingFrom(const PackedElements& a, const PackedElements& b) {
  std::vector<ElementBytes> out;
  std::size_t j = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    while (j < b.size() && b[j] < a[i]) ++j;
    if (j < b.size() && b[j] == a[i])
      ++j;
    else
      out.push_back(unpack(a[i]));
  }
  return out;
}

ElementBytes elementBytes(nftnl_set_elem* e) {
  ElementBytes b;
  std::uint32_t len = 0;
  auto bytes = [&](std::uint16_t attr, std::string& out) {
    if (!nftnl_set_elem_is_set(e, attr)) return;
    const char* k = static_cast<const char*>(nftnl_set_elem_get(e, attr, &len));
    out.assign(k, len);
  };
  bytes(NFTNL_SET_ELEM_KEY, b.key);
  bytes(NFTNL_SET_ELEM_KEY_END, b.keyEnd);
  bytes(NFTNL_SET_ELEM_DATA, b.data);
  bytes(NFTNL_SET_ELEM_USERDATA, b.userdata);
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_OBJREF)) b.objref = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_OBJREF);
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS)) b.flags = nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS);
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_TIMEOUT)) b.timeout = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_TIMEOUT);
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT)) {
    b.hasVerdict = true;
    b.verdict = static_cast<int>(nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT));
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN)) b.chain = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN);
  }
  nftnl_set_elem_expr_foreach(
      e,
      [](nftnl_expr* x, void* data) -> int {
        *static_cast<std::string*>(data) += exprText(x);
        return 0;
      },
      &b.expressions);
  return b;
}

}  // namespace vpcfw::nft
