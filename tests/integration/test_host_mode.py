#!/usr/bin/python3
"""Kernel test of host mode: the ENI is the machine's own interface. A
namespace plays the host (its veth is the ENI), another the remote side.
Security groups filter the host's input/output on that interface; the NACL
applies only to remote addresses outside the subnet; other interfaces (lo)
are untouched. Without the ruleset every probe succeeds, so each blocked
probe is the filter's doing.

usage: test_host_mode.py VPCFW SOURCE_DIR        (root; exit 77 = skipped)"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import host_and_peer, CLIENT, IP, SERVER, report, run  # noqa: E402

CONFIG = """
vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24, network_acl: host-acl}]
network_acls:
  - name: host-acl
    vpc: v
    ingress:
      - {rule: 100, protocol: tcp, ports: 22, cidr: 198.51.100.0/24, action: deny}
      - {rule: 110, protocol: all, cidr: 0.0.0.0/0, action: allow}
    egress:
      - {rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}
security_groups:
  - name: web
    vpc: v
    ingress:
      - {protocol: tcp, ports: 22, cidr: 0.0.0.0/0}
      - {protocol: tcp, ports: 80, cidr: 198.51.100.0/24}
instances:
  - {name: h1, subnet: s, private_ip: 10.0.1.10, host: labhost, interface: veth-h, security_groups: [web]}
"""

# (source address on the remote side, port, expected with the ruleset, why)
CASES = [
    ("10.0.1.20", 22, True, "same subnet: no NACL; the group allows 22 from anywhere"),
    ("10.0.1.20", 80, False, "the group allows 80 only from 198.51.100.0/24"),
    ("10.0.1.20", 8080, False, "no rule allows 8080"),
    ("198.51.100.7", 22, False, "outside the subnet: NACL rule 100 denies 22 before rule 110 allows"),
    ("198.51.100.7", 80, True, "NACL rule 110 and group rule 2 allow"),
    ("198.51.100.7", 8080, False, "NACL allows, no group rule does"),
]


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw = sys.argv[1]
    tag = f"vh{os.getpid() % 100000}"
    host, peer = f"{tag}-host", f"{tag}-peer"
    cfg = f"/tmp/{tag}.yaml"
    server = remote = None
    results = []
    try:
        with open(cfg, "w") as f:
            f.write(CONFIG)
        host_and_peer(tag, host, peer)
        server = subprocess.Popen([IP, "netns", "exec", host, "/usr/bin/python3", "-c", SERVER, "22,80,8080", ""],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert server.stdout.readline().strip() == "ready"
        remote = subprocess.Popen([IP, "netns", "exec", peer, "/usr/bin/python3", "-c", SERVER, "9090", ""],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert remote.stdout.readline().strip() == "ready"

        def probe(ns, src, dst, port, sport):
            r = run(IP, "netns", "exec", ns, "/usr/bin/python3", "-c", CLIENT, "tcp", dst, str(port), str(sport), "0.6", src,
                    check=False)
            return r.stdout.startswith("ok")

        sport = 41000
        for src, port, _, why in CASES:
            sport += 1
            results.append((f"without the ruleset {src} -> :{port} gets through", probe(peer, src, "10.0.1.10", port, sport)))
        run(vpcfw, "apply", cfg, "--host", "labhost", "--netns", host)
        diff = run(vpcfw, "diff", cfg, "--host", "labhost", "--netns", host, check=False)
        results.append(("vpcfw diff --host reports the kernel up to date", diff.returncode == 0))
        for src, port, want, why in CASES:
            sport += 1
            got = probe(peer, src, "10.0.1.10", port, sport)
            results.append((f"{src} -> host:{port} {'allowed' if want else 'blocked'} ({why})", got == want))
        sport += 1
        results.append(("the host's own loopback is not filtered (8080 on 127.0.0.1)", probe(host, "", "127.0.0.1", 8080, sport)))
        sport += 1
        results.append(("the host opens connections out (egress omitted = allow all; replies by state)",
                        probe(host, "", "10.0.1.20", 9090, sport)))
    finally:
        for p in (server, remote):
            if p:
                p.kill()
                p.wait()
        for ns in (host, peer):
            subprocess.run([IP, "netns", "del", ns], capture_output=True)
        if os.path.exists(cfg):
            os.remove(cfg)
    return report(results, "host mode")


if __name__ == "__main__":
    sys.exit(main())
