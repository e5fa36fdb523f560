// Reading conntrack tables (conntrack.h) with libnetfilter_conntrack, each on
// a thread inside its namespace (the ctnetlink socket belongs to the
// namespace it is opened in).
#include "vpcfw/probe/conntrack.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <system_error>

#include "vpcfw/nft/netns.h"

namespace vpcfw::probe {
namespace {

int collect(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto& ids = static_cast<TrackedIds*>(data)->byProtocol;
  const int proto = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
    for (auto attr : {ATTR_ORIG_PORT_SRC, ATTR_ORIG_PORT_DST, ATTR_REPL_PORT_SRC, ATTR_REPL_PORT_DST})
      if (nfct_attr_is_set(ct, attr) > 0) ids[proto].insert(ntohs(nfct_get_attr_u16(ct, attr)));
  } else if ((proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) && nfct_attr_is_set(ct, ATTR_ICMP_ID) > 0) {
    ids[proto].insert(ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID)));
  }
  return NFCT_CB_CONTINUE;
}

}  // namespace

Expected<TrackedIds> trackedIdentifiers(const std::vector<std::string>& namespaces) {
  TrackedIds ids;
  for (const auto& ns : namespaces) {
    auto r = nft::runInNetns(ns, [&]() -> Expected<void> {
      std::unique_ptr<nfct_handle, decltype(&nfct_close)> h(nfct_open(CONNTRACK, 0), &nfct_close);
      auto fail = [&](const char* what) {
        return makeError(ErrorCode::kKernel, "cannot " + std::string(what) + " the conntrack table of " + ns + ": " +
                                                 std::generic_category().message(errno));
      };
      if (!h) return fail("open");
      if (nfct_callback_register(h.get(), NFCT_T_ALL, collect, &ids) < 0) return fail("read");
      std::uint32_t family = AF_UNSPEC;
      if (nfct_query(h.get(), NFCT_Q_DUMP, &family) < 0) return fail("read");
      return {};
    });
    if (!r) return unexpected<Error>(r.error());
  }
  return ids;
}

}  // namespace vpcfw::probe
