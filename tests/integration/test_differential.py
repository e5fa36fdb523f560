#!/usr/bin/python3
"""Differential test: random valid configs and real probes. For each seed a
config is generated (random NACLs with allow/deny runs and return-port ranges,
random groups with CIDR and group-reference peers, maybe IPv6, an internet
gateway with public IPs, a peered second VPC), built with `vpcfw lab up`, and
`vpcfw probe --matrix --explain` sends every instance pair every port the
config names (and ICMP echo), IPv4 and IPv6, each checked against the
evaluator. Zero disagreements expected; on one, the config is shrunk (rules
removed while the disagreement stays) and printed with its seed.

usage: test_differential.py VPCFW [--configs N] [--seed S]   (root; exit 77 = skipped)
       reproduce one case: test_differential.py VPCFW --configs 1 --seed S"""
import argparse
import json
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilab import RUN_TAG, run  # noqa: E402

PORTS = [22, 80, 443, 3306, 5432, 8080]
RETURN_RANGES = ["1024-65535", "32768-65535", "49152-65535", "1024-49151", "0-1023"]


class Gen:
    def __init__(self, seed, tag):
        self.r = random.Random(seed)
        self.tag = tag

    def pick(self, xs):
        return self.r.choice(xs)

    def cidr(self, v6, blocks):
        # Peers that matter: the VPCs, their subnets, single hosts, everything, the internet ranges.
        return self.pick(blocks["v6" if v6 else "v4"])

    def proto_fields(self, for_nacl, v6):
        kind = self.r.random()
        if kind < 0.45:
            p = self.pick(["tcp", "udp"])
            if self.r.random() < 0.5:
                return f"protocol: {p}, ports: {self.pick(PORTS)}"
            return f"protocol: {p}, ports: {self.pick(RETURN_RANGES)}"
        if kind < 0.6:
            return "protocol: icmpv6, icmp_type: 128" if v6 else self.pick(["protocol: icmp, icmp_type: 8",
                                                                             "protocol: icmp, icmp_type: 0",
                                                                             "protocol: icmp"])
        if kind < 0.7:
            return self.pick(["protocol: 6, ports: 0-65535", "protocol: 17, ports: 0-65535"])  # by number, every port
        return "protocol: all"

    def nacl_rules(self, blocks, n):
        out, num = [], 100
        for _ in range(n):
            v6 = blocks["has6"] and self.r.random() < 0.25
            fields = f"{self.proto_fields(True, v6)}, cidr: \"{self.cidr(v6, blocks)}\""
            if any(fields in o for o in out):
                continue
            out.append(f"{{rule: {num}, {fields}, action: {self.pick(['allow', 'allow', 'deny'])}}}")
            num += self.pick([1, 10, 100])
        return out

    def sg_rules(self, blocks, groups, n):
        out = []
        for _ in range(n):
            v6 = blocks["has6"] and self.r.random() < 0.25
            if groups and self.r.random() < 0.25:
                peer = f"group: {self.pick(groups)}"
            else:
                peer = f"cidr: \"{self.cidr(v6, blocks)}\""
            rule = f"{{{self.proto_fields(False, v6)}, {peer}}}"
            if rule not in out:  # a duplicate rule is an error in AWS
                out.append(rule)
        return out

    def config(self):
        t, r = self.tag, self.r
        has6 = r.random() < 0.5
        igw = r.random() < 0.5
        peer = r.random() < 0.35
        v4 = ["0.0.0.0/0", "10.70.0.0/16", "10.70.1.0/24", "10.70.2.0/24", "10.70.1.10/32", "10.70.2.20/32",
              "10.70.1.0/25", "198.51.100.0/24"] + (["10.71.0.0/16"] if peer else [])
        v6 = ["::/0", "2001:db8:70::/56", "2001:db8:70:1::/64", "2001:db8:70:2::10/128", "2001:db8:ffff::/48"]
        blocks = {"v4": v4, "v6": v6, "has6": has6}
        lines = ["vpcs:", f"  - {{name: {t}v, cidr: 10.70.0.0/16" + (', ipv6_cidr: "2001:db8:70::/56"' if has6 else "") + "}"]
        if peer:
            lines.append(f"  - {{name: {t}w, cidr: 10.71.0.0/16}}")
            lines += ["peerings:", f"  - {{name: {t}p, requester: {t}v, accepter: {t}w}}"]
        if igw:
            lines += ["internet_gateways:", f"  - {{name: {t}g, vpc: {t}v}}"]
        routes = []
        if igw:
            routes.append(f"{{destination: 0.0.0.0/0, internet_gateway: {t}g}}")
            if has6:
                routes.append(f'{{destination: "::/0", internet_gateway: {t}g}}')
        if peer:
            routes.append(f"{{destination: 10.71.0.0/16, peering: {t}p}}")
        lines += ["route_tables:"]
        lines += [f"  - name: rt", f"    vpc: {t}v", f"    routes: [{', '.join(routes)}]"]
        if peer:
            back = [f"{{destination: 10.70.0.0/16, peering: {t}p}}"] if r.random() < 0.8 else []
            lines += [f"  - name: rtw", f"    vpc: {t}w", "    main: true", f"    routes: [{', '.join(back)}]"]
        six = lambda k: f', ipv6_cidr: "2001:db8:70:{k}::/64"' if has6 else ""  # noqa: E731
        lines += ["subnets:",
                  f"  - {{name: s1, vpc: {t}v, cidr: 10.70.1.0/24{six(1)}, route_table: rt" + (", network_acl: n1}" if r.random() < 0.7 else "}"),
                  f"  - {{name: s2, vpc: {t}v, cidr: 10.70.2.0/24{six(2)}" + (", route_table: rt" if r.random() < 0.5 else "") +
                  (", network_acl: n2}" if r.random() < 0.7 else "}")]
        if peer:
            lines.append(f"  - {{name: s3, vpc: {t}w, cidr: 10.71.1.0/24}}")
        lines.append("network_acls:")
        for n in ("n1", "n2"):
            lines += [f"  - name: {n}", f"    vpc: {t}v"]
            for d in ("ingress", "egress"):
                rules = self.nacl_rules(blocks, r.randint(0, 6))
                lines.append(f"    {d}: [{', '.join(rules)}]")
        groups = ["g1", "g2", "g3"]
        lines.append("security_groups:")
        for g in groups:
            lines += [f"  - name: {g}", f"    vpc: {t}v"]
            lines.append(f"    ingress: [{', '.join(self.sg_rules(blocks, groups, r.randint(0, 5)))}]")
            if r.random() < 0.6:
                lines.append(f"    egress: [{', '.join(self.sg_rules(blocks, groups, r.randint(0, 4)))}]")
        if peer:
            lines += ["  - name: gw", f"    vpc: {t}w",
                      f"    ingress: [{', '.join(self.sg_rules({'v4': v4, 'v6': v6, 'has6': False}, [], r.randint(1, 4)))}]"]
        lines.append("instances:")
        hosts = [("s1", "10.70.1.10", "2001:db8:70:1::10"), ("s1", "10.70.1.20", "2001:db8:70:1::20"),
                 ("s2", "10.70.2.10", "2001:db8:70:2::10"), ("s2", "10.70.2.20", "2001:db8:70:2::20")]
        for k, (s, a, a6) in enumerate(hosts[:r.randint(2, 4)]):
            gs = r.sample(groups, r.randint(0, 2))
            extra = f", security_groups: [{', '.join(gs)}]" if gs else ""
            if has6 and r.random() < 0.7:
                extra += f', ipv6_addresses: ["{a6}"]'
            if igw and r.random() < 0.6:
                extra += f", public_ip: 203.0.113.{70 + k}"
            lines.append(f"  - {{name: {t}i{k}, subnet: {s}, private_ip: {a}{extra}}}")
        if peer:
            lines.append(f"  - {{name: {t}i9, subnet: s3, private_ip: 10.71.1.10, security_groups: [gw]}}")
        return "\n".join(lines) + "\n"


