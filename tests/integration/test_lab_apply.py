#!/usr/bin/python3
"""Kernel test of `vpcfw lab apply` and `vpcfw lab status`: a running lab is
changed in place (instances added, removed and re-addressed, a route to the
internet gateway removed, a peering added) and each change is proved with
`vpcfw probe`; a second apply changes nothing; status matches the config.

usage: test_lab_apply.py VPCFW    (root; exit 77 = skipped)"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilab import MiniLab, expect, run  # noqa: E402
from netlab import report  # noqa: E402

BASE = """
vpcs:
  - {name: "{T}v", cidr: 10.80.0.0/16}
%(second_vpc)s
internet_gateways:
  - {name: "{T}g", vpc: "{T}v"}
route_tables:
  - name: public
    vpc: "{T}v"
    routes: [%(routes)s]
%(second_rt)s
subnets:
  - {name: s1, vpc: "{T}v", cidr: 10.80.1.0/24, route_table: public}
%(second_subnet)s
security_groups:
  - {name: open, vpc: "{T}v", ingress: [{protocol: tcp, ports: 80, cidr: 0.0.0.0/0}]}
%(second_sg)s
instances:
%(instances)s
"""

PEERED = {
    "second_vpc": '  - {name: "{T}w", cidr: 10.81.0.0/16}\npeerings:\n  - {name: "{T}p", requester: "{T}v", accepter: "{T}w"}',
    "second_rt": '  - {name: wmain, vpc: "{T}w", main: true, routes: [{destination: 10.80.0.0/16, peering: "{T}p"}]}',
    "second_subnet": '  - {name: s2, vpc: "{T}w", cidr: 10.81.1.0/24}',
    "second_sg": '  - {name: open, vpc: "{T}w", ingress: [{protocol: tcp, ports: 80, cidr: 10.0.0.0/8}]}',
}
ALONE = {k: "" for k in PEERED}
IGW = '{destination: 0.0.0.0/0, internet_gateway: "{T}g"}'
PEER_ROUTE = '{destination: 10.81.0.0/16, peering: "{T}p"}'


def config(instances, routes=(IGW,), peered=False):
    d = dict(PEERED if peered else ALONE)
    d["routes"] = ", ".join(routes)
    d["instances"] = "\n".join(f"  - {i}" for i in instances)
    return BASE % d


A = '{name: "{T}a", subnet: s1, private_ip: 10.80.1.10, public_ip: 203.0.113.80, security_groups: [open]}'
B = '{name: "{T}b", subnet: s1, private_ip: 10.80.1.20, security_groups: [open]}'
B2 = '{name: "{T}b", subnet: s1, private_ip: 10.80.1.21, security_groups: [open]}'
C = '{name: "{T}c", subnet: s1, private_ip: 10.80.1.30, security_groups: [open]}'
W = '{name: "{T}x", subnet: s2, private_ip: 10.81.1.10, security_groups: [open]}'


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw = sys.argv[1]
    results = []
    with MiniLab(vpcfw, config([A, B])) as lab:
        status = run(vpcfw, "lab", "status", lab.path, "--json", check=False)
        results.append(("lab status: a fresh lab matches its config", status.returncode == 0 and
                        json.loads(status.stdout)["up_to_date"]))
        expect(results, "before: internet -> a", lab.probe("198.51.100.8", "{T}a", port=80), "ok")
        expect(results, "before: a -> b", lab.probe("{T}a", "{T}b", port=80), "ok")

        out = lab.apply(config([A, B2, C])).stdout
        results.append(("apply: a new instance is built, a re-addressed one changed in place",
                        "+ namespace vpcfw:i:" + lab.name("{T}c") in out and "~ namespace vpcfw:i:" + lab.name("{T}b") in out))
        expect(results, "apply: the new instance is reachable", lab.probe("{T}a", "{T}c", port=80), "ok")
        expect(results, "apply: the re-addressed instance is reachable at its new address",
               lab.probe("{T}a", "10.80.1.21", port=80), "ok")

        out = lab.apply(config([A, B2])).stdout
        results.append(("apply: a removed instance's namespace is removed", "- namespace vpcfw:i:" + lab.name("{T}c") in out
                        and not os.path.exists("/run/netns/vpcfw:i:" + lab.name("{T}c"))))

        out = lab.apply(config([A, B2], routes=())).stdout
        results.append(("apply: the removed gateway route is removed from the subnet's table", "- route 0.0.0.0/0" in out))
        expect(results, "after removing the gateway route: internet -> a, the reply cannot leave",
               lab.probe("198.51.100.8", "{T}a", port=80), "reply-dropped")

        out = lab.apply(config([A, B2, W], routes=(IGW, PEER_ROUTE), peered=True)).stdout
        results.append(("apply: a new VPC and its peering link are built", "+ link pcx-" in out))
        expect(results, "apply: across the new peering", lab.probe("{T}a", "{T}x", port=80), "ok")
        expect(results, "apply: the gateway route is back", lab.probe("198.51.100.8", "{T}a", port=80), "ok")

        again = lab.apply(config([A, B2, W], routes=(IGW, PEER_ROUTE), peered=True)).stdout
        results.append(("a second apply changes nothing", "0 namespaces added, 0 removed, 0 re-addressed, 0 changes, 0 untracked flows cut, 0 refused" in again))
        status = run(vpcfw, "lab", "status", lab.path, "--json", check=False)
        results.append(("lab status: the changed lab matches its config", status.returncode == 0))

        out = lab.apply(config([A, B2], routes=(IGW,))).stdout
        time.sleep(0.2)  # the kernel removes a dead namespace's veth ends asynchronously
        links = run("ip", "-n", "vpcfw-" + lab.name("{T}v"), "-br", "link").stdout
        results.append(("apply: the peered VPC and its link are removed", "- namespace vpcfw-" + lab.name("{T}w") in out
                        and not os.path.exists("/run/netns/vpcfw-" + lab.name("{T}w")) and "pcx-" not in links))
        expect(results, "apply: a -> b after all that", lab.probe("{T}a", "{T}b", port=80), "ok")
    left = [n for n in run("ip", "netns", "list").stdout.split("\n") if lab.tag in n]
    results.append(("lab down leaves nothing behind", not left))
    return report(results, "lab apply")


if __name__ == "__main__":
    sys.exit(main())
