#!/usr/bin/python3
"""Kernel test: apply the config (vpcfw apply) to the fabric namespaces of a
hand-built topology and check that real TCP, UDP and ICMP (IPv4 and IPv6)
between every pair of instances get through exactly when `vpcfw explain`
says so. Also: spoofed sources are dropped.

usage: test_agree_with_explain.py VPCFW SOURCE_DIR     (root; exit 77 = skipped)"""
import itertools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import IP, Lab, run  # noqa: E402

TCP_PORTS = [22, 80, 5432, 8080]
UDP_PORTS = [53]


def explain(vpcfw, config, src, dst, proto, port, family):
    args = [vpcfw, "explain", config, "--from", src, "--to", dst, "--proto", proto, "--json", "--family", family]
    if proto in ("tcp", "udp"):
        args += ["--port", str(port)]
    r = run(*args, check=False)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"explain failed: {' '.join(args)}: {r.stderr}")
    return json.loads(r.stdout)


def build_lab(vpcfw, config):
    """The config's routers and instances as namespaces (no ruleset yet)."""
    lab = Lab(vpcfw, config)
    m = lab.model
    subnets = {s["name"]: (s["vpc"], s["cidr"], s.get("ipv6_cidr")) for s in m["subnets"]}
    instances = {i["name"]: (i["subnet"], i["private_ip"], i["ipv6_addresses"]) for i in m["instances"]}
    lab.ifnames = {i["name"]: i["lab"]["interface"] for i in m["instances"]}
    lab.build([v["name"] for v in m["vpcs"]], subnets, instances, lambda i: lab.ifnames[i])
    return lab


def load_lab(vpcfw, config):
    lab = build_lab(vpcfw, config)
    m = lab.model
    for v in m["vpcs"]:
        if not any(i["vpc"] == v["name"] for i in m["instances"]):
            continue  # a VPC without instances has no fabric
        run(vpcfw, "apply", config, "--fabric", v["fabric"], "--netns", lab.routers[v["name"]])
    lab.serve(TCP_PORTS, UDP_PORTS)
    return lab


def check_config(vpcfw, config, results):
    lab = load_lab(vpcfw, config)
    m = lab.model
    by_name = {i["name"]: i for i in m["instances"]}
    for a, b in itertools.permutations(sorted(by_name), 2):
        if by_name[a]["vpc"] != by_name[b]["vpc"]:
            continue
        families = ["4"] + (["6"] if by_name[a]["ipv6_addresses"] and by_name[b]["ipv6_addresses"] else [])
        for fam in families:
            dst_addr = by_name[b]["private_ip"] if fam == "4" else by_name[b]["ipv6_addresses"][0]
            probes = [("tcp", p) for p in TCP_PORTS] + [("udp", p) for p in UDP_PORTS]
            probes.append(("icmp" if fam == "4" else "icmpv6", 0))
            for proto, port in probes:
                want = explain(vpcfw, config, a, b, proto, port, fam)["reachable"]
                got = lab.probe(a, dst_addr, proto, port)
                name = f"{os.path.basename(config)}: {a} -> {b} ({dst_addr}) {proto} {port or ''}".rstrip()
                results.append((name, want == got, want, f"explain says {'reachable' if want else 'blocked'}, "
                                                   f"packets {'got through' if got else 'did not'}"))
    # What the blocked probes left behind: vpcfw status shows the counted drops.
    for v in m["vpcs"]:
        if v["name"] not in lab.routers or not any(i["vpc"] == v["name"] for i in m["instances"]):
            continue
        st = json.loads(run(vpcfw, "status", "--netns", lab.routers[v["name"]], "--json").stdout)
        blocked = [r for r in results if r[0].startswith(os.path.basename(config)) and not r[2]]
        dropped = sum(c["packets"] for c in st["counters"])
        results.append((f"{os.path.basename(config)}: vpcfw status counts the drops", st["table"] and
                        (dropped > 0) == bool(blocked), None, f"{dropped} packets counted for {len(blocked)} blocked flows"))
    return lab


def check_anti_spoofing(vpcfw, config, results):
    """A source address the ENI does not own is dropped at the fabric; without
    the ruleset the same packet gets through, so the filter is what drops it."""
    lab = build_lab(vpcfw, config)
    ifnames = lab.ifnames
    router = lab.routers["lab"]
    spoofed = "10.50.1.99"
    lab.exec(lab.instance_ns["a1"], IP, "addr", "add", spoofed + "/32", "dev", "eth0")
    lab.exec(router, IP, "route", "add", spoofed + "/32", "dev", ifnames["a1"])
    lab.serve(TCP_PORTS, UDP_PORTS)
    before = lab.probe("a1", "10.50.2.10", "tcp", 22, src_addr=spoofed)
    run(vpcfw, "apply", config, "--netns", router)
    after = lab.probe("a1", "10.50.2.10", "tcp", 22, src_addr=spoofed, sport=50001)
    genuine = lab.probe("a1", "10.50.2.10", "tcp", 22, sport=50002)
    results.append(("anti-spoofing: spoofed source passes without the ruleset", before, None, "it did not (topology broken)"))
    results.append(("anti-spoofing: spoofed source dropped with the ruleset", not after, None, "it got through"))
    results.append(("anti-spoofing: the ENI's own address still passes", genuine, None, "it did not"))
    lab.close()


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw, src = sys.argv[1], sys.argv[2]
    configs = [f"{src}/tests/integration/configs/kernel-semantics.yaml"] + [
        f"{src}/config/examples/{n}.yaml" for n in ("two-tier", "bastion", "default-vpc")]
    results = []
    for c in configs:
        check_config(vpcfw, c, results).close()
    check_anti_spoofing(vpcfw, configs[0], results)
    failed = [r for r in results if not r[1]]
    for name, ok, _, why in results:
        if not ok:
            print(f"FAIL {name}: {why}")
    flows = [r for r in results if r[2] is not None]
    reachable = sum(1 for r in flows if r[2])
    print(f"checked {len(flows)} flows against explain: {reachable} expected to get through, {len(flows) - reachable} "
          f"expected blocked; {len(results) - len(flows)} other checks (status counters, anti-spoofing)")
    print(f"packets vs explain: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
