#!/usr/bin/python3
"""`vpcfw probe` tells the truth: a probe the harness could not carry out or
could not observe is an error (exit 4, "ERR", "harness_error": true), never
"dropped"; a negative is reported only with a working baseline; every run uses
fresh source ports and ICMP identifiers, so a probe never rides an earlier
run's conntrack entry.

usage: test_probe_truth.py VPCFW    (root; exit 77 = skipped)"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilab import MiniLab, run  # noqa: E402
from netlab import IP, report  # noqa: E402

LAB = """
vpcs:
  - {name: "{T}v", cidr: 10.71.0.0/16, ipv6_cidr: "2001:db8:71::/56"}
subnets:
  - {name: a, vpc: "{T}v", cidr: 10.71.1.0/24, ipv6_cidr: "2001:db8:71:1::/64"}
  - {name: b, vpc: "{T}v", cidr: 10.71.2.0/24, ipv6_cidr: "2001:db8:71:2::/64"}
security_groups:
  - name: web
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 80, cidr: 10.71.0.0/16}
%s
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.71.1.10, security_groups: [web]}
  - {name: "{T}b", subnet: b, private_ip: 10.71.2.10, security_groups: [web]}
"""
EXTRA = """      - {protocol: udp, ports: 53, cidr: 10.71.0.0/16}
      - {protocol: icmp, icmp_type: 8, icmp_code: 0, cidr: 10.71.0.0/16}"""
FULL = LAB % EXTRA
TCP_ONLY = LAB % ""


def probe(lab, frm, to, *extra, timeout=400):
    """(exit status, JSON) of one `vpcfw probe --json`."""
    r = run(lab.vpcfw, "probe", lab.path, "--from", lab.name(frm), "--to", lab.name(to), "--json", "--timeout",
            str(timeout), *extra, check=False)
    try:
        return r.returncode, json.loads(r.stdout)
    except json.JSONDecodeError:
        return r.returncode, {"unparsed": r.stdout + r.stderr}


def matrix(lab, *extra, prefix=()):
    r = run(*prefix, lab.vpcfw, "probe", lab.path, "--matrix", "--timeout", "400", *extra, check=False)
    return r.returncode, r.stdout


def outcome(p):
    if p.get("harness_error"):
        return "error"
    if not p["request_arrived"]:
        return "dropped"
    return "ok" if p["reply_returned"] else "reply-dropped"


def check(results, name, ok, detail=""):
    results.append((f"{name}{'' if ok else ' -- ' + str(detail)}", bool(ok)))


def is_error(rc, p, needle=""):
    """Exit 4, an error with a reason that is not errno 0, and no observation or agreement claimed."""
    err = p.get("error", "")
    return (rc == 4 and p.get("harness_error") is True and needle in err and "Success" not in err and
            not p.get("request_arrived", True) and not p.get("reply_returned", True) and not p.get("agrees", False))


def observed(results, vpcfw):
    with MiniLab(vpcfw, FULL) as lab:
        rc, p = probe(lab, "{T}a", "{T}b", "--port", "80")
        check(results, "allowed tcp: ok, exit 0", rc == 0 and outcome(p) == "ok", (rc, p))
        rc, p = probe(lab, "{T}a", "{T}b", "--proto", "udp", "--port", "53")
        check(results, "allowed udp: ok, exit 0", rc == 0 and outcome(p) == "ok", (rc, p))
        rc, p = probe(lab, "{T}a", "{T}b", "--proto", "icmp")
        check(results, "allowed icmp echo: ok, exit 0", rc == 0 and outcome(p) == "ok", (rc, p))
        rc, p = probe(lab, "{T}a", "{T}b", "--port", "22")
        check(results, "blocked tcp with a working baseline: dropped, exit 1",
              rc == 1 and outcome(p) == "dropped" and p["harness_error"] is False and "error" not in p, (rc, p))
        rc, p = probe(lab, "{T}a", "{T}b", "--port", "22", "--explain")
        check(results, "blocked tcp, --explain: dropped and agrees, exit 0",
              rc == 0 and outcome(p) == "dropped" and p["agrees"] is True, (rc, p))
        rc, p = probe(lab, "{T}b", "{T}a", "--proto", "udp", "--port", "54")
        check(results, "blocked udp: dropped, exit 1", rc == 1 and outcome(p) == "dropped", (rc, p))
        rc, out = matrix(lab, "--explain", "--json")
        m = json.loads(out) if out else {}
        check(results, "matrix --json parses, every probe carried out and agreeing, exit 0",
              rc == 0 and m.get("count", 0) > 0 and m.get("harness_errors") == 0 and
              all(p["agrees"] and not p["harness_error"] for p in m["probes"]), (rc, out[:400]))


def sabotage(results, vpcfw, name, breaker, frm="{T}a", to="{T}b", needle=""):
    """Breaks one part of a fresh lab; every probe touching it is an error, not "dropped"."""
    with MiniLab(vpcfw, FULL) as lab:
        rc, p = probe(lab, frm, to, "--port", "80")
        check(results, f"{name}: before, the probe works", rc == 0 and outcome(p) == "ok", (rc, p))
        breaker(lab)
        for args in (["--port", "80"], ["--port", "22"], ["--proto", "udp", "--port", "53"], ["--proto", "icmp"]):
            rc, p = probe(lab, frm, to, *args)
            check(results, f"{name}: {' '.join(args)} is a harness error (exit 4), not dropped",
                  is_error(rc, p, needle), (rc, p))
            rc, p = probe(lab, frm, to, "--explain", *args)
            check(results, f"{name}: --explain {' '.join(args)} exits 4 and does not agree",
                  rc == 4 and p.get("agrees") is False, (rc, p))
        rc, out = matrix(lab)
        check(results, f"{name}: the matrix shows ERR and counts it, exit 4",
              rc == 4 and " ERR" in out and "could not be carried out (ERR)" in out, (rc, out[-600:]))
        rc, out = matrix(lab, "--json")
        m = json.loads(out) if out else {"probes": []}
        bad = [p for p in m["probes"] if p["harness_error"]]
        check(results, f"{name}: matrix --json marks them harness_error with the reason",
              rc == 4 and bad and m["harness_errors"] == len(bad) and all(p.get("error") for p in bad) and
              all(not p["request_arrived"] for p in bad), (rc, out[:400]))


def impostor(results, vpcfw):
    """The destination's name now points at another namespace (bind-mounted
    over it): its observer and listeners open fine there, but only the
    baseline, sent down the real wire, shows it is not where the packets go."""
    with MiniLab(vpcfw, FULL) as lab:
        fake = f"vpcfw-probetruth-{lab.tag}"
        target = "/run/netns/" + ns(lab, "{T}b")
        run(IP, "netns", "add", fake)
        mounted = False
        try:
            run("mount", "--bind", "/run/netns/" + fake, target)
            mounted = True
            for args in (["--port", "22"], ["--proto", "udp", "--port", "53"]):
                rc, p = probe(lab, "{T}a", "{T}b", *args)
                check(results, f"impostor destination: {' '.join(args)} is a harness error (baseline), not dropped",
                      is_error(rc, p, "baseline"), (rc, p))
            # A positive needs no baseline: the real destination's kernel answered.
            rc, p = probe(lab, "{T}a", "{T}b", "--proto", "icmp")
            check(results, "impostor destination: icmp echo is answered by the real one: ok",
                  rc == 0 and outcome(p) == "ok", (rc, p))
        finally:
            if mounted:
                run("umount", target, check=False)
            run(IP, "netns", "del", fake, check=False)


def ns(lab, instance):
    return "vpcfw:i:" + lab.name(instance)


def fresh_identifiers(results, vpcfw):
    with MiniLab(vpcfw, FULL) as lab:
        seen = {}
        for args, key in ((["--port", "80"], "source_port"), (["--proto", "udp", "--port", "53"], "source_port"),
                          (["--proto", "icmp"], "icmp_id")):
            runs = [probe(lab, "{T}a", "{T}b", *args) for _ in range(3)]
            ids = [p.get(key) for _, p in runs]
            check(results, f"three quick runs of {' '.join(args)}: all ok, distinct {key}s {ids}",
                  all(rc == 0 and outcome(p) == "ok" for rc, p in runs) and len(set(ids)) == 3 and None not in ids,
                  runs)
            seen[args[1]] = ids
        check(results, "ICMP identifiers use all 16 bits (not 16 values 4096 apart)",
              any(i & 0x0fff for i in seen["icmp"]), seen["icmp"])
        matrices = []
        for _ in range(2):
            rc, out = matrix(lab, "--json")
            matrices.append(json.loads(out)["probes"] if rc == 0 else [])
        for k, ps in enumerate(matrices):
            ports = [(p["protocol"], p["source_port"]) for p in ps if "source_port" in p]
            icmp = [p["icmp_id"] for p in ps if "icmp_id" in p]
            check(results, f"matrix run {k + 1}: carried out, no source port or ICMP id twice",
                  ps and len(set(ports)) == len(ports) and len(set(icmp)) == len(icmp), ps[:2])
            check(results, f"matrix run {k + 1}: source ports within 49152..60999",
                  all(49152 <= p <= 60999 for _, p in ports), ports)
        ids = [[(p["protocol"], p.get("source_port", p.get("icmp_id"))) for p in ps] for ps in matrices]
        check(results, "the second matrix reuses none of the first one's identifiers",
              ids[0] and ids[1] and not set(ids[0]) & set(ids[1]), ids)


def no_riding(results, vpcfw):
    """An allowed flow, then the rule goes (tracked flows survive a group change,
    as in AWS): a new run must not ride the first run's conntrack entry."""
    with MiniLab(vpcfw, FULL) as lab:
        rc, udp = probe(lab, "{T}a", "{T}b", "--proto", "udp", "--port", "53")
        rc2, icmp = probe(lab, "{T}a", "{T}b", "--proto", "icmp")
        rc3, mx = matrix(lab, "--json")
        first = json.loads(mx)["probes"] if rc3 == 0 else []
        check(results, "before: udp/53, icmp echo and the matrix get through",
              rc == 0 and rc2 == 0 and outcome(udp) == "ok" and outcome(icmp) == "ok" and first, (udp, icmp, rc3))
        lab.apply(TCP_ONLY)
        rc, p = probe(lab, "{T}a", "{T}b", "--proto", "udp", "--port", "53")
        check(results, "after the rule went: a new udp probe is dropped (no false reply returned)",
              rc == 1 and outcome(p) == "dropped" and p["source_port"] != udp["source_port"], (rc, p))
        rc, p = probe(lab, "{T}a", "{T}b", "--proto", "icmp")
        check(results, "after the rule went: a new icmp echo is dropped",
              rc == 1 and outcome(p) == "dropped" and p["icmp_id"] != icmp["icmp_id"], (rc, p))
        rc, out = matrix(lab, "--json", "--explain")
        second = json.loads(out)["probes"] if out else []
        stale = [p for p in second if p["protocol"] in ("udp", "icmp") and p["reply_returned"]]
        check(results, "after the rule went: the matrix shows no udp or icmp reply, and agrees with explain",
              rc == 0 and second and not stale and all(p["agrees"] for p in second), (rc, stale or out[:300]))
        # The control: forcing the first run's source port does ride its entry,
        # so the checks above could have failed.
        rc, p = probe(lab, "{T}a", "{T}b", "--proto", "udp", "--port", "53", "--sport", str(udp["source_port"]))
        check(results, "control: the first run's source port, forced, rides the tracked flow",
              rc == 0 and outcome(p) == "ok", (rc, p))


