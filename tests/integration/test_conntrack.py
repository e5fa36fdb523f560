#!/usr/bin/python3
"""Connection tracking as AWS does it, with real packets in a lab: per-ENI
idle timeouts (ct timeout objects; a flow gets the shorter of its two ENIs'
values) and the tracked-connection allowance (ct count per ENI, drops counted
in `vpcfw status` and as REJECT records in the flow log), egress and ingress.
Every negative observation follows a positive one of the same kind in the
same run.

usage: test_conntrack.py VPCFW    (root; exit 77 = skipped)"""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilab import MiniLab, run  # noqa: E402
from netlab import HOLD_CLIENT, SERVER as TCP_SERVER, report  # noqa: E402  (SERVER below is UDP)
from test_flowlogs import Collector  # noqa: E402
from flowtraffic import EchoFlow, start_echo_server  # noqa: E402

# a: short lab timeouts and an allowance of 3; b: a shorter UDP timeout than
# a's; c: AWS's defaults; d: an allowance of 2 (met by flows coming in). a's
# group admits nothing in: what reaches a from c passes by conntrack state
# only. e, like a but with no settings, sends protocol 253. f, with an
# allowance of 1, admits tcp 7030 from 0.0.0.0/0 with all egress (untracked
# there: no connection of its allowance) and tcp 7031 from the VPC (tracked). A flow log of the
# VPC shows the allowance's drops as REJECTs.
CONFIG = """
limits: {profile: lab}
vpcs: [{name: "{T}v", cidr: 10.61.0.0/16}]
subnets: [{name: s, vpc: "{T}v", cidr: 10.61.1.0/24}]
security_groups:
  - {name: client, vpc: "{T}v", ingress: []}
  - name: server
    vpc: "{T}v"
    ingress:
      - {protocol: udp, ports: 7000-7010, cidr: 10.61.0.0/16}
      - {protocol: tcp, ports: 7000-7010, cidr: 10.61.0.0/16}
      - {protocol: 253, cidr: 10.61.0.0/16}
  - name: open
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 7030, cidr: 0.0.0.0/0}
      - {protocol: tcp, ports: 7031, cidr: 10.61.0.0/16}
instances:
  - name: "{T}a"
    subnet: s
    private_ip: 10.61.1.10
    security_groups: [client]
    connection_tracking: {udp_timeout: 6, udp_stream_timeout: 9, tcp_established_timeout: 8, max_tracked_connections: 3}
  - name: "{T}b"
    subnet: s
    private_ip: 10.61.1.11
    security_groups: [server]
    connection_tracking: {udp_timeout: 3, tcp_established_timeout: 20}
  - {name: "{T}c", subnet: s, private_ip: 10.61.1.12, security_groups: [server]}
  - name: "{T}d"
    subnet: s
    private_ip: 10.61.1.13
    security_groups: [server]
    connection_tracking: {max_tracked_connections: 2}
  - {name: "{T}e", subnet: s, private_ip: 10.61.1.14, security_groups: [client]}
  - name: "{T}f"
    subnet: s
    private_ip: 10.61.1.15
    security_groups: [open]
    connection_tracking: {max_tracked_connections: 1}
flow_logs:
  - {name: all, vpc: "{T}v", max_aggregation_interval: 2, destination: stdout}
"""

# In a: one UDP socket on a fixed port; "send HOST PORT" sends and waits for
# the answer, "wait" waits for anything.
PEER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
for line in sys.stdin:
    w = line.split()
    if w[0] == "send":
        s.sendto(b"hi", (w[1], int(w[2])))
    s.settimeout(2)
    try:
        d, a = s.recvfrom(100); print("got", flush=True)
    except socket.timeout:
        print("none", flush=True)
"""

# In b and c: UDP on a port; "echo" answers the next datagram, "push HOST PORT"
# sends one from the same port (the reply direction of the flow).
SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
for line in sys.stdin:
    w = line.split()
    if w[0] == "echo":
        s.settimeout(3)
        try:
            d, a = s.recvfrom(100); s.sendto(d, a); print("echoed", flush=True)
        except socket.timeout:
            print("none", flush=True)
    else:
        s.sendto(b"push", (w[1], int(w[2]))); print("pushed", flush=True)
"""

# Protocol 253 (experimental: no ports, no tracker of its own) on a raw socket:
# "send HOST" sends one packet, "wait" reports whether one arrives from anyone.
RAW = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
print("ready", flush=True)
for line in sys.stdin:
    w = line.split()
    if w[0] == "send":
        s.sendto(b"raw", (w[1], 0)); print("sent", flush=True)
    else:
        s.settimeout(2)
        try:
            s.recvfrom(100); print("got", flush=True)
        except socket.timeout:
            print("none", flush=True)
