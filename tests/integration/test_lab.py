#!/usr/bin/python3
"""Kernel test of `vpcfw lab up/exec/down`: the wiring inside a VPC, and
every example config as a lab, probed pair by pair against explain. Builds the lab of a config (unique names per run), checks
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
    examples(vpcfw, src, tag, results)
    return report(results, "lab")


def renamed(doc, tag):
    """The example with every VPC and instance name made unique to this run."""
    vpcs = {v["name"] for v in doc.get("vpcs", [])}
    instances = {i["name"] for i in doc.get("instances", [])}

    def walk(x):
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if k in ("vpc", "requester", "accepter") and v in vpcs:
                    v = f"{v}{tag}"
                elif k == "instance" and v in instances:  # a flow log's resource
                    v = f"{v}{tag}"
                elif k == "group" and isinstance(v, str) and "/" in v and v.split("/")[0] in vpcs:
                    v = f"{v.split('/')[0]}{tag}/{v.split('/', 1)[1]}"
                else:
                    v = walk(v)
                out[k] = v
            return out
        if isinstance(x, list):
            return [walk(i) for i in x]
        return x
    doc = walk(doc)
    for v in doc.get("vpcs", []):
        v["name"] = f"{v['name']}{tag}"
    for i in doc.get("instances", []):
        i["name"] = f"{i['name']}{tag}"
    return doc


def examples(vpcfw, src, tag, results):
    """Every example config builds as a lab, every pair of its instances and
    the internet agrees with explain on real packets, and goes away again."""
    import glob
    import yaml
    env = dict(os.environ, VPCFW_LAB_INTERNET=f"vpcfw:internet-{tag}")
    for path in sorted(glob.glob(f"{src}/config/examples/*.yaml")):
        name = os.path.basename(path)
        cfg = f"/tmp/vpcfw-{tag}-{name}"
        with open(path) as f, open(cfg, "w") as out:
            yaml.safe_dump(renamed(yaml.safe_load(f), tag), out)
        try:
            up = subprocess.run([vpcfw, "lab", "up", "--quiet", cfg], capture_output=True, text=True, env=env)
            results.append((f"example {name}: lab up ({up.stderr.strip()})", up.returncode == 0))
            m = subprocess.run([vpcfw, "probe", cfg, "--matrix", "--explain", "--json", "--timeout", "500"],
                               capture_output=True, text=True, env=env)
            probes = json.loads(m.stdout)["probes"] if m.stdout else []
            results.append((f"example {name}: {len(probes)} probes, all agree with explain ({m.stderr.strip()})",
                            m.returncode == 0 and len(probes) > 0 and all(p["agrees"] for p in probes)))
        finally:
            down = subprocess.run([vpcfw, "lab", "down", cfg], capture_output=True, text=True, env=env)
            os.remove(cfg)
        left = [n for n in run(IP, "netns", "list").stdout.split("\n") if tag in n]
        results.append((f"example {name}: lab down leaves nothing behind ({left})", not left and down.returncode == 0))


if __name__ == "__main__":
    sys.exit(main())