def seeded(results, vpcfw):
    """With the draws fixed ($VPCFW_PROBE_SEED), a second run would take the
    first run's port and identifier; the conntrack check must move it."""
    env = {"VPCFW_PROBE_SEED": "20261201"}
    firsts = []
    for k in range(2):
        with MiniLab(vpcfw, FULL) as lab:
            old = dict(os.environ)
            os.environ.update(env)
            try:
                runs = [(probe(lab, "{T}a", "{T}b", "--proto", "udp", "--port", "53"),
                         probe(lab, "{T}a", "{T}b", "--proto", "icmp")) for _ in range(2)]
            finally:
                os.environ.clear()
                os.environ.update(old)
            (u1, i1), (u2, i2) = [(u[1], i[1]) for u, i in runs]
            firsts.append((u1.get("source_port"), i1.get("icmp_id")))
            check(results, f"seeded lab {k + 1}: both runs ok",
                  all(rc == 0 for pair in runs for rc, _ in pair) and all(
                      outcome(p) == "ok" for p in (u1, i1, u2, i2)), runs)
            check(results, f"seeded lab {k + 1}: the second run skips the udp port the first one left tracked",
                  u1.get("source_port") != u2.get("source_port"), (u1.get("source_port"), u2.get("source_port")))
            check(results, f"seeded lab {k + 1}: and the ICMP identifier",
                  i1.get("icmp_id") != i2.get("icmp_id"), (i1.get("icmp_id"), i2.get("icmp_id")))
    check(results, "control: on a fresh lab the same seed draws the same first port and identifier",
          firsts[0] == firsts[1] and None not in firsts[0], firsts)