"""

def say(p, line):
    p.stdin.write(line + "\n")
    p.stdin.flush()
    return p.stdout.readline().strip()


def start(lab, who, script, *args):
    p = lab.exec(who, "/usr/bin/python3", "-u", "-c", script, *map(str, args),
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{script[:20]} did not start in {who}")
    return p


def connect(lab, procs, who, host, port):
    """A TCP connection from `who`, held open (its process joins `procs`): "connected" or "failed"."""
    c = lab.exec(who, "/usr/bin/python3", "-u", "-c", HOLD_CLIENT, host, str(port),
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(c)
    return c.stdout.readline().strip()


def entries(router, *filters):
    """(timeout seconds, line) of each conntrack entry in the router matching the filters."""
    r = run("ip", "netns", "exec", router, "conntrack", "-L", *filters, check=False)
    out = []
    for line in r.stdout.splitlines():
        m = re.match(r"^\S+\s+\d+\s+(\d+)\s", line)
        if m:
            out.append((int(m.group(1)), line))
    return out


def exchange(server, peer, host, port):
    """One request and its answer between the peer in a and a server."""
    server.stdin.write("echo\n")
    server.stdin.flush()
    got = say(peer, f"send {host} {port}")
    return got == "got" and server.stdout.readline().strip() == "echoed"


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw = sys.argv[1]
    results = []
    procs = []
    with MiniLab(vpcfw, CONFIG) as lab:
        router = lab.name("vpcfw-{T}v")
        collector = None
        try:
            compiled = run(vpcfw, "compile", lab.path).stdout
            results.append(("the compiled ruleset has the shorter-of-two UDP object for a and b (ct_udp_3_9)",
                            'ct timeout set "ct_udp_3_9"' in compiled))
            stream = run("ip", "netns", "exec", router, "cat",
                         "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream").stdout.strip()
            results.append((f"the fabric's default UDP stream timeout is AWS's 180 s, not Linux's 120 ({stream})",
                            stream == "180"))
            srv_c = start(lab, "{T}c", SERVER, 7000)
            srv_b = start(lab, "{T}b", SERVER, 7000)
            peer = start(lab, "{T}a", PEER, 40001)
            peer_b = start(lab, "{T}a", PEER, 40002)
            procs += [srv_c, srv_b, peer, peer_b]

            # Baseline: the flow passes both ways, and c's later datagram to a passes by state only.
            results.append(("a UDP request from a to c is answered", exchange(srv_c, peer, "10.61.1.12", 7000)))
            ac = entries(router, "-p", "udp", "--orig-src", "10.61.1.10", "--orig-port-src", "40001")
            results.append((f"the a->c entry has a's 6 s UDP timeout, not Linux's 30 ({ac})",
                            len(ac) == 1 and 3 <= ac[0][0] <= 6))
            results.append(("c's next datagram to a passes by state (a admits nothing by rule)",
                            say(srv_c, "push 10.61.1.10 40001") == "pushed" and say(peer, "wait") == "got"))

            # The shorter of two: a (6 s) and b (3 s) -> 3 s.
            results.append(("a UDP request from a to b is answered", exchange(srv_b, peer_b, "10.61.1.11", 7000)))
            ab = entries(router, "-p", "udp", "--orig-src", "10.61.1.10", "--orig-port-src", "40002")
            results.append((f"the a->b entry has the shorter timeout of the two ENIs, b's 3 s ({ab})",
                            len(ab) == 1 and 1 <= ab[0][0] <= 3))

            # Idle past a's timeout: the entry is gone, and the same datagram from c is refused.
            time.sleep(8)
            gone = entries(router, "-p", "udp", "--orig-src", "10.61.1.10", "--orig-port-src", "40001")
            results.append((f"after 8 s idle the a->c entry is gone ({gone})", gone == []))
            results.append(("c's datagram to a is now refused: no state lets it in",
                            say(srv_c, "push 10.61.1.10 40001") == "pushed" and say(peer, "wait") == "none"))

            # Other protocols: by address pair and protocol, replies accepted for 600 s.
            raw_e, raw_c = start(lab, "{T}e", RAW), start(lab, "{T}c", RAW)
            procs += [raw_e, raw_c]
            refused = say(raw_c, "send 10.61.1.14") == "sent" and say(raw_e, "wait") == "none"
            arrived = say(raw_e, "send 10.61.1.12") == "sent" and say(raw_c, "wait") == "got"
            back = say(raw_c, "send 10.61.1.14") == "sent" and say(raw_e, "wait") == "got"
            results.append(("protocol 253 from c to e is refused before e sent any (e admits nothing)", refused))
            results.append(("protocol 253 from e reaches c (c's group admits it)", arrived))
            results.append(("then c's protocol 253 packet to e passes by state (tracked by address pair)", back))
            generic = entries(router, "-s", "10.61.1.14", "-d", "10.61.1.12")
            generic = [(t, line) for t, line in generic if line.split()[0] == "unknown"]
            results.append((f"its conntrack entry is by address pair and protocol, 600 s ({generic})",
                            len(generic) == 1 and 590 <= generic[0][0] <= 600 and " 253 " in generic[0][1]))

            # TCP: the established timeout a asked for.
            collector = Collector(vpcfw, lab.path)
            listen_c = start(lab, "{T}c", TCP_SERVER, 7001, ",", "hold")  # "," no UDP port
            procs.append(listen_c)
            conns = [connect(lab, procs, "{T}a", "10.61.1.12", 7001) for _ in range(3)]
            tcp = entries(router, "-p", "tcp", "--orig-src", "10.61.1.10", "--dport", "7001")
            results.append((f"a's first 3 TCP connections (its allowance) are established ({conns})",
                            conns == ["connected"] * 3))
            results.append((f"an established TCP entry of a has its 8 s timeout ({[t for t, _ in tcp]})",
                            len(tcp) == 3 and all(1 <= t <= 8 for t, _ in tcp)))
            before = status_drops(vpcfw, router, lab.name("{T}a"))
            results.append(("the 4th tracked connection of a is refused",
                            connect(lab, procs, "{T}a", "10.61.1.12", 7001) == "failed"))
            after = status_drops(vpcfw, router, lab.name("{T}a"))
            results.append((f"vpcfw status counts it as a's allowance-egress drop ({before} -> {after})",
                            after > before))
            text = run(vpcfw, "status", "--netns", router).stdout
            results.append(("vpcfw status prints the allowance stage", "allowance-egress" in text))
            diff = run(vpcfw, "diff", lab.path, "--netns", router, "--fabric", router, check=False)
            results.append((f"the counted flows in the allowance set are no drift ({diff.stdout.strip()})",
                            diff.returncode == 0))

            # Ingress: d takes 2 connections from c, the 3rd is refused at d's allowance.
            listen_d = start(lab, "{T}d", TCP_SERVER, 7002, ",", "hold")  # "," no UDP port
            procs.append(listen_d)
            got = [connect(lab, procs, "{T}c", "10.61.1.13", 7002) for _ in range(2)]
            d_before = status_drops(vpcfw, router, lab.name("{T}d"), "allowance-ingress")
            got.append(connect(lab, procs, "{T}c", "10.61.1.13", 7002))
            results.append((f"d takes its allowance of 2 connections from c, the 3rd is refused ({got})",
                            got == ["connected", "connected", "failed"]))
            d_after = status_drops(vpcfw, router, lab.name("{T}d"), "allowance-ingress")
            results.append((f"vpcfw status counts it as d's allowance-ingress drop ({d_before} -> {d_after})",
                            d_after > d_before))

            # Untracked flows are no connections of the allowance (AWS does not track them).
            listen_f = start(lab, "{T}f", TCP_SERVER, 7030, ",", "hold")  # "," no UDP port
            listen_f2 = start(lab, "{T}f", TCP_SERVER, 7031, ",", "hold")  # "," no UDP port
            procs += [listen_f, listen_f2]
            got = [connect(lab, procs, "{T}c", "10.61.1.15", 7030) for _ in range(3)]
            results.append((f"f (allowance 1) takes 3 untracked connections on 7030: none counts ({got})",
                            got == ["connected"] * 3))
            got = [connect(lab, procs, "{T}c", "10.61.1.15", 7031) for _ in range(2)]
            results.append((f"f's one tracked connection on 7031 works, the 2nd is refused ({got})",
                            got == ["connected", "failed"]))

            # Untrusted state: a ct timeout object someone else put into vpcfw's table is
            # drift (diff says so, lab apply removes it); one in another table is not ours.
            nft = ["ip", "netns", "exec", router, "nft"]
            obj = "{ protocol udp; l3proto inet; policy = { unreplied: 1 }; }"
            run(*nft, "add", "ct", "timeout", "inet", "vpcfw", "ct_forged", obj)
            run(*nft, "add", "table", "inet", "other")
            run(*nft, "add", "ct", "timeout", "inet", "other", "ct_udp_3_9", obj)
            diff = run(vpcfw, "diff", lab.path, "--netns", router, "--fabric", router, check=False)
            results.append((f"a forged ct timeout object in vpcfw's table is a difference ({diff.stdout.strip()})",
                            diff.returncode == 1 and "ct_forged" in diff.stdout and "other" not in diff.stdout))
            run(vpcfw, "lab", "apply", lab.path)
            listing = run(*nft, "list", "ruleset").stdout
            results.append(("lab apply removes it and leaves the other table's object alone",
                            "ct_forged" not in listing and "table inet other" in listing and
                            listing.count('ct timeout ct_udp_3_9') == 2))
            run(*nft, "delete", "table", "inet", "other")

            time.sleep(2.5)  # the 2 s interval closes
            records = collector.stop()
            ok = [r for r in records if r.get("log-status") == "OK"]

            def recs(src, dst, port, action):
                return [r for r in ok if r["srcaddr"] == src and r["dstaddr"] == dst and r["dstport"] == port and
                        r["action"] == action]
            results.append(("flow log: a's connections to c within its allowance are ACCEPT records",
                            bool(recs("10.61.1.10", "10.61.1.12", "7001", "ACCEPT"))))
            results.append(("flow log: a's 4th connection, over its allowance, is a REJECT record",
                            bool(recs("10.61.1.10", "10.61.1.12", "7001", "REJECT"))))
            results.append(("flow log: c's connections to d within d's allowance are ACCEPT records",
                            bool(recs("10.61.1.12", "10.61.1.13", "7002", "ACCEPT"))))
            results.append(("flow log: c's 3rd connection, over d's allowance, is a REJECT record",
                            bool(recs("10.61.1.12", "10.61.1.13", "7002", "REJECT"))))

            # A changed timeout: the object of the old value is deleted with the rules that
            # used it, and the kernel detaches it from the flows that had it
            # (nf_ct_untimeout): their next packet refreshes them with the namespace's
            # defaults (AWS's in a lab fabric), while new flows get the new value.
            echo = start_echo_server("vpcfw:i:" + lab.name("{T}b"), (7005,), 60)
            procs.append(echo)
            flow = EchoFlow("vpcfw:i:" + lab.name("{T}c"), "10.61.1.12", "10.61.1.11", 7005)
            procs.append(flow.p)
            got = flow.exchange(1)

            def cb_timeout():
                e = entries(router, "-p", "tcp", "--state", "ESTABLISHED", "--orig-src", "10.61.1.12",
                            "--orig-port-src", str(flow.sport))
                return e[0][0] if len(e) == 1 else None
            before = cb_timeout()
            results.append((f"c -> b (tcp): echoes, b's 20 s TCP timeout on the entry ({got}, {before})",
                            got == "echo ok" and before is not None and before <= 20))
            lab.apply(CONFIG.replace("tcp_established_timeout: 20", "tcp_established_timeout: 21"))
            listing = run("ip", "netns", "exec", router, "nft", "list", "table", "inet", "vpcfw").stdout
            results.append(("the 20 s object is gone, the 21 s one is in", "ct_tcp_20 " not in listing and
                            'ct timeout set "ct_tcp_21"' in listing))
            got = flow.exchange(1)
            after = cb_timeout()
            results.append((f"the open flow goes on and, its object gone, runs on the default 432000 s ({got}, {after})",
                            got == "echo ok" and after is not None and after > 400000))
            fresh = EchoFlow("vpcfw:i:" + lab.name("{T}c"), "10.61.1.12", "10.61.1.11", 7005)
            procs.append(fresh.p)
            e = entries(router, "-p", "tcp", "--state", "ESTABLISHED", "--orig-src", "10.61.1.12",
                        "--orig-port-src", str(fresh.sport))
            results.append((f"a new flow c -> b gets the new 21 s ({[t for t, _ in e]})",
                            len(e) == 1 and 15 < e[0][0] <= 21))
        except Exception as e:
            results.append((f"conntrack lab: {e}", False))
        finally:
            if collector and collector.p.poll() is None:
                collector.p.kill()
                collector.p.wait()
            for p in procs:
                p.kill()
                p.wait()
    left = [n for n in run("ip", "netns", "list").stdout.split("\n") if lab.tag in n]
    results.append((f"the lab was taken down (left: {left})", not left))
    return report(results, "conntrack")


def status_drops(vpcfw, router, eni, stage="allowance-egress"):
    st = json.loads(run(vpcfw, "status", "--netns", router, "--json").stdout)
    return sum(d["packets"] for d in st.get("eni_drops", []) if d["eni"] == eni and d["stage"] == stage)


if __name__ == "__main__":
    sys.exit(main())
