// Flow-log logging in the kernel, each case in its own namespaces: a ruleset
// with log statements is applied and read back clean, `nft list` shows the
// statements with their prefixes and group, and a log statement taken out,
// changed or a flow-log chain deleted by hand is a difference that apply
// repairs; without flow logs an apply takes every log statement out again.
// Real packets through a lab router and a host-mode ENI reach an
// nfnetlink_log socket bound to the group with the prefixes the collector
// reads (a raw socket here, so the test needs no libnetfilter_log).
#include <arpa/inet.h>
#include <poll.h>
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>

#include <cstdio>
#include <chrono>
#include <fstream>
#include <regex>

#include "kernel/netns_fixture.h"
#include "support/test_config.h"
#include "vpcfw/compile/compiler.h"
#include "vpcfw/config/loader.h"
#include "vpcfw/nft/applier.h"
#include "vpcfw/nft/netns.h"

using namespace vpcfw;
using test::applyIn;
using test::compileExample;
using test::diffIn;
using test::Netns;
using test::sh;

namespace {

const std::string kVpcfw = VPCFW_BINARY;
const std::string kFlowLogs = std::string(VPCFW_SOURCE_DIR) + "/config/examples/flow-logs.yaml";

const char* kStages[] = {"nacl-egress", "nacl-ingress", "sg-egress", "sg-ingress"};

std::string listing(const Netns& ns) {
  auto r = ns.exec("nft list table inet vpcfw");
  REQUIRE(r.status == 0);
  return r.out;
}

void nftScript(const Netns& ns, const std::string& script) {
  const std::string path = "/tmp/" + ns.name() + "-flowlog.nft";
  std::ofstream(path) << script;
  auto r = ns.exec("nft -f " + path);
  std::remove(path.c_str());
  INFO(script);
  INFO(r.out);
  REQUIRE(r.status == 0);
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// The example's one ENI, web, is eni-web in the fabric.
const std::string kIfname = "eni-web";

// What one nfnetlink_log message says.
struct Logged {
  std::string prefix;
  std::uint32_t indev = 0, outdev = 0;
  std::string packet;  // from the network header on

  // The TCP flags byte of an IPv4 packet; -1 when it is none.
  int tcpFlags() const {
    if (packet.size() < 20 || (packet[0] & 0xf0) != 0x40 || packet[9] != 6) return -1;
    const std::size_t at = static_cast<std::size_t>(packet[0] & 0x0f) * 4 + 13;
    return at < packet.size() ? static_cast<unsigned char>(packet[at]) : -1;
  }
};

// An nfnetlink_log socket in a namespace, bound to one group, as the
// collector binds it (whole packets, no batching).
class LogListener {
 public:
  LogListener(const Netns& ns, std::uint16_t group) : group_(group) {
    // A netlink socket belongs to the namespace it was opened in.
    auto opened = nft::runInNetns(ns.name(), [&]() -> Expected<void> {
      sock_ = mnl_socket_open(NETLINK_NETFILTER);
      if (!sock_ || mnl_socket_bind(sock_, 0, MNL_SOCKET_AUTOPID) < 0)
        return makeError(ErrorCode::kKernel, "nfnetlink_log socket");
      return {};
    });
    REQUIRE(opened.has_value());
    nfulnl_msg_config_cmd cmd{NFULNL_CFG_CMD_BIND};
    configure(NFULA_CFG_CMD, &cmd, sizeof cmd);
    nfulnl_msg_config_mode mode{};
    mode.copy_range = htonl(0xffff);
    mode.copy_mode = NFULNL_COPY_PACKET;
    configure(NFULA_CFG_MODE, &mode, sizeof mode);
    // Each message at once (the kernel's default batches 100, or a second).
    const std::uint32_t one = htonl(1);
    configure(NFULA_CFG_QTHRESH, &one, sizeof one);
  }
  ~LogListener() {
    if (sock_) mnl_socket_close(sock_);
  }
  LogListener(const LogListener&) = delete;
  LogListener& operator=(const LogListener&) = delete;

  // The messages that arrive until none has for `quiet`.
  std::vector<Logged> drain(std::chrono::milliseconds quiet = std::chrono::milliseconds(400)) {
    std::vector<Logged> out;
    std::vector<char> buf(1 << 16);
    pollfd p{mnl_socket_get_fd(sock_), POLLIN, 0};
    while (poll(&p, 1, static_cast<int>(quiet.count())) > 0) {
      const ssize_t n = mnl_socket_recvfrom(sock_, buf.data(), buf.size());
      REQUIRE(n > 0);
      mnl_cb_run(buf.data(), static_cast<std::size_t>(n), 0, 0, onMessage, &out);
    }
    return out;
  }

 private:
  void configure(std::uint16_t attr, const void* data, std::size_t len) {
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = ++seq_;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(group_);
    mnl_attr_put(nlh, attr, len, data);
    REQUIRE(mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) >= 0);
    const ssize_t n = mnl_socket_recvfrom(sock_, buf.data(), buf.size());
    REQUIRE(n > 0);
    // The kernel's ack: 0 = done.
    REQUIRE(mnl_cb_run(buf.data(), static_cast<std::size_t>(n), seq_, mnl_socket_get_portid(sock_), nullptr, nullptr) >=
            0);
  }

  static int onMessage(const nlmsghdr* nlh, void* data) {
    if (nlh->nlmsg_type != ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) return MNL_CB_OK;
    Logged m;
    mnl_attr_parse(
        nlh, sizeof(nfgenmsg),
        [](const nlattr* a, void* d) -> int {
          Logged& out = *static_cast<Logged*>(d);
          switch (mnl_attr_get_type(a)) {
            case NFULA_PREFIX:
              out.prefix =
                  std::string(static_cast<const char*>(mnl_attr_get_payload(a)),
                              strnlen(static_cast<const char*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a)));
              break;
            case NFULA_IFINDEX_INDEV:
              out.indev = ntohl(mnl_attr_get_u32(a));
              break;
            case NFULA_IFINDEX_OUTDEV:
              out.outdev = ntohl(mnl_attr_get_u32(a));
              break;
            case NFULA_PAYLOAD:
              out.packet.assign(static_cast<const char*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a));
              break;
            default:
              break;
          }
          return MNL_CB_OK;
        },
        &m);
    static_cast<std::vector<Logged>*>(data)->push_back(std::move(m));
    return MNL_CB_OK;
  }

  mnl_socket* sock_ = nullptr;
  std::uint16_t group_;
  std::uint32_t seq_ = 0;
};

