// Cutting untracked flows in the kernel: one conntrack dump of the fabric's
// namespace, flowsToCut, and a delete per picked entry (by tuple and id).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "vpcfw/nft/netns.h"
#include "vpcfw/track/untracked.h"

namespace vpcfw::track {
namespace {

struct NfctClose {
  void operator()(nfct_handle* h) const { nfct_close(h); }
};
struct CtFree {
  void operator()(nf_conntrack* c) const { nfct_destroy(c); }
};

// What a dumped entry needs to be judged and deleted again.
struct Entry {
  Flow flow;               // the request as the ENIs see it (see entryOf)
  int l3 = 0;              // AF_INET / AF_INET6
  net::IpAddress origDst;  // the original tuple's destination, for the delete
  std::uint16_t origDport = 0;
  std::uint32_t id = 0;
  std::optional<std::uint16_t> zone;
};

net::IpAddress addrAttr(const nf_conntrack* ct, int l3, nf_conntrack_attr v4, nf_conntrack_attr v6) {
  if (l3 == AF_INET) {
    const std::uint32_t a = nfct_get_attr_u32(ct, v4);
    return net::IpAddress::fromBytes(net::Family::kIpv4, reinterpret_cast<const std::uint8_t*>(&a));
  }
  return net::IpAddress::fromBytes(net::Family::kIpv6, static_cast<const std::uint8_t*>(nfct_get_attr(ct, v6)));
}

// The request's source is the original tuple's (an ENI sends with its own
// address; source NAT rewrites only the reply's destination); its
// destination is the reply tuple's source, so a flow that came in through
// the internet gateway's destination NAT is judged at the instance it
// reached, not at its public address.
std::optional<Entry> entryOf(const nf_conntrack* ct) {
  const int l3 = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
  if (l3 != AF_INET && l3 != AF_INET6) return std::nullopt;
  const std::uint8_t l4 = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  if (l4 != IPPROTO_TCP && l4 != IPPROTO_UDP) return std::nullopt;  // ICMP is always tracked
  const bool v4 = l3 == AF_INET;
  for (auto a : {v4 ? ATTR_ORIG_IPV4_SRC : ATTR_ORIG_IPV6_SRC, v4 ? ATTR_ORIG_IPV4_DST : ATTR_ORIG_IPV6_DST,
                 v4 ? ATTR_REPL_IPV4_SRC : ATTR_REPL_IPV6_SRC, ATTR_ORIG_PORT_SRC, ATTR_ORIG_PORT_DST,
                 ATTR_REPL_PORT_SRC, ATTR_ID})
    if (nfct_attr_is_set(ct, a) <= 0) return std::nullopt;
  Entry e;
  e.l3 = l3;
  e.flow.protocol = l4;
  e.flow.src = addrAttr(ct, l3, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC);
  e.flow.srcPort = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC));
  e.flow.dst = addrAttr(ct, l3, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC);
  e.flow.dstPort = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
  e.origDst = addrAttr(ct, l3, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
  e.origDport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
  e.id = nfct_get_attr_u32(ct, ATTR_ID);
  if (nfct_attr_is_set(ct, ATTR_ZONE) > 0) e.zone = nfct_get_attr_u16(ct, ATTR_ZONE);
  return e;
}

struct DumpState {
  const UntrackedBefore* before;
  std::vector<Entry> picked;
  std::size_t examined = 0;
};

int onEntry(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* s = static_cast<DumpState*>(data);
  auto e = entryOf(ct);
  if (!e) return NFCT_CB_CONTINUE;
  ++s->examined;
  // Only what was untracked somewhere is worth judging with the evaluator.
  if (s->before->untracked(model::Direction::kEgress, e->flow.src, e->flow.protocol, e->flow.dstPort) ||
      s->before->untracked(model::Direction::kIngress, e->flow.dst, e->flow.protocol, e->flow.dstPort))
    s->picked.push_back(std::move(*e));
  return NFCT_CB_CONTINUE;
}

// Deletes the entry by its original tuple and id: the kernel refuses the
// delete (ENOENT) when the id differs, so a flow that ended and started
// again on the same tuple since the dump is not touched.
int destroy(nfct_handle* h, const Entry& e) {
  std::unique_ptr<nf_conntrack, CtFree> ct(nfct_new());
  if (!ct) return -ENOMEM;
  nfct_set_attr_u8(ct.get(), ATTR_L3PROTO, static_cast<std::uint8_t>(e.l3));
  if (e.l3 == AF_INET) {
    std::uint32_t s, d;
    std::memcpy(&s, e.flow.src.bytes().data(), 4);
    std::memcpy(&d, e.origDst.bytes().data(), 4);
    nfct_set_attr_u32(ct.get(), ATTR_IPV4_SRC, s);
    nfct_set_attr_u32(ct.get(), ATTR_IPV4_DST, d);
  } else {
    nfct_set_attr(ct.get(), ATTR_IPV6_SRC, e.flow.src.bytes().data());
    nfct_set_attr(ct.get(), ATTR_IPV6_DST, e.origDst.bytes().data());
  }
  nfct_set_attr_u8(ct.get(), ATTR_L4PROTO, e.flow.protocol);
  nfct_set_attr_u16(ct.get(), ATTR_PORT_SRC, htons(e.flow.srcPort));
  nfct_set_attr_u16(ct.get(), ATTR_PORT_DST, htons(e.origDport));
  nfct_set_attr_u32(ct.get(), ATTR_ID, e.id);
  if (e.zone) nfct_set_attr_u16(ct.get(), ATTR_ZONE, *e.zone);
  if (nfct_query(h, NFCT_Q_DESTROY, ct.get()) < 0) return -errno;
  return 0;
}

}  // namespace