def matrix(vpcfw, path, family):
    r = run(vpcfw, "probe", path, "--matrix", "--explain", "--json", "--family", family, "--timeout", "400", check=False)
    if r.returncode not in (0, 3):
        errors = [f"{p['from']} -> {p['to']} {p['protocol']} {p.get('port', '')}: {p['error']}"
                  for p in (json.loads(r.stdout)["probes"] if r.stdout else []) if p["harness_error"]]
        raise RuntimeError(f"probe exit {r.returncode}: {r.stderr.strip()} {errors[:5]}")
    return json.loads(r.stdout)["probes"]


def check(vpcfw, text, path):
    """Builds the lab of `text`, probes it; returns (probes, disagreeing probes)."""
    with open(path, "w") as f:
        f.write(text)
    v = run(vpcfw, "validate", path, check=False)
    if v.returncode != 0:
        return None, v.stderr
    run(vpcfw, "lab", "up", "--quiet", path)
    try:
        probes = matrix(vpcfw, path, "4") + matrix(vpcfw, path, "6")
        dis = [p for p in probes if not p["agrees"]]
        # A disagreement is probed once more on its own: one that does not
        # repeat is printed (so a rare race stays visible in the log) but is
        # not a failure; one that repeats is.
        kept = []
        for p in dis:
            again = single(vpcfw, path, p)
            if again is not None and again["agrees"]:
                print(f"transient disagreement (the repeat agreed): {json.dumps(p)}")
            else:
                kept.append(p)
    finally:
        run(vpcfw, "lab", "down", path, check=False)
    return probes, kept