std::uint32_t ifindex(const Netns& ns, const std::string& ifname) {
  auto r = ns.exec("cat /sys/class/net/" + ifname + "/ifindex");
  REQUIRE(r.status == 0);
  return static_cast<std::uint32_t>(std::stoul(r.out));
}

// A TCP connect from `from` in `ns`; true when it was answered (accepted or refused).
bool tcp(const Netns& ns, const std::string& from, const std::string& to, int port) {
  auto r = ns.exec(fmt::format(
      "python3 -c \"import socket,sys\ns=socket.socket()\ns.settimeout(0.5)\ns.bind(('{}',0))\n"
      "try:\n s.connect(('{}',{}))\nexcept ConnectionRefusedError: sys.exit(0)\nexcept OSError: sys.exit(1)\n\"",
      from, to, port));
  return r.status == 0;
}

std::vector<const Logged*> withPrefix(const std::vector<Logged>& all, const std::string& prefix) {
  std::vector<const Logged*> out;
  for (const auto& m : all)
    if (m.prefix == prefix) out.push_back(&m);
  return out;
}

std::string described(const std::vector<Logged>& all) {
  std::string out;
  for (const auto& m : all)
    out += fmt::format("'{}' in {} out {} flags {}\n", m.prefix, m.indev, m.outdev, m.tcpFlags());
  return out;
}

}  // namespace

TEST_CASE("flow-log logging: applied, read back clean, listed with its prefixes and group 2701") {
  const auto r = compileExample("flow-logs");
  Netns ns("flowlog");
  CHECK(applyIn(r, ns).changed);
  // (a) the read-back finds exactly the desired table, and the CLI agrees.
  CHECK(diffIn(r, ns).empty());
  CHECK(sh(kVpcfw + " diff " + kFlowLogs + " --netns " + ns.name()).status == 0);
  auto again = applyIn(r, ns);
  CHECK_FALSE(again.changed);
  CHECK(again.messages == 0);
  // (b) what nft lists.
  const std::string text = listing(ns);
  INFO(text);
  for (const char* stage : kStages) {
    const std::string want =
        "log prefix \"vpcfw-drop " + std::string(stage) + " " + kIfname + "\" group 2701 counter packets ";
    CHECK_MESSAGE(text.find(want) != std::string::npos, want);
  }
  CHECK(text.find("log prefix \"vpcfw-tcp\" group 2701") != std::string::npos);
  CHECK(text.find("chain flow_log_tcp {\n\t\ttype filter hook postrouting priority filter; policy accept;") !=
        std::string::npos);
  // Anti-spoofing and conntrack-invalid drops do not log.
  CHECK(std::regex_search(text, std::regex("chain drop_web_anti_spoofing \\{\n\t\tcounter packets")));
  CHECK(std::regex_search(text, std::regex("chain drop_web_invalid \\{\n\t\tcounter packets")));
  std::size_t logs = 0;
  for (auto at = text.find(" group 2701"); at != std::string::npos; at = text.find(" group 2701", at + 1)) ++logs;
  CHECK(logs == 5);
}