Expected<CutReport> cutUntracked(const UntrackedBefore& before, const model::Model& now,
                                 const std::vector<std::size_t>& enis, const std::optional<std::string>& netns) {
  CutReport report;
  if (before.empty()) return report;
  auto ran = nft::runInNetns(netns, [&]() -> Expected<void> {
    std::unique_ptr<nfct_handle, NfctClose> h(nfct_open(CONNTRACK, 0));
    if (!h) return systemError(ErrorCode::kKernel, "cannot open conntrack to cut untracked flows", errno);
    DumpState state{&before, {}, 0};
    nfct_callback_register(h.get(), NFCT_T_ALL, onEntry, &state);
    std::uint32_t family = AF_UNSPEC;
    if (nfct_query(h.get(), NFCT_Q_DUMP, &family) < 0)
      return systemError(ErrorCode::kKernel, "cannot read the conntrack table to cut untracked flows", errno);
    nfct_callback_unregister(h.get());
    report.examined = state.examined;
    std::vector<Flow> flows;
    flows.reserve(state.picked.size());
    for (const auto& e : state.picked) flows.push_back(e.flow);
    // One refused delete does not spare the other flows: all are tried.
    std::size_t failed = 0;
    std::optional<Error> first;
    for (auto& c : flowsToCut(before, now, enis, flows)) {
      const int r = destroy(h.get(), state.picked[c.index]);
      if (r == -ENOENT) {
        ++report.gone;
      } else if (r < 0) {
        if (!failed++)
          first =
              systemError(ErrorCode::kKernel, "cannot delete the conntrack entry of " + c.flow.describe(), -r).error();
      } else {
        report.cut.push_back(std::move(c));
      }
    }
    if (failed)
      return makeError(first->code, fmt::format("{} ({} of {} entries not deleted)", first->message, failed,
                                                failed + report.cut.size() + report.gone));
    return {};
  });
  if (!ran) return unexpected(ran.error());
  return report;
}

Expected<CutReport> cutAfterCommit(const nft::ApplyReport& applied, const model::Model& now,
                                   const compile::Placement& placement, const std::string& fabric,
                                   const std::optional<std::string>& netns) {
  if (applied.previous.empty()) return CutReport{};
  const auto before = UntrackedBefore::fromKernel(applied.previous);
  auto r = cutUntracked(before, now, enisOfFabric(placement, fabric), netns);
  if (r) r->unreadable = before.unreadable();
  return r;
}

std::vector<std::string> describe(const CutReport& r) {
  std::vector<std::string> out;
  for (const auto& c : r.cut) out.push_back(fmt::format("cut untracked flow {}: {}", c.flow.describe(), c.why));
  if (r.gone) out.push_back(fmt::format("{} untracked flow(s) to cut had already ended", r.gone));
  if (r.unreadable)
    out.push_back(
        fmt::format("{} element(s) of the kernel's untracked sets could not be read and were ignored", r.unreadable));
  return out;
}

}  // namespace vpcfw::track
