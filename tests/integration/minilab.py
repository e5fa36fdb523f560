"""Small labs for kernel tests, built by the product itself: `vpcfw lab up`,
`vpcfw probe --json --explain`, `vpcfw lab apply`, `vpcfw lab down CONFIG`.

Every name a test writes as {T} becomes a tag unique to the run (VPC and
instance names, hence every namespace name), and the lab's internet namespace
is the run's own ($VPCFW_LAB_INTERNET), so runs never meet. `with MiniLab(...)`
always takes the lab down."""
import json
import os
import subprocess

from netlab import run  # noqa: F401  (the tests import it from here too)

RUN_TAG = f"c{os.getpid() % 100000}"
os.environ["VPCFW_LAB_INTERNET"] = f"vpcfw:internet-{RUN_TAG}"


class MiniLab:
    count = 0

    def __init__(self, vpcfw, text):
        MiniLab.count += 1
        self.vpcfw = vpcfw
        self.tag = f"{RUN_TAG}x{MiniLab.count}"
        self.path = f"/tmp/vpcfw-{self.tag}.yaml"
        self.write(text)

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text.replace("{T}", self.tag))

    def name(self, n):
        return n.replace("{T}", self.tag)

    def __enter__(self):
        run(self.vpcfw, "lab", "up", "--quiet", self.path)
        return self

    def __exit__(self, *exc):
        run(self.vpcfw, "lab", "down", self.path, check=False)
        os.remove(self.path)
        return False

    def apply(self, text):
        self.write(text)
        return run(self.vpcfw, "lab", "apply", self.path)

    def probe(self, frm, to, proto="tcp", port=None, family=None, icmp_type=None, timeout=600):
        args = [self.vpcfw, "probe", self.path, "--from", self.name(frm), "--to", self.name(to), "--proto", proto,
                "--json", "--explain", "--timeout", str(timeout)]
        if port is not None:
            args += ["--port", str(port)]
        if family:
            args += ["--family", str(family)]
        if icmp_type is not None:
            args += ["--icmp-type", str(icmp_type)]
        r = run(*args, check=False)
        if r.returncode not in (0, 3):
            raise RuntimeError(f"probe failed: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def exec(self, target, *cmd, **kw):
        return subprocess.Popen([self.vpcfw, "lab", "exec", "--config", self.path, self.name(target), "--", *cmd], **kw)


def outcome(p):
    """'ok' (request and reply), 'reply-dropped', 'dropped', or 'arrived' (no reply expected)."""
    if not p["request_arrived"]:
        return "dropped"
    if not p["reply_expected"]:
        return "arrived"
    return "ok" if p["reply_returned"] else "reply-dropped"


def expect(results, name, p, want):
    """The kernel did `want`, and vpcfw explain predicted exactly that."""
    got = outcome(p)
    ok = got == want and p.get("agrees", False)
    detail = "" if ok else f" (observed {got}, wanted {want}; explain: {p.get('predicted', {}).get('text')})"
    results.append((name + detail, ok))