TEST_CASE("flow-log logging: a log statement removed, changed or a flow-log chain deleted is drift") {
  const auto r = compileExample("flow-logs");
  struct Tamper {
    std::string what, script, evidence;  // evidence: in the listing afterwards
  };
  const std::vector<Tamper> tampers = {
      {"the log statement taken out of a drop chain",
       "flush chain inet vpcfw drop_web_sg_ingress\n"
       "add rule inet vpcfw drop_web_sg_ingress counter drop comment \"web sg-ingress\"\n",
       "chain drop_web_sg_ingress {\n\t\tcounter packets 0 bytes 0 drop comment \"web sg-ingress\""},
      {"a log statement sent to another group",
       "flush chain inet vpcfw drop_web_nacl_egress\n"
       "add rule inet vpcfw drop_web_nacl_egress log prefix \"vpcfw-drop nacl-egress eni-web\" group 1 counter drop "
       "comment \"web nacl-egress\"\n",
       "group 1 counter"},
      {"a log statement's prefix changed",
       "flush chain inet vpcfw drop_web_nacl_ingress\n"
       "add rule inet vpcfw drop_web_nacl_ingress log prefix \"vpcfw-drop nacl-ingress eni-other\" group 2701 counter "
       "drop comment \"web nacl-ingress\"\n",
       "eni-other"},
      {"the flow_log_tcp chain deleted", "flush chain inet vpcfw flow_log_tcp\ndelete chain inet vpcfw flow_log_tcp\n",
       ""},
  };
  for (const auto& t : tampers) {
    CAPTURE(t.what);
    Netns ns("flowlogtamper");
    applyIn(r, ns);
    REQUIRE(diffIn(r, ns).empty());
    const std::string good = listing(ns);
    nftScript(ns, t.script);
    const std::string after = listing(ns);
    INFO(after);
    REQUIRE(after != good);  // the tamper is real
    if (!t.evidence.empty()) REQUIRE(after.find(t.evidence) != std::string::npos);
    // (c) the same check the other drift tests use: diff, and the CLI's exit status.
    auto d = diffIn(r, ns);
    INFO(joined(d));
    CHECK_FALSE(d.empty());
    CHECK(sh(kVpcfw + " diff " + kFlowLogs + " --netns " + ns.name()).status == 1);
    // apply repairs it, and it stays repaired.
    CHECK(applyIn(r, ns).changed);
    CHECK(diffIn(r, ns).empty());
    CHECK(sh(kVpcfw + " diff " + kFlowLogs + " --netns " + ns.name()).status == 0);
    CHECK(listing(ns).find("log prefix \"vpcfw-drop sg-ingress eni-web\" group 2701") != std::string::npos);
    CHECK_FALSE(applyIn(r, ns).changed);
  }
}

TEST_CASE("flow-log logging: an apply without flow logs takes the log statements out, one with them puts them back") {
  const auto with = compileExample("flow-logs");
  auto m = test::loadExample("flow-logs");
  m.flowLogs.clear();
  auto rs = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(rs.has_value());
  REQUIRE(rs->size() == 1);
  const auto& without = (*rs)[0];
  Netns ns("flowlogoff");
  applyIn(with, ns);
  CHECK(listing(ns).find(" log prefix ") != std::string::npos);
  CHECK_FALSE(diffIn(without, ns).empty());
  auto off = applyIn(without, ns);
  CHECK(off.changed);
  CHECK(diffIn(without, ns).empty());
  const std::string text = listing(ns);
  CHECK(text.find("log prefix") == std::string::npos);
  CHECK(text.find("flow_log_tcp") == std::string::npos);
  CHECK(applyIn(with, ns).changed);
  CHECK(diffIn(with, ns).empty());
  CHECK(listing(ns).find("log prefix \"vpcfw-tcp\" group 2701") != std::string::npos);
}

