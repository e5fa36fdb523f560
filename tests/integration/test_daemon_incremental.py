#!/usr/bin/python3
"""Kernel test of vpcfwd's incremental reloads: a config directory (vpcfw.yaml
plus conf.d/ files of security groups) is edited at random, one change per
reload (a rule edited, added or removed, a group reference added or removed,
an instance's groups or address changed, an instance added or removed, a
NACL entry changed, a group moved to another file, a file removed, an
invalid edit and its fix), and after every reload the kernel's table is
compared object by object with a fresh compile of the same files (`vpcfw
diff`, a read-back): the daemon's incremental parse, compile and apply must
leave exactly what a from-scratch apply would. The daemon's log must show
that reloads were incremental (else the test would prove nothing about
that path), and a deliberately wrong table (an element added behind the
daemon's back and the daemon stopped, so nothing repairs it) must make the
diff fail (the check can fail).

usage: test_daemon_incremental.py VPCFW VPCFWD [STEPS] [SEED]       (root; exit 77 = skipped)"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import IP, NFT, Notifications, report, run  # noqa: E402

GROUP_FILES = 4


class Config:
    """The config as data; rendered to vpcfw.yaml and conf.d/groups-K.yaml."""

    def __init__(self, rng):
        self.rng = rng
        self.groups = {}  # name -> {"file": k, "ingress": [rule], "egress": [rule] or None}
        self.instances = {}  # name -> {"subnet", "ip", "ip6", "groups"}
        self.next_ip = {"s0": 10, "s1": 10}
        self.nacl_port = {"a0": 1000, "a1": 2000}
        for g in range(24):
            self.groups[f"g{g}"] = {"file": g % GROUP_FILES,
                                    "ingress": self.rules(rng.randrange(1, 7)),
                                    "egress": self.rules(rng.randrange(0, 3)) or None}
        for i in range(30):
            self.add_instance(f"i{i}")

    def rules(self, n, existing=()):
        """n rules, none equal to another or to one of `existing` (AWS refuses duplicates)."""
        out = []
        while len(out) < n:
            r = self.rule()
            if r not in out and r not in existing:
                out.append(r)
        return out

    def rule(self):
        rng = self.rng
        kind = rng.randrange(8)
        if kind < 4:
            lo = rng.randrange(1, 60000)
            ports = str(lo) if rng.randrange(2) else f"{lo}-{lo + rng.randrange(1, 300)}"
            peer = (f"cidr: 198.51.{rng.randrange(256)}.0/24" if rng.randrange(4) else
                    f"cidr: 2001:db8:{rng.randrange(1, 9000):x}::/48")
            return f"{{protocol: {rng.choice(['tcp', 'udp'])}, ports: {ports}, {peer}}}"
        if kind < 6:
            return f"{{protocol: icmp, icmp_type: {rng.choice([0, 3, 8, 11])}, cidr: 203.0.113.{rng.randrange(0, 256, 8)}/29}}"
        if kind < 7:
            return f"{{protocol: tcp, ports: {rng.choice([22, 5432, 443])}, group: g{rng.randrange(24)}}}"
        return f"{{protocol: {rng.choice([47, 50, 132])}, cidr: 192.0.2.{rng.randrange(0, 256, 16)}/28}}"

    def add_instance(self, name):
        subnet = self.rng.choice(["s0", "s1"])
        n = self.next_ip[subnet]
        self.next_ip[subnet] += 1
        third = 1 if subnet == "s0" else 2
        self.instances[name] = {"subnet": subnet, "ip": f"10.0.{third}.{n}", "ip6": f"2001:db8:5:{third}::{n:x}",
                                "groups": self.rng.sample(sorted(self.groups), self.rng.randrange(1, 4))}

    def main_text(self):
        out = ["limits: {profile: lab}",
               "vpcs: [{name: v, cidr: 10.0.0.0/16, ipv6_cidr: '2001:db8:5::/56'}]",
               "subnets:",
               "  - {name: s0, vpc: v, cidr: 10.0.1.0/24, ipv6_cidr: '2001:db8:5:1::/64', network_acl: a0}",
               "  - {name: s1, vpc: v, cidr: 10.0.2.0/24, ipv6_cidr: '2001:db8:5:2::/64', network_acl: a1}",
               "network_acls:"]
        for acl, port in self.nacl_port.items():
            out += [f"  - name: {acl}", "    vpc: v", "    ingress:",
                    f"      - {{rule: 100, protocol: tcp, ports: {port}, cidr: 198.51.100.0/24, action: deny}}",
                    "      - {rule: 200, protocol: all, cidr: 0.0.0.0/0, action: allow}",
                    "      - {rule: 210, protocol: all, cidr: '::/0', action: allow}",
                    "    egress:",
                    "      - {rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}",
                    "      - {rule: 110, protocol: all, cidr: '::/0', action: allow}"]
        out.append("instances:")
        for k, (name, i) in enumerate(sorted(self.instances.items())):
            out.append(f"  - {{name: {name}, subnet: {i['subnet']}, private_ip: {i['ip']}, "
                       f"ipv6_addresses: ['{i['ip6']}'], host: bench, interface: e-{name}, "
                       f"security_groups: [{', '.join(i['groups'])}]}}")
        return "\n".join(out) + "\n"

    def group_text(self, k):
        out = ["security_groups:"]
        for name, g in self.groups.items():
            if g["file"] != k:
                continue
            out += [f"  - name: {name}", "    vpc: v", "    ingress:"]
            out += [f"      - {r}" for r in g["ingress"]] or ["      []"]
            if g["egress"] is not None:
                out.append("    egress:")
                out += [f"      - {r}" for r in g["egress"]]
        return "\n".join(out) + "\n" if len(out) > 1 else ""


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw, vpcfwd = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    tag = f"vi{os.getpid() % 100000}"
    ns = f"{tag}-host"
    work = tempfile.mkdtemp(prefix=f"{tag}-")
    os.chmod(work, 0o700)
    cfgdir = os.path.join(work, "etc")
    os.makedirs(os.path.join(cfgdir, "conf.d"))
    rundir = os.path.join(work, "run")
    os.mkdir(rundir, 0o700)
    env = dict(os.environ, VPCFW_RUN_DIR=rundir, NOTIFY_SOCKET=os.path.join(work, "notify"))
    log = open(os.path.join(work, "log"), "w+")
    results = []
    daemon = notify = None
    cfg = Config(rng)

    def check(name, ok, detail=""):
        results.append((name, ok))
        if not ok and detail:
            print(f"  {name}: {detail}")

    def save(rel, text):
        path = os.path.join(cfgdir, rel)
        if not text:
            if os.path.exists(path):
                os.unlink(path)
            return
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)

    def group_file(k):
        return os.path.join("conf.d", f"groups-{k}.yaml")

    def diff_clean():
        r = run(vpcfw, "diff", cfgdir, "--host", "bench", "--netns", ns, check=False)
        return r.returncode == 0, (r.stdout + r.stderr).strip()[-1500:]

    def logtext():
        log.flush()
        with open(log.name) as f:
            return f.read()

    try:
        run(IP, "netns", "add", ns)
        save("vpcfw.yaml", cfg.main_text())
        for k in range(GROUP_FILES):
            save(group_file(k), cfg.group_text(k))
        notify = Notifications(env["NOTIFY_SOCKET"])
        daemon = subprocess.Popen([vpcfwd, "--config", cfgdir, "--host", "bench", "--netns", ns, "--debounce-ms", "0",
                                   "--control-socket", os.path.join(work, "sock")],
                                  env=env, stdout=log, stderr=log)
        ready = None
        for _ in range(120):
            ready = notify.wait("READY=1", timeout=0.5)
            if ready or daemon.poll() is not None:
                break
        check("the daemon starts on the generated directory config", ready is not None, logtext()[-800:])
        if not ready:
            return report(results, "daemon-incremental")
        ok, text = diff_clean()
        check("after start the kernel matches a fresh compile", ok, text)

        failures = []
        kinds_run = set()
        invalid_pending = None
        for step in range(steps):
            kind = rng.choice(["rule-edit", "rule-edit", "rule-add", "rule-remove", "ref", "instance-groups",
                               "instance-address", "instance-add-remove", "nacl", "move-group", "invalid",
                               "egress"]) if invalid_pending is None else "fix"
            touched = set()
            gname = rng.choice(sorted(cfg.groups))
            g = cfg.groups[gname]
            if kind == "rule-edit" and g["ingress"]:
                j = rng.randrange(len(g["ingress"]))
                g["ingress"][j] = cfg.rules(1, g["ingress"])[0]
                touched.add(group_file(g["file"]))
            elif kind == "rule-add":
                g["ingress"].insert(rng.randrange(len(g["ingress"]) + 1), cfg.rules(1, g["ingress"])[0])
                touched.add(group_file(g["file"]))
            elif kind == "rule-remove" and len(g["ingress"]) > 1:
                g["ingress"].pop(rng.randrange(len(g["ingress"])))
                touched.add(group_file(g["file"]))
            elif kind == "ref":
                refs = [j for j, r in enumerate(g["ingress"]) if "group:" in r]
                if refs and rng.randrange(2):
                    g["ingress"].pop(rng.choice(refs))
                else:
                    ref = f"{{protocol: tcp, ports: {rng.randrange(1, 60000)}, group: g{rng.randrange(24)}}}"
                    if ref not in g["ingress"]:
                        g["ingress"].append(ref)
                touched.add(group_file(g["file"]))
            elif kind == "egress":
                g["egress"] = None if g["egress"] else cfg.rules(1)
                touched.add(group_file(g["file"]))
            elif kind == "instance-groups":
                inst = cfg.instances[rng.choice(sorted(cfg.instances))]
                inst["groups"] = rng.sample(sorted(cfg.groups), rng.randrange(1, 4))
                touched.add("vpcfw.yaml")
            elif kind == "instance-address":
                name = rng.choice(sorted(cfg.instances))
                groups = cfg.instances[name]["groups"]
                cfg.add_instance(name)
                cfg.instances[name]["groups"] = groups
                touched.add("vpcfw.yaml")
            elif kind == "instance-add-remove":
                if len(cfg.instances) > 20 and rng.randrange(2):
                    del cfg.instances[rng.choice(sorted(cfg.instances))]
                else:
                    cfg.add_instance(f"i{100 + step}")
                touched.add("vpcfw.yaml")
            elif kind == "nacl":
                acl = rng.choice(sorted(cfg.nacl_port))
                cfg.nacl_port[acl] = rng.randrange(1, 60000)
                touched.add("vpcfw.yaml")
            elif kind == "move-group":
                old = g["file"]
                g["file"] = rng.randrange(GROUP_FILES)
                touched |= {group_file(old), group_file(g["file"])}
            elif kind == "invalid":
                # A port out of range: rejected, and the old generation stays.
                invalid_pending = (gname, list(g["ingress"]))
                g["ingress"] = g["ingress"] + ["{protocol: tcp, ports: 70000, cidr: 198.51.100.0/24}"]
                touched.add(group_file(g["file"]))
            elif kind == "fix":
                name, rules = invalid_pending
                cfg.groups[name]["ingress"] = rules
                invalid_pending = None
                touched.add(group_file(cfg.groups[name]["file"]))
            if not touched:
                continue
            kinds_run.add(kind)
            notify.drain()
            for rel in sorted(touched):
                save(rel, cfg.main_text() if rel == "vpcfw.yaml" else cfg.group_text(int(rel[-6])))
            msg = notify.wait("READY=1", timeout=60)
            if msg is None:
                failures.append(f"step {step} ({kind}): no READY after the edit")
                break
            # Several files saved can be several reloads: wait until the daemon is quiet.
            while notify.wait("READY=1", timeout=0.3) is not None:
                pass
            ok, text = diff_clean()
            if kind == "invalid":
                if "config invalid" not in "".join(notify.messages[-3:]):
                    failures.append(f"step {step} (invalid): the daemon did not report the config invalid")
                # The kernel keeps the last good generation, which the files no longer describe; the
                # fix restores them, and the diff after it must be clean.
                continue
            if not ok:
                failures.append(f"step {step} ({kind}): the kernel differs from a fresh compile: {text}")
                break
        check(f"{steps} random edits ({', '.join(sorted(kinds_run))}): after each, the kernel matches "
                        "a fresh compile of the files", not failures, "; ".join(failures))
        text = logtext()
        incremental = len(re.findall(r"compile [0-9.]+ ms \(\d+ of \d+ ENIs\)", text))
        check("reloads were compiled incrementally (not only full compiles)", incremental > 0,
                        f"{incremental} incremental reload(s) in the log")
        # The check can fail: a foreign element in the daemon's table, the daemon stopped (SIGKILL, so it
        # cannot repair), and the diff must say so.
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        daemon = None
        table = run(IP, "netns", "exec", ns, NFT, "-j", "list", "sets", "table", "inet", "vpcfw").stdout
        setname = re.search(r'"name": "(enis[^"]*)"', table)
        added = setname and run(IP, "netns", "exec", ns, NFT, "add", "element", "inet", "vpcfw", setname.group(1),
                                "{ \"e-zz-foreign\" }", check=False).returncode == 0
        ok, text = diff_clean()
        check("baseline: a table changed behind vpcfw's back fails the same diff check",
                        bool(added) and not ok, text[-300:])
    finally:
        if daemon:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        if notify:
            notify.close()
        run(IP, "netns", "del", ns, check=False)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return report(results, "daemon-incremental")


if __name__ == "__main__":
    sys.exit(main())
