#!/usr/bin/python3
"""Kernel test of vpcfwd without systemd: the daemon runs in host mode with
--netns on a namespace that plays the host (its veth is the ENI), a second
namespace is the remote side, and real TCP connections show what is
enforced. The test is its notify socket (NOTIFY_SOCKET), so READY=1,
RELOADING=1 and STATUS= are observed as systemd would see them.

Shown: an invalid config at start exits 1 with a located error and leaves the
kernel untouched; READY only once the rules are in; a config edit (written
and renamed into place, as editors do) takes effect; a burst of writes is
one reload; an invalid edit is rejected with file:line:column while the old
rules stay; SIGHUP reloads; drift (nft flush ruleset, a rule added, an
element removed, the table deleted) is repaired, other tables untouched;
changes to other tables between reloads do not upset the daemon's record;
SIGTERM leaves the rules in force. Each blocked probe has a baseline that
got through.

usage: test_daemon.py VPCFW VPCFWD       (root; exit 77 = skipped)"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import daemon_configs, host_and_peer, CLIENT, IP, NFT, Notifications, SERVER, report, run  # noqa: E402

CONFIG, OPEN_8080, INVALID = daemon_configs("labhost")


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw, vpcfwd = sys.argv[1], sys.argv[2]
    tag = f"vd{os.getpid() % 100000}"
    host, peer = f"{tag}-host", f"{tag}-peer"
    work = tempfile.mkdtemp(prefix=f"{tag}-")
    os.chmod(work, 0o700)
    cfgdir = os.path.join(work, "etc")
    os.mkdir(cfgdir)
    cfg = os.path.join(cfgdir, "vpcfw.yaml")
    rundir = os.path.join(work, "run")
    os.mkdir(rundir, 0o700)
    env = dict(os.environ, VPCFW_RUN_DIR=rundir, NOTIFY_SOCKET=os.path.join(work, "notify"))
    server = daemon = notify = None
    log = open(os.path.join(work, "log"), "w+")
    results = []

    def write(text, rename=True):
        if rename:
            tmp = os.path.join(cfgdir, ".vpcfw.yaml.tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, cfg)
        else:
            with open(cfg, "w") as f:
                f.write(text)

    def logtext():
        log.flush()
        with open(log.name) as f:
            return f.read()

    def nft(*args, check=True):
        return run(IP, "netns", "exec", host, NFT, *args, check=check)

    def table():
        r = nft("-j", "list", "table", "inet", "vpcfw", check=False)
        return r.stdout if r.returncode == 0 else None

    sport = [42000]

    def probe(port):
        sport[0] += 1
        r = run(IP, "netns", "exec", peer, "/usr/bin/python3", "-c", CLIENT, "tcp", "10.0.1.10", str(port),
                str(sport[0]), "0.6", "198.51.100.7", check=False)
        return r.stdout.startswith("ok")

    def repaired_within(action, check, timeout=2.0):
        """Runs `action`, then polls `check` (the kernel's table); seconds until it holds, or None."""
        t0 = time.monotonic()
        action()
        while time.monotonic() - t0 < timeout:
            if check():
                return time.monotonic() - t0
            time.sleep(0.005)
        return None

    try:
        host_and_peer(tag, host, peer)
        server = subprocess.Popen([IP, "netns", "exec", host, "/usr/bin/python3", "-c", SERVER, "80,8080", ""],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert server.stdout.readline().strip() == "ready"
        # A table that is not vpcfw's: the daemon must never touch it.
        nft("add", "table", "inet", "bystander")
        nft("add", "chain", "inet", "bystander", "c")
        nft("add", "rule", "inet", "bystander", "c", "counter", "comment", '"mine"')

        results.append(("baseline without rules: 198.51.100.7 -> :8080 gets through", probe(8080)))
        results.append(("baseline without rules: 198.51.100.7 -> :80 gets through", probe(80)))

        args = [vpcfwd, "--config", cfgdir + "/vpcfw.yaml", "--host", "labhost", "--netns", host, "--debounce-ms", "30",
                "--control-socket", os.path.join(work, "vpcfwd.sock")]
        notify = Notifications(env["NOTIFY_SOCKET"])

        # 1. Invalid at start: exit 1, located error, nothing in the kernel.
        write(INVALID)
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)
        results.append(("an invalid config at start exits 1", r.returncode == 1))
        results.append(("... naming file:line:column of the error",
                        f"{cfg}:12:39: error:" in r.stderr and "error:" in r.stderr))
        results.append(("... without touching the kernel (no vpcfw table)", table() is None))
        results.append(("... and without READY", notify.wait("READY=1", timeout=0.2) is None))

        # 2. Start: READY only after the rules are in.
        write(CONFIG)
        daemon = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        ready = notify.wait("READY=1")
        results.append(("READY=1 is sent", ready is not None))
        results.append(("... when the table is already in the kernel", table() is not None))
        results.append(("... with a one-line STATUS", ready is not None and any(
            line.startswith("STATUS=generation 1") for line in ready.split("\n"))))
        sock = os.path.join(work, "vpcfwd.sock")
        second = subprocess.run(args[:-1] + [os.path.join(work, "second.sock")], env=env, capture_output=True,
                                text=True, timeout=30)
        results.append(("a second vpcfwd on the same namespace exits 1, naming the first",
                        second.returncode == 1 and "another vpcfwd enforces this namespace" in second.stderr))
        st = run(vpcfw, "status", "--running", "--socket", sock, "--json", check=False)
        results.append(("vpcfw status --running answers from the control socket with generation 1",
                        st.returncode == 0 and json.loads(st.stdout).get("generation") == 1))
        ex = run(vpcfw, "explain", "--running", "--socket", sock, "--from", "198.51.100.7", "--to", "h1", "--proto",
                 "tcp", "--port", "8080", check=False)
        # The config has one instance: the evaluator's answer about reaching it from the internet
        # (no public IP) shows the daemon evaluates the config in force, as explain does on the file.
        exf = run(vpcfw, "explain", cfg, "--from", "198.51.100.7", "--to", "h1", "--proto", "tcp", "--port", "8080",
                  check=False)
        results.append(("vpcfw explain --running answers as vpcfw explain does on the file in force",
                        ex.returncode == exf.returncode == 2 and "instance h1 has no public IP" in ex.stderr
                        and "instance h1 has no public IP" in exf.stderr))
        results.append(("enforced: 198.51.100.7 -> :80 allowed", probe(80)))
        results.append(("enforced: 198.51.100.7 -> :8080 blocked", not probe(8080)))

        # 3. An edit, renamed into place.
        t0 = time.monotonic()
        write(OPEN_8080)
        reloading = notify.wait("RELOADING=1")
        results.append(("a config edit sends RELOADING=1 with MONOTONIC_USEC", reloading is not None and any(
            line.startswith("MONOTONIC_USEC=") for line in reloading.split("\n"))))
        back = notify.wait("READY=1")
        saved_to_committed = time.monotonic() - t0
        results.append(("... then READY=1 again", back is not None))
        results.append(("the edit takes effect: :8080 now allowed", probe(8080)))
        print(f"file saved -> committed (debounce 30 ms): {saved_to_committed * 1000:.1f} ms")

        # 4. A burst of writes in place is one reload.
        before = logtext().count("config changed: reloading")
        for i in range(20):
            write(CONFIG if i % 2 else OPEN_8080, rename=False)
            time.sleep(0.002)
        write(CONFIG, rename=False)
        notify.wait("READY=1")
        time.sleep(0.2)
        bursts = logtext().count("config changed: reloading") - before
        results.append((f"21 writes in a burst cause one reload (saw {bursts})", bursts == 1))
        results.append(("... and the last write wins: :8080 blocked again", not probe(8080)))
        results.append(("... :80 still allowed", probe(80)))

        # 5. An invalid edit: rejected, located, old rules stay.
        write(INVALID)
        notify.wait("READY=1")
        time.sleep(0.05)
        text = logtext()
        results.append(("an invalid edit is logged with file:line:column", f"{cfg}:12:39: error:" in text))
        results.append(("... and the daemon says the old generation stays",
                        "stays in force" in text))
        status = [m for m in notify.messages if "STATUS=config invalid since" in m]
        results.append(("... STATUS says the config is invalid", bool(status)))
        results.append(("... the old rules stay: :80 allowed", probe(80)))
        results.append(("... and :8080 still blocked (the invalid config would have opened it)", not probe(8080)))
        results.append(("the daemon is still running after an invalid edit", daemon.poll() is None))

        # 5b. vpcfw reload: exit 1 and the located diagnostics for the invalid config.
        rl = run(vpcfw, "reload", "--socket", sock, check=False)
        results.append(("vpcfw reload of the invalid config exits 1 with file:line:column",
                        rl.returncode == 1 and f"{cfg}:12:39: error:" in rl.stderr))
        write(OPEN_8080)
        notify.wait("READY=1")
        rl = run(vpcfw, "reload", "--socket", sock, check=False)
        results.append(("vpcfw reload of a valid config exits 0", rl.returncode == 0))
        mt = run(vpcfw, "metrics", "--socket", sock, check=False)
        results.append(("vpcfw metrics prints the Prometheus text",
                        mt.returncode == 0 and "vpcfw_reloads_total{result=\"rejected\"}" in mt.stdout))

        # 6. SIGHUP reloads (back to a valid config written without an event: the watch sees it anyway,
        #    so wait for that reload first, then ask for another one by signal).
        time.sleep(0.2)
        notify.drain()
        daemon.send_signal(signal.SIGHUP)
        got = notify.wait("RELOADING=1")
        notify.wait("READY=1")
        deadline = time.monotonic() + 5
        while "SIGHUP: reloading" not in logtext() and time.monotonic() < deadline:
            time.sleep(0.02)
        results.append(("SIGHUP reloads", got is not None and "SIGHUP: reloading" in logtext()))
        results.append(("the valid config is back in force: :8080 allowed", probe(8080)))

        # 7. Drift: nft flush ruleset.
        repairs0 = logtext().count("drift repaired")
        latency = repaired_within(lambda: nft("flush", "ruleset"), lambda: table() is not None)
        results.append((f"nft flush ruleset is repaired ({latency * 1000:.0f} ms)" if latency else
                        "nft flush ruleset is repaired", latency is not None and latency < 1.0))
        if latency:
            print(f"drift repair after nft flush ruleset, as seen by polling nft: {latency * 1000:.1f} ms")
        results.append(("... the repaired rules filter: :80 allowed", probe(80)))
        results.append(("... :8080 allowed (the current config)", probe(8080)))
        results.append(("... the repair is logged", logtext().count("drift repaired") > repairs0))
        # flush ruleset removed the bystander table too; vpcfw must not bring it back.
        results.append(("... a foreign table removed by the flush is not recreated by vpcfw",
                        nft("list", "table", "inet", "bystander", check=False).returncode != 0))
        nft("add", "table", "inet", "bystander")
        nft("add", "chain", "inet", "bystander", "c")
        nft("add", "rule", "inet", "bystander", "c", "counter", "comment", '"mine"')

        # 8. A rule added by hand (accept everything first in the input chain).
        chains = [c["chain"]["name"] for c in json.loads(table())["nftables"] if "chain" in c]
        hook = "input" if "input" in chains else chains[0]

        def no_foreign_rule():
            t = table()
            return t is not None and "hand-made" not in t

        latency = repaired_within(
            lambda: nft("insert", "rule", "inet", "vpcfw", hook, "accept", "comment", '"hand-made"'), no_foreign_rule)
        results.append(("a hand-inserted accept rule is removed", latency is not None))

        # 9. A set element removed by hand.
        sets = [s["set"] for s in json.loads(table())["nftables"] if "set" in s]
        target = next(s for s in sets if s["name"] == "enis")
        count = len(target.get("elem", []))
        elem = target["elem"][0]

        def enis_complete():
            t = table()
            if t is None:
                return False
            for s in json.loads(t)["nftables"]:
                if "set" in s and s["set"]["name"] == "enis":
                    return len(s["set"].get("elem", [])) == count
            return False

        latency = repaired_within(
            lambda: nft("delete", "element", "inet", "vpcfw", "enis", "{", json.dumps(elem), "}"), enis_complete)
        results.append(("a set element deleted by hand is put back", latency is not None))

        # 10. The table deleted.
        latency = repaired_within(lambda: nft("delete", "table", "inet", "vpcfw"), lambda: table() is not None)
        results.append(("the deleted table is put back", latency is not None))
        results.append(("the bystander table and its rule were never touched",
                        '"mine"' in nft("list", "table", "inet", "bystander").stdout))

        # 11. Other tables change (the generation moves) between reloads: the next reload still commits.
        for i in range(5):
            nft("add", "chain", "inet", "bystander", f"c{i}")
        write(CONFIG)
        notify.wait("READY=1")
        time.sleep(0.05)
        results.append(("after other tables changed, a reload commits: :8080 blocked", not probe(8080)))
        results.append(("... :80 allowed", probe(80)))
        diff = run(vpcfw, "diff", cfg, "--host", "labhost", "--netns", host, check=False, )
        results.append(("vpcfw diff agrees the kernel holds the config", diff.returncode == 0))

        # 12. SIGTERM: exits 0, rules stay.
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=10)
        daemon = None
        results.append(("SIGTERM stops the daemon with status 0", code == 0))
        results.append(("... and the rules stay in force (:8080 still blocked)", table() is not None and not probe(8080)))
        results.append(("... :80 still allowed", probe(80)))
    finally:
        if daemon:
            daemon.kill()
            daemon.wait()
        if server:
            server.kill()
            server.wait()
        if notify:
            notify.close()
        for ns in (host, peer):
            subprocess.run([IP, "netns", "del", ns], capture_output=True)
        if os.environ.get("VPCFW_KEEP_LOG"):
            print(logtext())
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return report(results, "vpcfwd")


if __name__ == "__main__":
    sys.exit(main())