def single(vpcfw, path, p):
    """The probe `p` of a matrix, alone; None when it could not be carried out."""
    args = [vpcfw, "probe", path, "--from", p["from"], "--to", p["to"], "--proto", p["protocol"], "--explain",
            "--json", "--timeout", "400"]
    if not any(c in p["from"] + p["to"] for c in ".:"):  # two instances: the family is the probe's
        args += ["--family", "6" if ":" in p.get("destination", "") else "4"]
    if p.get("port"):
        args += ["--port", str(p["port"])]
    r = run(*args, check=False)
    if r.returncode not in (0, 3) or not r.stdout:
        return None
    out = json.loads(r.stdout)
    return out["probes"][0] if "probes" in out else out


def same_failure(p, q):
    keys = ("from", "to", "protocol", "port")
    return all(p.get(k) == q.get(k) for k in keys)


def shrink(vpcfw, text, path, bad):
    """Drops list items ({...} rules, routes) one at a time while `bad` still disagrees."""
    lines = text.split("\n")
    changed = True
    while changed:
        changed = False
        for i, line in enumerate(lines):
            if ": [" not in line:
                continue
            head, body = line.split(": [", 1)
            items = re.findall(r"\{[^{}]*\}", body)
            for k in range(len(items)):
                cand = f"{head}: [{', '.join(items[:k] + items[k + 1:])}]"
                trial = lines[:i] + [cand] + lines[i + 1:]
                probes, dis = check(vpcfw, "\n".join(trial), path)
                if probes is not None and any(same_failure(d, bad) for d in dis):
                    lines, changed = trial, True
                    break
            if changed:
                break
    return "\n".join(lines)


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    ap = argparse.ArgumentParser()
    ap.add_argument("vpcfw")
    ap.add_argument("--configs", type=int, default=int(os.environ.get("VPCFW_DIFF_CONFIGS", "40")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("VPCFW_DIFF_SEED", "20261127")))
    a = ap.parse_args()
    path = f"/tmp/vpcfw-{RUN_TAG}-diff.yaml"
    total, configs, failures, t0 = 0, 0, [], time.time()
    try:
        for k in range(a.configs):
            seed = a.seed + k
            text = Gen(seed, f"{RUN_TAG}d").config()
            probes, dis = check(a.vpcfw, text, path)
            if probes is None:
                print(f"seed {seed}: generator made an invalid config (a generator bug):\n{dis}\n{text}")
                failures.append(seed)
                continue
            configs += 1
            total += len(probes)
            if dis:
                failures.append(seed)
                print(f"seed {seed}: {len(dis)} of {len(probes)} probes disagree, e.g. {json.dumps(dis[0])}")
                print(f"shrunk config (reproduce: test_differential.py VPCFW --configs 1 --seed {seed}):")
                print(shrink(a.vpcfw, text, path, dis[0]))
    finally:
        if os.path.exists(path):
            os.remove(path)
    left = [n for n in run("ip", "netns", "list").stdout.split("\n") if f"{RUN_TAG}d" in n]
    print(f"differential: {configs} configs, {total} probes (cases), seeds {a.seed}..{a.seed + a.configs - 1}, "
          f"{len(failures)} failing, {time.time() - t0:.1f} s")
    if left:
        print("FAIL namespaces left behind:", left)
    return 1 if failures or left else 0


if __name__ == "__main__":
    sys.exit(main())