TEST_CASE("flow-log logging: another group from the compile option is what the kernel holds") {
  auto m = test::loadExample("flow-logs");
  compile::CompileOptions o;
  o.flowLogGroup = 4242;
  auto rs = compile::compileRulesets(m, compile::labPlacement(m), o);
  REQUIRE(rs.has_value());
  const auto& r = (*rs)[0];
  Netns ns("flowloggroup");
  applyIn(r, ns);
  CHECK(diffIn(r, ns).empty());
  const std::string text = listing(ns);
  CHECK(text.find("log prefix \"vpcfw-tcp\" group 4242") != std::string::npos);
  CHECK(text.find("group 2701") == std::string::npos);
  // The default ruleset differs from it only in the group, and that is a difference.
  CHECK_FALSE(diffIn(compileExample("flow-logs"), ns).empty());
}

TEST_CASE("flow-log logging: real packets through a lab router reach the group with the ENI's and stage's prefix") {
  Netns router("fl-r"), web("fl-a"), db("fl-b");
  auto m = test::loadExample("two-tier");
  // A flow log on web1 only: the whole fabric logs, db1 too.
  model::FlowLog log;
  log.name = "web1";
  log.resourceKind = model::FlowLog::Resource::kInstance;
  log.resourceName = "web1";
  log.resource = m.findInstance("web1");
  REQUIRE(log.resource != model::kNone);
  m.flowLogs.push_back(log);
  auto rs = compile::compileRulesets(m, compile::labPlacement(m));
  REQUIRE(rs.has_value());
  REQUIRE(rs->size() == 1);
  for (auto [ns, ifn, addr, gw] : {std::tuple{&web, "eni-web1", "10.0.1.10/24", "10.0.1.1"},
                                   std::tuple{&db, "eni-db1", "10.0.2.20/24", "10.0.2.1"}}) {
    REQUIRE(sh(fmt::format("ip -n {} link add {} type veth peer name eth0 netns {}", router.name(), ifn, ns->name()))
                .status == 0);
    REQUIRE(router.exec(fmt::format("ip addr add {}/24 dev {}", gw, ifn)).status == 0);
    REQUIRE(router.exec(fmt::format("ip link set {} up", ifn)).status == 0);
    REQUIRE(ns->exec(fmt::format("ip addr add {} dev eth0", addr)).status == 0);
    REQUIRE(ns->exec("ip link set eth0 up").status == 0);
    REQUIRE(ns->exec("ip link set lo up").status == 0);
    REQUIRE(ns->exec(fmt::format("ip route add default via {}", gw)).status == 0);
  }
  REQUIRE(web.exec("ip addr add 10.0.1.77/24 dev eth0").status == 0);  // a forged source
  REQUIRE(router.exec("sysctl -qw net.ipv4.ip_forward=1").status == 0);
  applyIn((*rs)[0], router);
  const std::uint32_t web1 = ifindex(router, "eni-web1"), db1 = ifindex(router, "eni-db1");
  LogListener listener(router, compile::kFlowLogGroup);

  // web1 -> db1 port 22: web-acl egress denies it, at web1.
  CHECK_FALSE(tcp(web, "10.0.1.10", "10.0.2.20", 22));
  auto got = listener.drain();
  INFO(described(got));
  auto drops = withPrefix(got, "vpcfw-drop nacl-egress eni-web1");
  REQUIRE_FALSE(drops.empty());
  CHECK(drops.size() == got.size());
  CHECK(drops[0]->indev == web1);
  CHECK(drops[0]->tcpFlags() == compile::kTcpSyn);

  // db1 -> web1 port 2000: db-sg allows no egress; db1 logs though no flow log covers it.
  CHECK_FALSE(tcp(db, "10.0.2.20", "10.0.1.10", 2000));
  got = listener.drain();
  INFO(described(got));
  drops = withPrefix(got, "vpcfw-drop sg-egress eni-db1");
  REQUIRE_FALSE(drops.empty());
  CHECK(drops.size() == got.size());
  CHECK(drops[0]->indev == db1);

  // web1 -> db1 port 5432, allowed; db1 refuses: the SYN and the RST, each
  // once, on their way out of the router.
  CHECK(tcp(web, "10.0.1.10", "10.0.2.20", 5432));
  got = listener.drain();
  INFO(described(got));
  auto tcpLogged = withPrefix(got, "vpcfw-tcp");
  CHECK(tcpLogged.size() == got.size());
  REQUIRE(tcpLogged.size() == 2);
  CHECK(tcpLogged[0]->indev == web1);
  CHECK(tcpLogged[0]->outdev == db1);
  CHECK(tcpLogged[0]->tcpFlags() == compile::kTcpSyn);
  CHECK(tcpLogged[1]->indev == db1);
  CHECK(tcpLogged[1]->outdev == web1);
  CHECK((tcpLogged[1]->tcpFlags() & compile::kTcpRst) != 0);

  // A forged source dies in anti-spoofing, which is no flow log's REJECT.
  CHECK_FALSE(tcp(web, "10.0.1.77", "10.0.2.20", 5432));
  got = listener.drain();
  INFO(described(got));
  CHECK(got.empty());

  // The drop counters count the logged drops as before.
  auto st = nft::tableStatus(router.name());
  REQUIRE(st.has_value());
  for (const auto& e : st->eniDrops) {
    INFO(e.eni << " " << e.stage);
    const bool hit = (e.eni == "web1" && (e.stage == "nacl-egress" || e.stage == "anti-spoofing")) ||
                     (e.eni == "db1" && e.stage == "sg-egress");
    CHECK((e.packets > 0) == hit);
  }
}

