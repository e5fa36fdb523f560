#!/usr/bin/python3
"""Kernel test of untracked flows (vpc-semantics.md, "Connection tracking";
docs/ruleset.md, "Untracked flows"): long-lived TCP echo flows run while
`vpcfw lab apply` removes the security-group rules that allowed them. A flow
AWS does not track (tcp 7 open from 0.0.0.0/0, all egress allowed) stops at
once -- from the internet through the gateway's NAT and from another
instance; a tracked flow (tcp 8, open from one range only) keeps echoing.
Every flow echoes before the change (the harness sees a positive), and the
flows that must stop are judged by the same exchange that worked before.

usage: test_untracked.py VPCFW    (root; exit 77 = skipped)"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilab import MiniLab, expect, run  # noqa: E402
from netlab import IP, report  # noqa: E402

ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echoflow.py")
CLIENT = "198.51.100.70"  # an internet host (the internet namespace answers for the documentation ranges)

CONFIG = """
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
%(web_rules)s
      - {protocol: tcp, ports: 9, cidr: 198.51.100.0/24}
  - {name: client, vpc: "{T}v"}
instances:
  - {name: "{T}web", subnet: s1, private_ip: 10.82.1.10, public_ip: 203.0.113.82, security_groups: [web]}
  - {name: "{T}cli", subnet: s1, private_ip: 10.82.1.20, security_groups: [client]}
"""
BEFORE = CONFIG % {"web_rules": "      - {protocol: tcp, ports: 7, cidr: 0.0.0.0/0}\n"
                                "      - {protocol: tcp, ports: 8, cidr: 198.51.100.0/24}\n"
                                "      - {protocol: tcp, ports: 8, cidr: 10.82.0.0/16}"}
AFTER = CONFIG % {"web_rules": ""}


class Flow:
    def __init__(self, ns, src, dst, port):
        self.p = subprocess.Popen([IP, "netns", "exec", ns, "python3", ECHO, "client", src, dst, str(port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.first = self.p.stdout.readline().strip()

    def exchange(self, n):
        if self.p.poll() is not None:
            return "client gone"
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=10)


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw = sys.argv[1]
    results = []
    with MiniLab(vpcfw, BEFORE) as lab:
        web, cli = "vpcfw:i:" + lab.name("{T}web"), "vpcfw:i:" + lab.name("{T}cli")
        inet = os.environ["VPCFW_LAB_INTERNET"]
        server = subprocess.Popen([IP, "netns", "exec", web, "python3", ECHO, "server", "7", "8", "9", "60"])
        flows = []
        try:
            time.sleep(0.5)
            explain7 = run(vpcfw, "explain", lab.path, "--from", CLIENT, "--to", lab.name("{T}web"), "--proto", "tcp",
                           "--port", "7", check=False).stdout
            explain8 = run(vpcfw, "explain", lab.path, "--from", CLIENT, "--to", lab.name("{T}web"), "--proto", "tcp",
                           "--port", "8", check=False).stdout
            results.append(("explain: tcp 7 from the internet is an untracked flow, tcp 8 is tracked",
                            "untracked" in explain7 and "untracked" not in explain8))
            untracked = {
                "internet -> web:7 (through the gateway's NAT)": Flow(inet, CLIENT, "203.0.113.82", 7),
                "cli -> web:7": Flow(cli, "10.82.1.20", "10.82.1.10", 7),
            }
            tracked = {
                "internet -> web:8": Flow(inet, CLIENT, "203.0.113.82", 8),
                "cli -> web:8": Flow(cli, "10.82.1.20", "10.82.1.10", 8),
            }
            flows = list(untracked.values()) + list(tracked.values())
            for name, f in {**untracked, **tracked}.items():
                results.append((f"before: {name} connects and echoes ({f.first})",
                                f.first.startswith("connected") and f.exchange(1) == "echo ok"))
            applied = lab.apply(AFTER)
            cut_lines = [x for x in applied.stdout.splitlines() if "cut untracked flow" in x]
            results.append((f"lab apply reports the two untracked flows it cut ({len(cut_lines)}: {cut_lines})",
                            len(cut_lines) == 2 and all("-> 10.82.1.10:7:" in x for x in cut_lines)))
            results.append(("lab apply says how many flows it cut", "2 untracked flows cut" in applied.stdout))
            for name, f in untracked.items():
                got = f.exchange(2)
                results.append((f"after: the untracked flow {name} is cut ({got})", got == "echo lost"))
            for name, f in tracked.items():
                got = f.exchange(2)
                results.append((f"after: the tracked flow {name} survives the rule's removal ({got})", got == "echo ok"))
            # New flows: refused on both ports now; the range rule on 9 still admits.
            expect(results, "after: a new flow to tcp 7 is refused", lab.probe(CLIENT, "{T}web", port=7), "dropped")
            expect(results, "after: a new flow to tcp 8 is refused", lab.probe(CLIENT, "{T}web", port=8), "dropped")
            expect(results, "after: tcp 9 (unchanged rule) still works", lab.probe(CLIENT, "{T}web", port=9), "ok")
            again = lab.apply(AFTER)
            results.append(("a second apply changes nothing and cuts nothing",
                            "0 changes, 0 untracked flows cut" in again.stdout))
        finally:
            for f in flows:
                f.close()
            server.kill()
            server.wait()
    return report(results, "untracked flows")


if __name__ == "__main__":
    sys.exit(main())
