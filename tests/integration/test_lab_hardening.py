#!/usr/bin/python3
"""Kernel test of the lab against untrusted state, foreign namespaces,
concurrent and interrupted commands, and of a truthful `lab status`:

- forged lab records (empty, ".", "..", "../../tmp/x", "/run/netns", a foreign
  namespace's name, a wrong inode) are never acted on, and say so;
- a record that is a symlink, another user's, or group-writable is refused;
- a foreign `ip netns add vpcfw-...` survives `lab down` with and without a config;
- a second lab claiming a namespace of the first fails and leaves it intact;
- two labs share the internet namespace; it goes with the last of them;
- two concurrent `lab up` of one config: one builds, the other refuses;
- `lab up` killed at several points: status says so, `lab down` removes all;
- `lab apply` re-addresses an instance a process holds in place, and refuses to
  remove a held one (naming the pid) while the rest of the lab is changed;
- `lab status` as nobody, or with a namespace missing, never says "matches";
- a lab built while /run/netns is a plain directory survives a later foreign
  `ip netns add` (which bind-mounts /run/netns onto itself): status still
  matches and `lab down` removes everything (in a private mount namespace).

Everything runs with a private VPCFW_RUN_DIR and a private internet namespace;
every namespace name carries this run's tag.

usage: test_lab_hardening.py VPCFW    (root; exit 77 = skipped)"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import IP, report, run  # noqa: E402

TAG = f"h{os.getpid() % 100000}"
NETNS = "/run/netns"


def config(vpc, cidr8, instances, gateway=True):
    """A one-VPC config; instances: [(name, last octet)]."""
    gw = f"internet_gateways:\n  - {{name: {vpc}g, vpc: {vpc}}}\n" if gateway else ""
    routes = f"[{{destination: 0.0.0.0/0, internet_gateway: {vpc}g}}]" if gateway else "[]"
    text = f"""vpcs:
  - {{name: {vpc}, cidr: 10.{cidr8}.0.0/16}}
{gw}route_tables:
  - {{name: rt, vpc: {vpc}, routes: {routes}}}
subnets:
  - {{name: s1, vpc: {vpc}, cidr: 10.{cidr8}.1.0/24, route_table: rt}}
security_groups:
  - {{name: open, vpc: {vpc}, ingress: [{{protocol: tcp, ports: 80, cidr: 0.0.0.0/0}}]}}