def main():
    if os.geteuid() != 0:
        print("skipped: needs root")
        return 77
    vpcfw = sys.argv[1]
    results = []
    observed(results, vpcfw)
    sabotage(results, vpcfw, "source namespace missing",
             lambda lab: run(IP, "netns", "del", ns(lab, "{T}a")), needle="No such file or directory")
    sabotage(results, vpcfw, "destination namespace missing",
             lambda lab: run(IP, "netns", "del", ns(lab, "{T}b")), needle="No such file or directory")
    sabotage(results, vpcfw, "destination eth0 down (its observer sees nothing)",
             lambda lab: run(IP, "-n", ns(lab, "{T}b"), "link", "set", "eth0", "down"))
    sabotage(results, vpcfw, "destination eth0 deleted",
             lambda lab: run(IP, "-n", ns(lab, "{T}b"), "link", "del", "eth0"))
    sabotage(results, vpcfw, "source eth0 down",
             lambda lab: run(IP, "-n", ns(lab, "{T}a"), "link", "set", "eth0", "down"))
    impostor(results, vpcfw)
    with MiniLab(vpcfw, FULL) as lab:
        rc, out = matrix(lab, prefix=("prlimit", "--nofile=12"))
        check(results, "out of file descriptors: exit 4, ERR, the kernel's reason read on the right thread",
              rc == 4 and "ERR" in out and "Too many open files" in out and "Success" not in out, (rc, out[-600:]))
    fresh_identifiers(results, vpcfw)
    no_riding(results, vpcfw)
    seeded(results, vpcfw)
    return report(results, "probe truth")


if __name__ == "__main__":
    sys.exit(main())