TEST_CASE("flow-log logging: real packets to a host-mode ENI are logged on input, its replies on postrouting") {
  Netns host("fl-h"), remote("fl-x");
  Diagnostics diags;
  auto m = config::loadConfigFile(std::string(VPCFW_SOURCE_DIR) + "/tests/golden/host-mode-flow-logs.yaml", diags);
  REQUIRE(m.has_value());
  auto rs = compile::compileRulesets(*m, compile::labPlacement(*m));
  REQUIRE(rs.has_value());
  REQUIRE(rs->size() == 1);
  // No IPv6 on the link: the host's own IPv6 chatter (MLD) would meet its
  // IPv4-only NACL and be logged as drops between the messages looked for.
  for (const Netns* ns : {&host, &remote})
    REQUIRE(ns->exec("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1").status == 0);
  REQUIRE(sh(fmt::format("ip -n {} link add veth-h type veth peer name eth0 netns {}", host.name(), remote.name()))
              .status == 0);
  for (const char* cmd : {"ip addr add 10.0.1.10/24 dev veth-h", "ip link set veth-h up", "ip link set lo up",
                          "ip route add 198.51.100.0/24 dev veth-h"})
    REQUIRE(host.exec(cmd).status == 0);
  for (const char* cmd : {"ip addr add 198.51.100.5/24 dev eth0", "ip link set eth0 up", "ip link set lo up",
                          "ip route add 10.0.1.0/24 dev eth0"})
    REQUIRE(remote.exec(cmd).status == 0);
  applyIn((*rs)[0], host);
  const std::uint32_t veth = ifindex(host, "veth-h");
  LogListener listener(host, compile::kFlowLogGroup);

  // Port 80 from 198.51.100.0/24: allowed; the host refuses it. The SYN is
  // logged on input (flow_log_tcp_in), the host's RST on postrouting.
  CHECK(tcp(remote, "198.51.100.5", "10.0.1.10", 80));
  auto got = listener.drain();
  INFO(described(got));
  auto tcpLogged = withPrefix(got, "vpcfw-tcp");
  CHECK(tcpLogged.size() == got.size());
  REQUIRE(tcpLogged.size() == 2);
  CHECK(tcpLogged[0]->indev == veth);
  CHECK(tcpLogged[0]->tcpFlags() == compile::kTcpSyn);
  CHECK(tcpLogged[1]->outdev == veth);
  CHECK((tcpLogged[1]->tcpFlags() & compile::kTcpRst) != 0);

  // Port 22 from there: the NACL's rule 100 denies it.
  CHECK_FALSE(tcp(remote, "198.51.100.5", "10.0.1.10", 22));
  got = listener.drain();
  INFO(described(got));
  CHECK_FALSE(withPrefix(got, "vpcfw-drop nacl-ingress veth-h").empty());
  CHECK(withPrefix(got, "vpcfw-drop nacl-ingress veth-h").size() == got.size());

  // Port 443: no group rule allows it.
  CHECK_FALSE(tcp(remote, "198.51.100.5", "10.0.1.10", 443));
  got = listener.drain();
  INFO(described(got));
  CHECK_FALSE(withPrefix(got, "vpcfw-drop sg-ingress veth-h").empty());
  CHECK(withPrefix(got, "vpcfw-drop sg-ingress veth-h").size() == got.size());
}
