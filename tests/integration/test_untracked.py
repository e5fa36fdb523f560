#!/usr/bin/python3
"""Kernel test of untracked flows (vpc-semantics.md, "Connection tracking";
docs/ruleset.md, "Untracked flows"): long-lived TCP echo flows run while a
config change removes the security-group rules that allowed them. A flow AWS
does not track (tcp 7 open from 0.0.0.0/0, all egress allowed) stops at
once; a tracked flow (tcp 8, open from one range only) keeps echoing. Every
path that commits is shown: `vpcfw lab apply` (flows from the internet
through the gateway's NAT and between instances), `vpcfw apply --host` and a
vpcfwd reload (host mode, in namespaces the test makes). Every flow echoes
before the change (the harness sees a positive), and the flows that must
stop are judged by the same exchange that worked before. A server that
streams to its client over UDP stops when its egress "all" rule goes (the
flow's replies lose their rule), while a tracked stream goes on, and the
client's next datagram sets the flow up again.

usage: test_untracked.py VPCFW VPCFWD    (root; exit 77 = skipped)"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilab import MiniLab, expect, run  # noqa: E402
from netlab import IP, Notifications, host_and_peer, report  # noqa: E402

TRAFFIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flowtraffic.py")
from flowtraffic import EchoFlow as Flow, Pinger, PushFlow, start_echo_server, start_server  # noqa: E402

CLIENT = "198.51.100.70"  # an internet host (the internet namespace answers for the documentation ranges)

LAB = """
vpcs: [{name: "{T}v", cidr: 10.82.0.0/16}]
internet_gateways: [{name: "{T}g", vpc: "{T}v"}]
route_tables:
  - {name: public, vpc: "{T}v", routes: [{destination: 0.0.0.0/0, internet_gateway: "{T}g"}]}
subnets:
  - {name: s1, vpc: "{T}v", cidr: 10.82.1.0/24, route_table: public}
security_groups:
  - name: web
    vpc: "{T}v"
    ingress:
%(rules)s
      - {protocol: tcp, ports: 9, cidr: 198.51.100.0/24}
  - {name: client, vpc: "{T}v"}
instances:
  - {name: "{T}web", subnet: s1, private_ip: 10.82.1.10, public_ip: 203.0.113.82, security_groups: [web]}
  - {name: "{T}cli", subnet: s1, private_ip: 10.82.1.20, security_groups: [client]}
"""
RULES = ("      - {protocol: tcp, ports: 7, cidr: 0.0.0.0/0}\n"
         "      - {protocol: icmp, cidr: 0.0.0.0/0}\n"
         "      - {protocol: tcp, ports: 8, cidr: 198.51.100.0/24}\n"
         "      - {protocol: tcp, ports: 8, cidr: 10.82.0.0/16}")

# Host mode: namespace `host`'s veth-h (10.0.1.10) is the ENI; the peer
# speaks from 198.51.100.7 (netlab.host_and_peer).
HOST = """vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24}]
security_groups:
  - name: web
    vpc: v
    ingress:
%(rules)s
      - {protocol: tcp, ports: 9, cidr: 198.51.100.0/24}
instances:
  - {name: h1, subnet: s, private_ip: 10.0.1.10, host: labhost, interface: veth-h, security_groups: [web]}
