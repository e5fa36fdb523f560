#!/usr/bin/python3
"""Kernel test of `vpcfw lab up/exec/down`: the wiring inside a VPC. Builds the lab of a config (unique names per run), checks
real TCP between its instances against `vpcfw explain`, runs a command with
`lab exec`, and checks that `lab down` leaves no namespace behind.

usage: test_lab.py VPCFW SOURCE_DIR        (root; exit 77 = skipped)"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import CLIENT, IP, SERVER, report, run  # noqa: E402


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw, src = sys.argv[1], sys.argv[2]
    tag = f"t{os.getpid() % 100000}"
    text = open(f"{src}/tests/integration/configs/kernel-semantics.yaml").read()
    text = re.sub(r"\b(name|vpc): lab\b", rf"\1: {tag}", text)  # a VPC name of our own: router vpcfw-<tag>
    text = re.sub(r"\{name: (\w+), subnet:", rf"{{name: \1, netns: vpcfw{tag}-\1, subnet:", text)
    cfg = f"/tmp/vpcfw-{tag}.yaml"
    with open(cfg, "w") as f:
        f.write(text)
    results, servers = [], []
    try:
        up = run(vpcfw, "lab", "up", cfg)
        model = json.loads(run(vpcfw, "show", cfg, "--json").stdout)
        names = [i["name"] for i in model["instances"]]
        nslist = run(IP, "netns", "list").stdout
        expected = [f"vpcfw-{tag}"] + [f"vpcfw{tag}-{n}" for n in names]
        results.append(("lab up made the router and one namespace per instance",
                        all(re.search(rf"^{re.escape(n)}\b", nslist, re.M) for n in expected)))
        results.append(("lab up reports progress and a summary",
                        "namespaces" in up.stderr and "lab up:" in up.stdout and "INSTANCE" in up.stdout))
        for n in names:
            p = subprocess.Popen([IP, "netns", "exec", f"vpcfw{tag}-{n}", "/usr/bin/python3", "-c", SERVER, "22,5432", ""],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            servers.append(p)
            assert p.stdout.readline().strip() == "ready"
        addr = {i["name"]: i["private_ip"] for i in model["instances"]}
        sport = 42000
        for a in names:
            for b in names:
                if a == b:
                    continue
                for port in (22, 5432):
                    sport += 1
                    want = json.loads(run(vpcfw, "explain", cfg, "--from", a, "--to", b, "--proto", "tcp", "--port",
                                          str(port), "--json", check=False).stdout)["reachable"]
                    got = run(IP, "netns", "exec", f"vpcfw{tag}-{a}", "/usr/bin/python3", "-c", CLIENT, "tcp", addr[b],
                              str(port), str(sport), "0.6", "", check=False).stdout.startswith("ok")
                    results.append((f"lab: {a} -> {b} tcp {port}: explain {'reachable' if want else 'blocked'}", want == got))
        inside = run(vpcfw, "lab", "exec", "--config", cfg, names[0], "--", IP, "-br", "addr", check=False)
        results.append(("lab exec runs a command inside the instance", addr[names[0]] + "/32" in inside.stdout))
        bad = run(vpcfw, "lab", "exec", "no-such-instance", "--", "true", check=False)
        results.append(("lab exec refuses an instance without a lab namespace", bad.returncode == 2))
    finally:
        for p in servers:
            p.kill()
            p.wait()
        down = run(vpcfw, "lab", "down", cfg, check=False)
        os.remove(cfg)
    left = [n for n in run(IP, "netns", "list").stdout.split("\n") if tag in n]
    results.append(("lab down leaves nothing behind", not left and down.returncode == 0))
    return report(results, "lab")


if __name__ == "__main__":
    sys.exit(main())