instances:
"""
    for i, (name, octet) in enumerate(instances):
        pub = f", public_ip: 203.0.113.{100 + cidr8}" if gateway and i == 0 else ""  # distinct per lab
        text += f"  - {{name: {name}, subnet: s1, private_ip: 10.{cidr8}.1.{octet}{pub}, security_groups: [open]}}\n"
    return text


def ours():
    """The namespaces of this run (their names carry the tag)."""
    return sorted(n for n in os.listdir(NETNS) if TAG in n)


def inode(ns):
    try:
        return os.stat(f"{NETNS}/{ns}").st_ino
    except FileNotFoundError:
        return None


class Env:
    def __init__(self, vpcfw):
        self.vpcfw = vpcfw
        self.tmp = tempfile.mkdtemp(prefix=f"vpcfw-{TAG}-")
        os.chmod(self.tmp, 0o755)  # configs readable by nobody (the non-root status check)
        self.run_dir = os.path.join(self.tmp, "run")
        os.mkdir(self.run_dir, 0o700)
        os.environ["VPCFW_RUN_DIR"] = self.run_dir
        os.environ["VPCFW_LAB_INTERNET"] = f"vpcfw:internet-{TAG}"
        self.configs = []
        self.holders = []

    def write(self, name, text):
        path = os.path.join(self.tmp, name + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        if path not in self.configs:
            self.configs.append(path)
        return path

    def lab(self, *args, check=False):
        return run(self.vpcfw, "lab", *args, check=check)

    def status(self, cfg):
        r = self.lab("status", cfg, "--json")
        return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}

    def record(self, cfg):
        """The path of cfg's lab record (found by its header)."""
        d = os.path.join(self.run_dir, "lab")
        for f in os.listdir(d) if os.path.isdir(d) else []:
            p = os.path.join(d, f)
            if f.endswith(".state") and not os.path.islink(p):
                with open(p) as fh:
                    if f"config {os.path.realpath(cfg)}\n" in fh.read():
                        return p
        return None

    def hold(self, ns):
        p = subprocess.Popen([IP, "netns", "exec", ns, "sleep", "300"])
        self.holders.append(p)
        time.sleep(0.2)
        return p

    def close(self):
        for p in self.holders:
            p.kill()
            p.wait()
        for c in self.configs:
            self.lab("down", c)
        for n in ours():  # what a failed check left: ours by its tag
            subprocess.run([IP, "netns", "delete", n], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def forged_records(env, results):
    cfg = env.write("forge", config(f"{TAG}f", 91, [(f"{TAG}fa", 10), (f"{TAG}fb", 20)]))
    env.lab("up", "--quiet", cfg, check=True)
    made = ours()
    rec = env.record(cfg)
    results.append(("forge: the lab is up and recorded", len(made) == 5 and rec is not None))
    good = open(rec).read()
    sentinel = f"/tmp/vpcfw-{TAG}-x"
    open(sentinel, "w").close()
    foreign = f"vpcfw-{TAG}foreign"
    run(IP, "netns", "add", foreign)
    before = {n: inode(n) for n in made + [foreign]}
    router = f"vpcfw-{TAG}f"
    lines = ["", ".", "..", f"../../tmp/vpcfw-{TAG}-x", "/run/netns", "ns", "ns . 4:5", "ns .. 4:5",
             f"ns ../../tmp/vpcfw-{TAG}-x 4:5", "ns /run/netns 4:5", f"ns {router}/.. 4:5", "ns  4:5"]
    for line in lines:
        with open(rec, "w") as f:
            f.write(good + line + "\n")
        for cmd in (["down", cfg], ["apply", cfg], ["up", "--quiet", cfg]):
            r = env.lab(*cmd)
            intact = all(inode(n) == i for n, i in before.items()) and os.path.exists(sentinel) and os.path.ismount(
                f"{NETNS}/{foreign}")
            results.append((f"forge: {cmd[0]} with a record line {line!r} refuses and touches nothing",
                            r.returncode != 0 and "lab record" in r.stderr and intact))
    # Well-formed lines that prove nothing: a foreign namespace with an
    # identity that is not its own, the lab's router with a wrong inode.
    st = os.stat(f"{NETNS}/{router}")
    wrong = good.replace(f"ns {router} {st.st_dev}:{st.st_ino}\n", f"ns {router} {st.st_dev}:{st.st_ino + 1}\n")
    results.append(("forge: the router's line was found", wrong != good))
    with open(rec, "w") as f:
        f.write(wrong + f"ns {foreign} {st.st_dev}:{st.st_ino + 7}\n")
    code, js = env.status(cfg)
    results.append(("forge: status of a lab whose record does not prove the router: differs", code != 0 and
                    not js.get("up_to_date") and any(n["namespace"] == router and not n["recorded"]
                                                     for n in js["namespaces"])))
    r = env.lab("down", cfg)
    results.append(("forge: down leaves the wrongly-recorded router and the foreign namespace, says so, fails",
                    r.returncode != 0 and inode(router) == before[router] and inode(foreign) == before[foreign]
                    and router in r.stderr and foreign in r.stderr))
    results.append(("forge: down removed what the record does prove", ours() == sorted([router, foreign])))
    run(IP, "netns", "delete", router)
    run(IP, "netns", "delete", foreign)
    os.remove(sentinel)


def unsafe_records(env, results):
    cfg = env.write("unsafe", config(f"{TAG}u", 92, [(f"{TAG}ua", 10)]))
    env.lab("up", "--quiet", cfg, check=True)
    made = {n: inode(n) for n in ours()}
    rec = env.record(cfg)
    copy = rec + ".copy"
    shutil.copy2(rec, copy)

    def attempt(what, why):
        r = env.lab("down", cfg)
        results.append((f"unsafe: a record that is {what} is refused ({why}) and nothing is removed",
                        r.returncode != 0 and why in r.stderr and {n: inode(n) for n in ours()} == made))

    os.remove(rec)
    os.symlink(copy, rec)
    attempt("a symlink", "symlink")
    os.remove(rec)
    shutil.copy2(copy, rec)
    os.chown(rec, 65534, 65534)
    attempt("another user's", "owned by uid 65534")
    os.chown(rec, 0, 0)
    os.chmod(rec, 0o660)
    attempt("group-writable", "writable by group")
    os.chmod(rec, 0o600)
    os.remove(copy)
    r = env.lab("down", cfg)
    results.append(("unsafe: the restored record takes the lab down", r.returncode == 0 and ours() == []))


def foreign_namespaces(env, results):
    cfg = env.write("foreign", config(f"{TAG}o", 93, [(f"{TAG}oa", 10)]))
    foreign = [f"vpcfw-{TAG}mine", f"vpcfw:i:{TAG}mine", f"vpcfw:igw:{TAG}o2"]
    for n in foreign:
        run(IP, "netns", "add", n)
    ino = {n: inode(n) for n in foreign}
    for args in (["down", cfg], ["down"]):
        env.lab("up", "--quiet", cfg, check=True)
        lab = [n for n in ours() if n not in foreign]
        r = env.lab(*args)
        results.append((f"foreign: lab {' '.join(a for a in args if a != cfg) or 'down'}"
                        f"{' CONFIG' if cfg in args else ''} removes the lab ({len(lab)}) and no foreign namespace",
                        r.returncode == 0 and len(lab) == 4 and all(inode(n) is None for n in lab)
                        and all(inode(n) == ino[n] for n in foreign)))
        if cfg not in args:
            results.append(("foreign: lab down without a config reports the unrecorded ones",
                            all(f"{n}: not made by vpcfw" in r.stderr for n in foreign)))
    for n in foreign:
        run(IP, "netns", "delete", n)


def shared_names(env, results):
    a = env.write("share-a", config(f"{TAG}s", 94, [(f"{TAG}sa", 10), (f"{TAG}sb", 20)]))
    env.lab("up", "--quiet", a, check=True)
    lab_a = {n: inode(n) for n in ours()}
    variants = {
        "an instance name": config(f"{TAG}t", 95, [(f"{TAG}sa", 10)], gateway=False),
        "a VPC name (router)": config(f"{TAG}s", 95, [(f"{TAG}tb", 10)], gateway=False),
    }
    for what, text in variants.items():
        b = env.write("share-b", text)
        r = env.lab("up", "--quiet", b)
        code, _ = env.status(a)
        results.append((f"shared {what}: the second lab up fails, the first is intact",
                        r.returncode != 0 and "exists and no record" in r.stderr and
                        {n: inode(n) for n in ours()} == lab_a and code == 0))
        r = env.lab("down", b)
        code, _ = env.status(a)
        results.append((f"shared {what}: lab down of the second leaves the first intact",
                        {n: inode(n) for n in ours()} == lab_a and code == 0))
        r = env.lab("apply", b)
        results.append((f"shared {what}: lab apply of the second refuses and leaves the first intact",
                        r.returncode != 0 and {n: inode(n) for n in ours()} == lab_a))
    env.lab("down", a, check=True)
    results.append(("shared: nothing left", ours() == []))


def shared_internet(env, results):
    """Two labs with gateways share the internet namespace; it goes with the last."""
    inet = os.environ["VPCFW_LAB_INTERNET"]
    a = env.write("inet-a", config(f"{TAG}ia", 88, [(f"{TAG}iaa", 10)]))
    b = env.write("inet-b", config(f"{TAG}ib", 89, [(f"{TAG}ibb", 10)]))
    env.lab("up", "--quiet", a, check=True)
    ino = inode(inet)
    r = env.lab("up", "--quiet", b)
    code, _ = env.status(b)
    results.append(("shared internet: a second lab joins the first's internet", r.returncode == 0 and code == 0
                    and inode(inet) == ino))
    probe = run(env.vpcfw, "probe", b, "--from", "198.51.100.9", "--to", f"{TAG}ibb", "--proto", "tcp", "--port", "80",
                check=False)
    results.append(("shared internet: the second lab is reachable from it", probe.returncode == 0))
    r = env.lab("apply", b)
    code_a, _ = env.status(a)
    probe = run(env.vpcfw, "probe", a, "--from", "198.51.100.9", "--to", f"{TAG}iaa", "--proto", "tcp", "--port", "80",
                check=False)
    results.append(("shared internet: apply of the second leaves the first's links and routes there",
                    r.returncode == 0 and code_a == 0 and probe.returncode == 0))
    # A third lab wanting the first's public IP (same octets) must not take its route.
    c = env.write("inet-c", config(f"{TAG}ic", 88, [(f"{TAG}icc", 10)]))
    r = env.lab("up", "--quiet", c)
    code_a, _ = env.status(a)
    probe = run(env.vpcfw, "probe", a, "--from", "198.51.100.9", "--to", f"{TAG}iaa", "--proto", "tcp", "--port", "80",
                check=False)
    results.append(("shared internet: a lab wanting another lab's public IP is refused, naming the route",
                    r.returncode != 0 and "another lab's gateway" in r.stderr and code_a == 0 and
                    probe.returncode == 0 and not any(n.startswith(f"vpcfw-{TAG}ic") or f":{TAG}ic" in n
                                                      for n in ours())))
    env.lab("down", a, check=True)
    code, _ = env.status(b)
    results.append(("shared internet: down of the first keeps it for the second", inode(inet) == ino and code == 0))
    env.lab("down", b, check=True)
    results.append(("shared internet: down of the last removes it", inode(inet) is None and ours() == []))


def concurrent_up(env, results):
    cfg = env.write("conc", config(f"{TAG}c", 96, [(f"{TAG}c{i}", 10 + i) for i in range(4)]))
    for attempt in range(3):
        procs = [subprocess.Popen([env.vpcfw, "lab", "up", "--quiet", cfg], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate() + (p.returncode,) for p in procs]
        ok = [o for o in outs if o[2] == 0]
        bad = [o for o in outs if o[2] != 0]
        code, _ = env.status(cfg)
        results.append((f"concurrent up #{attempt}: exactly one builds, the other refuses cleanly, the lab matches",
                        len(ok) == 1 and len(bad) == 1 and "is up" in bad[0][1] and code == 0))
        if attempt == 0:
            concurrent_apply(env, cfg, results)
        r = env.lab("down", cfg)
        results.append((f"concurrent up #{attempt}: down leaves nothing", r.returncode == 0 and ours() == []))


def concurrent_apply(env, cfg, results):
    """Applies of one lab wait for each other; a held lock is waited on, and said so."""
    env.write("conc", config(f"{TAG}c", 96, [(f"{TAG}c{i}", 20 + i) for i in range(4)]))
    procs = [subprocess.Popen([env.vpcfw, "lab", "apply", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate() + (p.returncode,) for p in procs]
    code, _ = env.status(cfg)
    readdressed = sorted(o[0].count("its addresses changed") for o in outs)
    results.append(("concurrent apply: both succeed, one after the other (one re-addresses, the other finds nothing to do)",
                    all(o[2] == 0 for o in outs) and readdressed == [0, 4] and code == 0))
    key = os.path.basename(env.record(cfg))[:-len(".state")]
    fd = os.open(os.path.join(env.run_dir, "lock", f"lab.{key}"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        p = subprocess.Popen([env.vpcfw, "lab", "apply", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        waited = p.poll() is None
    finally:
        os.close(fd)
    out, err = p.communicate()
    results.append(("concurrent apply: a held lab lock is waited for (and said), then the apply runs",
                    waited and p.returncode == 0 and "waiting for another vpcfw command" in err))


def killed_up(env, results):
    cfg = env.write("kill", config(f"{TAG}k", 97, [(f"{TAG}k{i}", 10 + i) for i in range(8)]))
    planned = 11  # router, gateway, internet, 8 instances
    partial = 0
    # Kill points spread over how long a whole `lab up` takes on this machine
    # now (an ASan build or a busy machine is slower), plus a few fixed ones.
    t0 = time.monotonic()
    r = env.lab("up", cfg)
    whole = time.monotonic() - t0
    results.append(("killed up: a whole lab up works (baseline)", r.returncode == 0 and len(ours()) == planned))
    env.lab("down", cfg)
    delays = [0.0, 0.005, 0.02] + [whole * f for f in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
    for k, delay in enumerate(delays):
        p = subprocess.Popen([env.vpcfw, "lab", "up", "--quiet", cfg], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        present = ours()
        code, js = env.status(cfg)
        claims = js.get("up_to_date", False)
        truthful = (code == 0) == claims and (not claims or len(present) == planned) and (
            len(present) == planned or code != 0)
        results.append((f"killed up after {delay * 1000:.0f} ms ({len(present)}/{planned} made): status is truthful",
                        truthful))
        # Half-way: some namespaces made, or all made but not yet wired.
        partial += 0 < len(present) < planned or (len(present) == planned and code != 0)
        if k % 2 and present:  # half the time: apply finishes what was interrupted
            r = env.lab("apply", cfg)
            code, _ = env.status(cfg)
            results.append((f"killed up after {delay * 1000:.0f} ms: apply completes the lab",
                            r.returncode == 0 and code == 0 and len(ours()) == planned))
        r = env.lab("down", cfg)
        results.append((f"killed up after {delay * 1000:.0f} ms: down leaves nothing",
                        r.returncode == 0 and ours() == []))
    results.append(("killed up: some kills landed half-way through the build (the test saw partial labs)", partial > 0))
    # A kill between making a name and mounting the namespace on it leaves an
    # empty file under /run/netns (made here by unmounting one): status says
    # so, and down, up and apply clear it, since the lab's record names it.
    env.lab("up", "--quiet", cfg, check=True)
    victim = f"vpcfw:i:{TAG}k3"
    run("umount", f"/run/netns/{victim}")
    placeholder = os.path.isfile(f"/run/netns/{victim}") and os.path.getsize(f"/run/netns/{victim}") == 0
    code, js = env.status(cfg)
    r = env.lab("down", cfg)
    results.append(("killed up: an empty placeholder is reported, then removed by down",
                    placeholder and code != 0 and not js.get("up_to_date", False) and r.returncode == 0 and
                    ours() == [] and not os.path.exists(f"/run/netns/{victim}")))


def held(env, results):
    a, b, c = f"{TAG}ha", f"{TAG}hb", f"{TAG}hc"
    three = [(a, 10), (b, 20), (c, 30)]
    cfg = env.write("held", config(f"{TAG}h", 98, three))
    env.lab("up", "--quiet", cfg, check=True)
    hb = env.hold(f"vpcfw:i:{b}")
    ino_b = inode(f"vpcfw:i:{b}")
    # Re-addressed while held: changed in place, the process stays inside.
    env.write("held", config(f"{TAG}h", 98, [(a, 10), (b, 21), (c, 30)]))
    r = env.lab("apply", cfg)
    addrs = run(IP, "-n", f"vpcfw:i:{b}", "-br", "addr", "show", "eth0").stdout
    code, _ = env.status(cfg)
    probe = run(env.vpcfw, "probe", cfg, "--from", a, "--to", b, "--proto", "tcp", "--port", "80", check=False)
    results.append(("held: a held instance is re-addressed in place (same namespace, the process still in it)",
                    r.returncode == 0 and inode(f"vpcfw:i:{b}") == ino_b and hb.poll() is None
                    and "10.98.1.21/32" in addrs and "10.98.1.20/" not in addrs and code == 0))
    results.append(("held: the re-addressed instance is reachable at its new address", probe.returncode == 0))
    # Dropped while held: refused with the pid, the rest of the lab changes.
    hc = env.hold(f"vpcfw:i:{c}")
    ino_c = inode(f"vpcfw:i:{c}")
    eth_c = run(IP, "-n", f"vpcfw:i:{c}", "-br", "addr", "show", "eth0").stdout
    env.write("held", config(f"{TAG}h", 98, [(a, 10), (b, 21), (f"{TAG}hd", 40)]))
    r = env.lab("apply", cfg)
    probe = run(env.vpcfw, "probe", cfg, "--from", a, "--to", f"{TAG}hd", "--proto", "tcp", "--port", "80", check=False)
    results.append(("held: removing a held instance is refused, naming the pid",
                    r.returncode != 0 and f"pid {hc.pid}" in r.stderr and f"vpcfw:i:{c}" in r.stderr))
    results.append(("held: the held instance is left as it was",
                    inode(f"vpcfw:i:{c}") == ino_c and
                    run(IP, "-n", f"vpcfw:i:{c}", "-br", "addr", "show", "eth0").stdout == eth_c))
    results.append(("held: the rest of the lab was changed (the new instance is reachable)",
                    inode(f"vpcfw:i:{TAG}hd") is not None and probe.returncode == 0))
    code, js = env.status(cfg)
    results.append(("held: status says the lab differs (the held one is extra)", code != 0 and not js["up_to_date"]))
    hc.kill()
    hc.wait()
    r = env.lab("apply", cfg)
    code, _ = env.status(cfg)
    results.append(("held: once released, apply removes it and the lab matches",
                    r.returncode == 0 and inode(f"vpcfw:i:{c}") is None and code == 0))
    env.lab("down", cfg, check=True)
    results.append(("held: down leaves nothing (a held namespace's name goes too)", ours() == []))


def status_truth(env, results):
    cfg = env.write("status", config(f"{TAG}v", 99, [(f"{TAG}va", 10), (f"{TAG}vb", 20)]))
    env.lab("up", "--quiet", cfg, check=True)
    code, js = env.status(cfg)
    results.append(("status: a fresh lab matches (baseline)", code == 0 and js["up_to_date"]))
    for who in (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], ["runuser", "-u", "nobody", "--"]):
        if not shutil.which(who[0]):
            continue
        r = subprocess.run(who + [env.vpcfw, "lab", "status", cfg], capture_output=True, text=True, cwd="/")
        rj = subprocess.run(who + [env.vpcfw, "lab", "status", cfg, "--json"], capture_output=True, text=True, cwd="/")
        results.append((f"status as nobody ({who[0]}): non-zero, never 'matches'",
                        r.returncode != 0 and "matches" not in r.stdout and rj.returncode != 0 and
                        '"up_to_date": true' not in rj.stdout))
    # A namespace the lab made, removed behind its back.
    run(IP, "netns", "delete", f"vpcfw:i:{TAG}vb")
    code, js = env.status(cfg)
    missing = [n for n in js["namespaces"] if n["namespace"] == f"vpcfw:i:{TAG}vb"]
    results.append(("status: a missing namespace is reported, not up to date",
                    code != 0 and not js["up_to_date"] and missing and missing[0]["state"] == "missing"))
    # A route removed behind its back, then an extra address.
    run(IP, "-n", f"vpcfw-{TAG}v", "route", "del", f"10.99.1.10/32", "table", "main")
    run(IP, "-n", f"vpcfw:i:{TAG}va", "addr", "add", "10.99.1.99/32", "dev", "eth0")
    r = env.lab("status", cfg)
    results.append(("status: a missing route and an extra address are differences",
                    r.returncode != 0 and "missing route 10.99.1.10/32" in r.stdout and
                    "extra address 10.99.1.99/32" in r.stdout and "matches the config" not in r.stdout))
    r = env.lab("apply", cfg)
    code, js = env.status(cfg)
    results.append(("status: apply repairs it and status matches again", r.returncode == 0 and code == 0))
    # Routes and rules anyone else made (any protocol, any table the lab
    # uses, any priority and action) change forwarding just the same.
    router = f"vpcfw-{TAG}v"
    run(IP, "-n", router, "route", "add", "blackhole", "10.99.1.10/32", "table", "100")
    run(IP, "-n", router, "route", "add", "192.0.2.0/24", "dev", "igw0", "proto", "99")
    run(IP, "-n", router, "rule", "add", "from", "10.99.1.20", "blackhole", "pref", "900")
    run(IP, "-n", f"vpcfw:i:{TAG}va", "rule", "add", "from", "all", "lookup", "5", "pref", "10")
    r = env.lab("status", cfg)
    results.append(("status: foreign routes and rules of any protocol, table and priority are differences",
                    r.returncode != 0 and "extra route blackhole 10.99.1.10/32 table 100" in r.stdout and
                    "extra route 192.0.2.0/24 dev igw0" in r.stdout and
                    "extra rule from 10.99.1.20/32 action 6 priority 900" in r.stdout and
                    "priority 10" in r.stdout))
    r = env.lab("apply", cfg)
    code, js = env.status(cfg)
    left = run(IP, "-n", router, "rule").stdout + run(IP, "-n", router, "route", "show", "table", "100").stdout
    results.append(("status: apply removes them and status matches again",
                    r.returncode == 0 and code == 0 and "blackhole" not in left))
    env.lab("down", cfg, check=True)
    results.append(("status: down leaves nothing", ours() == []))


NETNS_COVER = r'''
set -e
mount -t tmpfs vpcfw-test /run           # /run/netns: a plain directory, as on a fresh boot
mkdir -p /run/netns "$VPCFW_RUN_DIR"
"$VPCFW" lab up --quiet "$CFG" >/dev/null
ip netns add "$FOREIGN"                  # iproute2 bind-mounts /run/netns onto itself now, if it is not a mount
set +e
"$VPCFW" lab status "$CFG" >/dev/null; echo "status=$?"
"$VPCFW" lab down "$CFG" >/dev/null; echo "down=$?"
ip netns delete "$FOREIGN"
ip netns list | grep -c "$TAG" | sed 's/^/left=/'
'''


def netns_dir_covered(env, results):
    # A private mount namespace: the machine's /run is never touched.
    cfg = env.write("cover", config(f"{TAG}cv", 63, [(f"{TAG}cv1", 10)]))
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", NETNS_COVER], text=True,
                       capture_output=True, env=dict(os.environ, VPCFW=env.vpcfw, CFG=cfg, TAG=TAG,
                                                     FOREIGN=f"{TAG}-foreign", VPCFW_RUN_DIR="/run/vpcfw-test"))
    out = r.stdout.split()
    results.append(("netns dir: after a foreign `ip netns add`, lab status still matches and down removes all "
                    f"({' '.join(out)} {r.stderr.strip()[-300:]})",
                    r.returncode == 0 and out == ["status=0", "down=0", "left=0"]))


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    env = Env(sys.argv[1])
    results = []
    try:
        for t in (forged_records, unsafe_records, foreign_namespaces, shared_names, shared_internet, concurrent_up, killed_up, held,
                  status_truth, netns_dir_covered):
            try:
                t(env, results)
            except Exception as e:  # a broken step fails its test, the others still run
                results.append((f"{t.__name__}: {e}", False))
                for c in env.configs:
                    env.lab("down", c)
    finally:
        env.close()
    return report(results, "lab hardening")


if __name__ == "__main__":
    sys.exit(main())