"""
HOST_RULES = ("      - {protocol: tcp, ports: 7, cidr: 0.0.0.0/0}\n"
              "      - {protocol: tcp, ports: 8, cidr: 198.51.100.0/24}")


def check_change(results, where, untracked, tracked, change):
    """Both kinds of flow echo; `change()` (returning the command's output) runs; the
    untracked ones stop, the tracked ones go on; the output names each cut flow."""
    for name, f in {**untracked, **tracked}.items():
        results.append((f"{where}, before: {name} connects and echoes ({f.first})",
                        f.first.startswith("connected") and f.exchange(1) == "echo ok"))
    out = change()
    # Each untracked flow by its source port, named once; no tracked flow named.
    named = lambda f: [x for x in out.splitlines() if "cut untracked flow" in x and
                       f":{f.first.split()[-1]} -> " in x]
    results.append((f"{where}: each untracked flow cut is reported, no tracked one ({out.strip()[-400:]})",
                    all(len(named(f)) == 1 and ":7: " in named(f)[0] for f in untracked.values()) and
                    not any(named(f) for f in tracked.values())))
    for name, f in untracked.items():
        got = f.exchange(2)
        results.append((f"{where}, after: the untracked flow {name} is cut ({got})", got == "echo lost"))
    for name, f in tracked.items():
        got = f.exchange(2)
        results.append((f"{where}, after: the tracked flow {name} survives the rule's removal ({got})",
                        got == "echo ok"))
    return out


def lab_part(vpcfw, results):
    with MiniLab(vpcfw, LAB % {"rules": RULES}) as lab:
        web, cli = "vpcfw:i:" + lab.name("{T}web"), "vpcfw:i:" + lab.name("{T}cli")
        inet = os.environ["VPCFW_LAB_INTERNET"]
        server, flows = start_echo_server(web, (7, 8, 9), 120), []
        try:
            expect(results, "lab: tcp 9 works (the server is up)", lab.probe(CLIENT, "{T}web", port=9), "ok")
            explain7 = run(vpcfw, "explain", lab.path, "--from", CLIENT, "--to", lab.name("{T}web"), "--proto", "tcp",
                           "--port", "7", check=False).stdout
            explain8 = run(vpcfw, "explain", lab.path, "--from", CLIENT, "--to", lab.name("{T}web"), "--proto", "tcp",
                           "--port", "8", check=False).stdout
            results.append(("explain: tcp 7 from the internet is an untracked flow, tcp 8 is tracked",
                            "untracked" in explain7 and "untracked" not in explain8))
            untracked = {"internet -> web:7 (through the gateway's NAT)": Flow(inet, CLIENT, "203.0.113.82", 7),
                         "cli -> web:7": Flow(cli, "10.82.1.20", "10.82.1.10", 7)}
            tracked = {"internet -> web:8": Flow(inet, CLIENT, "203.0.113.82", 8),
                       "cli -> web:8": Flow(cli, "10.82.1.20", "10.82.1.10", 8)}
            flows = list(untracked.values()) + list(tracked.values())
            # ICMP is always tracked, even open from 0.0.0.0/0 with all egress allowed.
            explain_icmp = run(vpcfw, "explain", lab.path, "--from", lab.name("{T}cli"), "--to",
                               lab.name("{T}web"), "--proto", "icmp", check=False).stdout
            results.append(("explain: ICMP from anywhere with all egress is tracked",
                            "connection tracked" in explain_icmp and "untracked" not in explain_icmp))
            pinger = Pinger(cli, "10.82.1.20", "10.82.1.10")
            flows.append(pinger)
            results.append(("lab apply, before: cli's ICMP echo flow is answered", pinger.ping() == "reply ok"))
            out = check_change(results, "lab apply", untracked, tracked,
                               lambda: lab.apply(LAB % {"rules": ""}).stdout)
            got = pinger.ping()
            results.append((f"lab apply, after: the ICMP echo flow survives its rule's removal (tracked: {got})",
                            got == "reply ok"))
            fresh = run(IP, "netns", "exec", cli, "python3", TRAFFIC, "ping", "10.82.1.20", "10.82.1.10", "2").stdout
            results.append((f"lab: a new ICMP echo flow is refused ({fresh.strip()})", fresh.strip() == "replies 0"))
            results.append(("lab apply says how many flows it cut", "2 untracked flows cut" in out))
            expect(results, "lab: a new flow to tcp 7 is refused", lab.probe(CLIENT, "{T}web", port=7), "dropped")
            expect(results, "lab: a new flow to tcp 8 is refused", lab.probe(CLIENT, "{T}web", port=8), "dropped")
            expect(results, "lab: tcp 9 (unchanged rule) still works", lab.probe(CLIENT, "{T}web", port=9), "ok")
            again = lab.apply(LAB % {"rules": ""}).stdout
            results.append(("a second lab apply changes nothing and cuts nothing",
                            "0 changes, 0 untracked flows cut" in again))
        finally:
            for f in flows:
                f.close()
            server.kill()
            server.wait()


def host_part(vpcfw, vpcfwd, results):
    tag = f"vu{os.getpid() % 100000}"
    host, peer = f"{tag}-host", f"{tag}-peer"
    work = tempfile.mkdtemp(prefix=f"{tag}-")
    os.chmod(work, 0o700)
    cfg = os.path.join(work, "vpcfw.yaml")
    rundir = os.path.join(work, "run")
    os.mkdir(rundir, 0o700)
    env = dict(os.environ, VPCFW_RUN_DIR=rundir, NOTIFY_SOCKET=os.path.join(work, "notify"))
    sock = os.path.join(work, "vpcfwd.sock")
    server = daemon = notify = None
    flows = []

    def write(rules):
        with open(cfg + ".tmp", "w") as f:
            f.write(HOST % {"rules": rules})
        os.rename(cfg + ".tmp", cfg)

    def pair(label):
        u = {f"198.51.100.7 -> host:7 ({label})": Flow(peer, "198.51.100.7", "10.0.1.10", 7)}
        t = {f"198.51.100.7 -> host:8 ({label})": Flow(peer, "198.51.100.7", "10.0.1.10", 8)}
        flows.extend(list(u.values()) + list(t.values()))
        return u, t

    try:
        host_and_peer(tag, host, peer)
        server = start_echo_server(host, (7, 8, 9), 120)
        # vpcfw apply --host: the CLI's commit path.
        write(HOST_RULES)
        run(vpcfw, "apply", cfg, "--host", "labhost", "--netns", host)
        u, t = pair("vpcfw apply")
        write("")
        check_change(results, "vpcfw apply --host", u, t,
                     lambda: run(vpcfw, "apply", cfg, "--host", "labhost", "--netns", host).stdout)
        # vpcfwd: a reload's commit path, counted in its metrics.
        write(HOST_RULES)
        notify = Notifications(env["NOTIFY_SOCKET"])
        log = os.path.join(work, "vpcfwd.log")
        with open(log, "w") as logf:
            daemon = subprocess.Popen([vpcfwd, "--config", cfg, "--host", "labhost", "--netns", host,
                                       "--control-socket", sock], env=env, stdout=logf, stderr=logf)
        results.append(("vpcfwd starts (READY=1)", notify.wait("READY=1", timeout=30) is not None))
        u, t = pair("vpcfwd")

        def reload():
            """The edit, then `vpcfw reload` (it returns once committed); the daemon's log is its report."""
            write("")
            r = run(vpcfw, "reload", "--socket", sock, check=False)
            results.append(("vpcfw reload: committed", r.returncode == 0))
            with open(log) as f:
                return f.read()

        check_change(results, "vpcfwd reload", u, t, reload)
        # Flows of the previous part that retransmitted into the restored
        # rules may have started again and been cut too: the counter equals
        # the cuts the log names, at least the one of this part.
        metrics = run(vpcfw, "metrics", "--socket", sock, check=False).stdout
        with open(log) as f:
            logged = sum(1 for x in f if "cut untracked flow" in x)
        results.append((f"vpcfwd counts the flows it cut (vpcfw_untracked_flows_cut_total {logged})",
                        logged >= 1 and f"vpcfw_untracked_flows_cut_total {logged}" in metrics.splitlines()))
    finally:
        for f in flows:
            f.close()
        if daemon:
            daemon.kill()
            daemon.wait()
        if server:
            server.kill()
            server.wait()
        if notify:
            notify.close()
        for ns in (host, peer):
            subprocess.run([IP, "netns", "del", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


# A server that streams to its client over UDP: srv admits udp 7000 from
# 0.0.0.0/0 and sends all traffic anywhere (untracked at srv), udp 7001 from
# the VPC only (tracked). The change keeps both ingress rules and narrows
# srv's egress to tcp 443.
PUSH = """
vpcs: [{name: "{T}v", cidr: 10.83.0.0/16}]
subnets: [{name: s1, vpc: "{T}v", cidr: 10.83.1.0/24}]
security_groups:
  - name: srv
    vpc: "{T}v"
    ingress:
      - {protocol: udp, ports: 7000, cidr: 0.0.0.0/0}
      - {protocol: udp, ports: 7001, cidr: 10.83.0.0/16}
    egress: [%(egress)s]
  - {name: client, vpc: "{T}v"}
instances:
  - {name: "{T}srv", subnet: s1, private_ip: 10.83.1.10, security_groups: [srv]}
  - {name: "{T}cli", subnet: s1, private_ip: 10.83.1.20, security_groups: [client]}
"""
ALL_OUT = "{protocol: all, cidr: 0.0.0.0/0}"
NARROW_OUT = "{protocol: tcp, ports: 443, cidr: 0.0.0.0/0}"


def push_part(vpcfw, results):
    """The server-push case: an untracked flow whose replies lose their rule stops at
    once (AWS judges them by rule), a tracked one goes on (replies by state), and the
    client's next datagram sets the flow up again (AWS tracks it from then on)."""
    with MiniLab(vpcfw, PUSH % {"egress": ALL_OUT}) as lab:
        srv, cli = "vpcfw:i:" + lab.name("{T}srv"), "vpcfw:i:" + lab.name("{T}cli")
        server, flows = start_server(srv, "push-server", (7000, 7001), 120), []
        try:
            explain = run(vpcfw, "explain", lab.path, "--from", lab.name("{T}cli"), "--to", lab.name("{T}srv"),
                          "--proto", "udp", "--port", "7000", check=False).stdout
            results.append(("push: explain labels udp 7000 untracked at srv", "untracked" in explain))
            untracked = PushFlow(cli, "10.83.1.20", "10.83.1.10", 7000)
            tracked = PushFlow(cli, "10.83.1.20", "10.83.1.10", 7001)
            flows += [untracked, tracked]
            for name, f in (("untracked (7000)", untracked), ("tracked (7001)", tracked)):
                n = f.pushes()
                results.append((f"push, before: srv streams to cli on the {name} flow ({n} in 1.5 s)", n >= 5))
            out = lab.apply(PUSH % {"egress": NARROW_OUT}).stdout
            cut = [x for x in out.splitlines() if "cut untracked flow" in x]
            results.append((f"push: lab apply cuts the untracked flow, no other ({cut})",
                            "1 untracked flows cut" in out and len(cut) == 1 and ":7000" in cut[0]))
            n = untracked.pushes()
            results.append((f"push, after: srv's stream on the untracked flow stops ({n} in 1.5 s)", n == 0))
            n = tracked.pushes()
            results.append((f"push, after: the tracked flow's stream goes on by state ({n} in 1.5 s)", n >= 5))
            untracked.say("hello")
            n = untracked.pushes()
            results.append((f"push: cli's next datagram sets the flow up again, tracked now ({n} in 1.5 s)", n >= 5))
        finally:
            for f in flows:
                f.close()
            server.kill()
            server.wait()


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    results = []
    lab_part(sys.argv[1], results)
    push_part(sys.argv[1], results)
    host_part(sys.argv[1], sys.argv[2], results)
    return report(results, "untracked flows")


if __name__ == "__main__":
    sys.exit(main())
