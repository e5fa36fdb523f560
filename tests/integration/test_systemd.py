#!/usr/bin/python3
"""vpcfwd under a real systemd: a throwaway nspawn container (nspawn.py) with
systemd as PID 1, the build installed the way `cmake --install --prefix /usr`
and the package's postinst do, and the shipped vpcfwd.service started with
`systemctl`. The container's own network namespace is the machine (host
mode, its hostname is the config's `host:`); its veth-h is the ENI and a
namespace made inside the container is the remote side, so real TCP
connections show what is enforced, and nothing leaves the container.

Harness (always): boot, systemctl, a trivial Type=notify unit, the install
(files in the container, none on this machine), group vpcfw, /run/vpcfw.
Daemon (when build/vpcfwd exists): READY only after the rules are in; an
edit takes effect; an invalid edit is rejected with file:line:column in
`journalctl -u vpcfwd` while the old rules stay; `nft flush ruleset` and a
hand-inserted rule are repaired; `systemctl reload` blocks until committed;
`systemctl stop` leaves the rules; the control socket refuses a non-member
and lets a member of group vpcfw read status. Every blocked probe has a
baseline that got through.

usage: test_systemd.py BUILD_DIR        (root; exit 77 = skipped, with the reason)"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import CLIENT, SERVER, daemon_configs  # noqa: E402
from netlab import report as _report  # noqa: E402
from nspawn import Container, Unavailable  # noqa: E402

CONFIG, OPEN_8080, INVALID = daemon_configs("HOST")
CFG = "/etc/vpcfw/vpcfw.yaml"
# Where the daemon must locate it: the last line, at the address.
WHERE = f"{CFG}:{INVALID.count(chr(10))}:{INVALID.splitlines()[-1].index('10.0.1.999') + 1}: error:"
SOCK = "/run/vpcfw/vpcfwd.sock"
SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One request on the control socket; prints the answer, or "refused: <errno>" when connect fails.
SOCK_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("refused:", e.errno); sys.exit(0)
s.sendall(sys.argv[2].encode() + b"\n")
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
print(data.decode("utf-8", "replace").strip() or "closed")
"""

TRIVIAL_UNIT = """[Unit]
Description=nspawn harness check: a notify service that says READY after writing a marker
[Service]
Type=notify
NotifyAccess=all
ExecStart=/bin/sh -c 'sleep 1; echo marker > /run/trivial-marker; systemd-notify --ready --status="trivial up"; echo trivial-started; exec sleep infinity'
"""


def report(results, label):
    for name, ok in results:
        if ok:
            print("ok  ", name)
    return _report(results, label)


def main():
    build = os.path.abspath(sys.argv[1])
    if os.environ.get("VPCFW_SANITIZED"):
        # The shipped unit's SystemCallFilter=@system-service has no ptrace,
        # which LeakSanitizer needs at exit: sanitizer builds fail there for
        # that reason alone. The normal build runs this test in full.
        print("skipped: sanitizer build (LeakSanitizer needs ptrace, which the unit's SystemCallFilter forbids)")
        return 77
    why = Container.available()
    if why:
        print(f"skipped: {why}")
        return 77
    results = []
    c = Container()
    server = None
    try:
        try:
            boot = c.start()
        except Unavailable as e:
            print(f"skipped: systemd-nspawn cannot run a container here: {e}")
            return 77
        print(f"container {c.name} booted in {boot:.2f} s (systemd is-system-running: running or degraded)")
        r = c.run("systemctl", "is-system-running", check=False)
        results.append((f"systemd is PID 1 in the container and has booted ({r.stdout.strip()})",
                        r.stdout.strip() in ("running", "degraded")
                        and c.run("readlink", "/proc/1/exe").stdout.strip().endswith("/systemd")))
        failed = c.run("systemctl", "--failed", "--no-legend", "--plain", check=False).stdout.strip()
        if failed:
            print("failed units in the container (not ours):", failed.replace("\n", "; "))
        hostname = c.run("hostname").stdout.strip()
        results.append((f"the container's hostname is its machine name ({hostname})", hostname == c.name))
        results.append(("the container has its own network namespace",
                        os.readlink(f"/proc/{c.leader}/ns/net") != os.readlink("/proc/self/ns/net")))

        # A trivial unit: start blocks until READY (the marker was written before it).
        c.write("/etc/systemd/system/vpcfwsd-trivial.service", TRIVIAL_UNIT)
        c.run("systemctl", "daemon-reload")
        t0 = time.monotonic()
        r = c.run("systemctl", "start", "vpcfwsd-trivial.service", check=False, timeout=30)
        took = time.monotonic() - t0
        results.append((f"a trivial Type=notify unit starts ({took:.2f} s, blocked until READY)",
                        r.returncode == 0 and took >= 0.9 and os.path.exists(c.root("/run/trivial-marker"))))
        results.append(("... its STATUS reaches systemd",
                        c.run("systemctl", "show", "-P", "StatusText", "vpcfwsd-trivial").stdout.strip() == "trivial up"))
        time.sleep(0.2)
        results.append(("... and its output is in journalctl -u",
                        "trivial-started" in c.journal("vpcfwsd-trivial.service")))
        c.run("systemctl", "stop", "vpcfwsd-trivial.service")

        # The install, as cmake --install + postinst.
        host_had_vpcfwd = os.path.exists("/usr/sbin/vpcfwd") or os.path.exists("/etc/vpcfw")
        files = c.install(build)
        print("installed:", ", ".join(f for f in files if "/doc/" not in f))
        for f in ("usr/bin/vpcfw", "lib/systemd/system/vpcfwd.service", "etc/vpcfw/vpcfw.yaml",
                  "usr/lib/sysusers.d/vpcfw.conf", "usr/lib/tmpfiles.d/vpcfw.conf"):
            results.append((f"installed in the container: /{f}", f in files and os.path.exists(c.root(f))))
        results.append(("nothing was installed on this machine (/usr/sbin/vpcfwd, /etc/vpcfw)",
                        host_had_vpcfwd or not (os.path.exists("/usr/sbin/vpcfwd") or os.path.exists("/etc/vpcfw"))))
        grp = c.run("getent", "group", "vpcfw", check=False).stdout.strip()
        results.append((f"systemd-sysusers made group vpcfw ({grp})", grp.startswith("vpcfw:")))
        st = os.stat(c.root("/run/vpcfw"))
        gid = int(grp.split(":")[2]) if grp else -1
        results.append((f"/run/vpcfw is 0750 root:vpcfw (mode {st.st_mode & 0o7777:o}, gid {st.st_gid})",
                        st.st_mode & 0o7777 == 0o750 and st.st_uid == 0 and st.st_gid == gid))
        show = c.run("systemctl", "show", "-P", "ExecStart", "vpcfwd.service").stdout
        results.append(("systemd loads vpcfwd.service with ExecStart=/usr/sbin/vpcfwd", "path=/usr/sbin/vpcfwd" in show))
        enabled = c.run("systemctl", "is-enabled", "vpcfwd.service", check=False).stdout.strip()
        results.append((f"the install neither enables nor starts vpcfwd ({enabled})",
                        enabled == "disabled" and c.run("systemctl", "is-active", "vpcfwd", check=False).returncode != 0))

        if "usr/sbin/vpcfwd" not in files:
            code = report(results, "systemd harness")
            if code:
                return code
            print("skipped: the harness works, but the build has no vpcfwd to test")
            return 77
        return daemon_tests(c, results, hostname)
    finally:
        if server:
            server.kill()
        c.stop()


def daemon_tests(c, results, hostname):
    try:
        return _daemon_tests(c, results, hostname)
    except BaseException:
        report(results, "vpcfwd under systemd (until the exception)")
        print(c.journal("vpcfwd.service")[-4000:])
        raise


def _daemon_tests(c, results, hostname):
    cfg = {k: v.replace("host: HOST", f"host: {hostname}") for k, v in
           (("valid", CONFIG), ("open", OPEN_8080), ("invalid", INVALID))}
    pending = []

    def nft(*args, check=True):
        return c.run("nft", *args, check=check)

    def table():
        r = nft("-j", "list", "table", "inet", "vpcfw", check=False)
        return r.stdout if r.returncode == 0 else None

    sport = [43000]

    def probe(port):
        sport[0] += 1
        r = c.run("ip", "netns", "exec", "peer", "/usr/bin/python3", "-c", CLIENT, "tcp", "10.0.1.10", str(port),
                  str(sport[0]), "0.6", "198.51.100.7", check=False)
        return r.stdout.startswith("ok")

    def until(check, timeout=3.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if check():
                return time.monotonic() - t0
            time.sleep(0.02)
        return None

    def active():
        return c.run("systemctl", "is-active", "vpcfwd", check=False).stdout.strip()

    def status_text():
        return c.run("systemctl", "show", "-P", "StatusText", "vpcfwd").stdout.strip()

    def ask(op, user=None, group=None, groups=None):
        return c.run("/usr/bin/python3", "-c", SOCK_CLIENT, SOCK, json.dumps({"v": 1, "op": op}),
                     user=user, group=group, groups=groups, check=False).stdout.strip()

    # The machine's network: veth-h (the ENI, 10.0.1.10) to a namespace "peer" made inside the container.
    c.run("ip", "link", "set", "lo", "up")
    c.run("ip", "netns", "add", "peer")
    c.run("ip", "-n", "peer", "link", "set", "lo", "up")
    c.run("ip", "link", "add", "veth-h", "type", "veth", "peer", "name", "veth-p")
    c.run("ip", "link", "set", "veth-p", "netns", "peer", "name", "eth0")
    c.run("ip", "addr", "add", "10.0.1.10/24", "dev", "veth-h")
    c.run("ip", "link", "set", "veth-h", "up")
    c.run("ip", "route", "add", "198.51.100.0/24", "via", "10.0.1.20")
    c.run("ip", "-n", "peer", "addr", "add", "10.0.1.20/24", "dev", "eth0")
    c.run("ip", "-n", "peer", "addr", "add", "198.51.100.7/32", "dev", "eth0")
    c.run("ip", "-n", "peer", "link", "set", "eth0", "up")
    server = c.popen("/usr/bin/python3", "-c", SERVER, "80,8080", "", stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        # The member of group vpcfw that reads status (its primary group is not vpcfw).
        c.run("useradd", "--no-create-home", "--no-user-group", "--gid", "users", "--groups", "vpcfw",
              "--shell", "/usr/sbin/nologin", "vpcfwsd-reader")

        results.append(("baseline without rules: 198.51.100.7 -> :8080 gets through", probe(8080)))
        results.append(("baseline without rules: 198.51.100.7 -> :80 gets through", probe(80)))
        results.append(("no vpcfw table before the start", table() is None))

        # A long debounce, so that an edit is committed by `systemctl reload` well before the
        # file watch would do it: that shows reload blocks until committed.
        c.write("/etc/systemd/system/vpcfwd.service.d/test.conf",
                "[Service]\nWatchdogSec=2s\nExecStart=\nExecStart=/usr/sbin/vpcfwd --debounce-ms 2500\n")
        c.run("systemctl", "daemon-reload")

        # 1. An invalid config at start: start fails, located error in the journal, kernel untouched.
        c.write(CFG, cfg["invalid"])
        r = c.run("systemctl", "start", "vpcfwd", check=False, timeout=60)
        time.sleep(0.3)
        j = c.journal("vpcfwd.service")
        if "is a directory, not a file" in j:
            # The unit's default --config is the directory /etc/vpcfw (the contract); a daemon
            # that reads only files gets the file named, so that the rest can be shown.
            pending.append("--config /etc/vpcfw (a directory, the unit's default): the daemon reads only a file")
            c.write("/etc/systemd/system/vpcfwd.service.d/test.conf",
                    f"[Service]\nWatchdogSec=2s\nExecStart=\nExecStart=/usr/sbin/vpcfwd --debounce-ms 2500 --config {CFG}\n")
            c.run("systemctl", "daemon-reload")
            c.run("systemctl", "reset-failed", "vpcfwd", check=False)
            cursor = c.journal_cursor()
            r = c.run("systemctl", "start", "vpcfwd", check=False, timeout=60)
            time.sleep(0.3)
            j = c.journal("vpcfwd.service", cursor)
        results.append(("systemctl start with an invalid config fails", r.returncode != 0))
        results.append(("... with file:line:column in journalctl -u vpcfwd", WHERE in j))
        results.append(("... and no vpcfw table in the kernel", table() is None))
        c.run("systemctl", "reset-failed", "vpcfwd", check=False)
        c.run("systemctl", "stop", "vpcfwd", check=False)

        # 2. Start: returns only after READY, and READY only after the rules are in.
        c.write(CFG, cfg["valid"])
        r = c.run("systemctl", "start", "vpcfwd", check=False, timeout=120)
        in_kernel = table() is not None
        started = time.monotonic()
        results.append(("systemctl start vpcfwd succeeds", r.returncode == 0))
        if r.returncode != 0:
            print(c.journal("vpcfwd.service")[-3000:])
        results.append(("... and the table is in the kernel the moment start returns", in_kernel))
        results.append((f"... active with a STATUS line ({status_text()!r})", active() == "active" and bool(status_text())))
        results.append(("enforced: :80 allowed", probe(80)))
        results.append(("enforced: :8080 blocked", not probe(8080)))

        # 3. An edit takes effect (file watch).
        c.write(CFG, cfg["open"])
        took = until(lambda: probe(8080), timeout=8.0)
        results.append((f"a config edit takes effect: :8080 allowed ({took and round(took, 2)} s)", took is not None))

        # 4. An invalid edit: rejected with the located error, old rules stay, daemon stays up.
        cursor = c.journal_cursor()
        c.write(CFG, cfg["invalid"])
        located = until(lambda: WHERE in c.journal("vpcfwd.service", cursor), timeout=8.0)
        results.append(("an invalid edit: file:line:column in journalctl -u vpcfwd", located is not None))
        results.append((f"... STATUS says so ({status_text()!r})", "invalid" in status_text()))
        results.append(("... the old rules stay: :8080 allowed, :80 allowed", probe(8080) and probe(80)))
        results.append(("... the daemon is still active", active() == "active"))

        # 5. systemctl reload blocks until committed: the edit is in force when it returns,
        #    well before the 2.5 s debounce of the file watch.
        # (`vpcfw reload --help` prints the top-level help when there is no such subcommand.)
        reload_cli = any(line.split()[:1] == ["reload"] for line in c.run("vpcfw", "--help", check=False).stdout.splitlines())
        c.write(CFG, cfg["valid"])
        t0 = time.monotonic()
        r = c.run("systemctl", "reload", "vpcfwd", check=False, timeout=60)
        took = time.monotonic() - t0
        closed = not probe(8080)
        if reload_cli:
            results.append((f"systemctl reload returns 0 ({took:.2f} s)", r.returncode == 0))
            results.append(("... with the edit already in force: :8080 blocked", closed and took < 2.0))
            results.append(("... :80 allowed", probe(80)))
            c.write(CFG, cfg["invalid"])
            r = c.run("systemctl", "reload", "vpcfwd", check=False, timeout=60)
            results.append(("systemctl reload of an invalid config fails", r.returncode != 0))
            results.append(("... and the old rules stay (:8080 blocked, :80 allowed)", not probe(8080) and probe(80)))
            c.write(CFG, cfg["valid"])
            c.run("systemctl", "reload", "vpcfwd", check=False, timeout=60)
        else:
            pending.append("systemctl reload (ExecReload=vpcfw reload): the CLI has no `reload` yet")
            until(lambda: not probe(8080), timeout=6.0)
        results.append(("the valid config is in force: :8080 blocked", not probe(8080)))

        # 6. Drift: nft flush ruleset, then a hand-inserted accept rule.
        nft("flush", "ruleset")
        took = until(lambda: table() is not None, timeout=3.0)
        results.append((f"nft flush ruleset is repaired ({took and round(took * 1000)} ms)", took is not None and took < 1.0))
        results.append(("... and enforces again: :8080 blocked, :80 allowed", not probe(8080) and probe(80)))
        chains = [x["chain"]["name"] for x in json.loads(table())["nftables"] if "chain" in x]
        hook = "input" if "input" in chains else chains[0]
        nft("insert", "rule", "inet", "vpcfw", hook, "accept", "comment", '"hand-made"')
        took = until(lambda: (t := table()) is not None and "hand-made" not in t, timeout=3.0)
        results.append((f"a hand-inserted accept rule is removed ({took and round(took * 1000)} ms)", took is not None))
        results.append(("... :8080 still blocked", not probe(8080)))
        j = c.journal("vpcfwd.service")
        results.append(("the repairs are in the journal", "drift repaired" in j))

        # 7. The control socket: a member reads status; a non-member is refused (by the file
        #    modes, and by the daemon's own peer check when the modes are opened up).
        have_socket = os.path.exists(c.root(SOCK))
        if have_socket:
            st = os.stat(c.root(SOCK))
            results.append((f"the socket is 0660 root:vpcfw (mode {st.st_mode & 0o777:o})", st.st_mode & 0o777 == 0o660))
            root_answer = ask("status")
            results.append(("root reads status", '"ok":true' in root_answer.replace(" ", "")))
            member = ask("status", user="vpcfwsd-reader", group="users", groups="vpcfw")
            results.append((f"a member of group vpcfw reads status ({member[:80]})", '"ok":true' in member.replace(" ", "")))
            member_reload = ask("reload", user="vpcfwsd-reader", group="users", groups="vpcfw")
            results.append(("... but may not reload", '"ok":false' in member_reload.replace(" ", "")))
            nobody = ask("status", user="nobody", group="nogroup")
            results.append((f"nobody is refused ({nobody[:60]})", '"ok":true' not in nobody.replace(" ", "")))
            # The second wall: with the modes opened, the daemon itself refuses the non-member.
            c.run("chmod", "0755", "/run/vpcfw")
            c.run("chmod", "0666", SOCK)
            try:
                nobody = ask("status", user="nobody", group="nogroup")
                results.append((f"... also by the daemon's peer check when the modes are open ({nobody[:80]})",
                                nobody.startswith("{") and '"ok":false' in nobody.replace(" ", "")))
                forged = ask("status", user="nobody", group="users")
                results.append(("... and a non-member whose primary group is another one is refused",
                                '"ok":false' in forged.replace(" ", "") or forged.startswith("refused")))
            finally:
                c.run("chmod", "0750", "/run/vpcfw")
                c.run("chmod", "0660", SOCK)
        else:
            pending.append(f"the control socket: the daemon did not create {SOCK} yet")
            results.append(("nobody cannot reach /run/vpcfw at all (0750 root:vpcfw)",
                            ask("status", user="nobody", group="nogroup").startswith("refused")))

        # The watchdog (shortened to 2 s by the drop-in) was fed the whole time: no restart.
        # (At least three of its periods must have passed for that to mean something.)
        time.sleep(max(0.0, 6.5 - (time.monotonic() - started)))
        up = time.monotonic() - started
        restarts = c.run("systemctl", "show", "-P", "NRestarts", "vpcfwd").stdout.strip()
        results.append((f"the watchdog (2 s) never fired in {up:.0f} s up: NRestarts={restarts}",
                        up > 6 and restarts == "0" and "watchdog timeout" not in c.journal("vpcfwd.service").lower()))

        # 8. systemctl stop leaves the rules in force.
        r = c.run("systemctl", "stop", "vpcfwd", check=False, timeout=60)
        results.append(("systemctl stop vpcfwd succeeds", r.returncode == 0 and active() in ("inactive", "unknown")))
        results.append(("... and the rules stay: the table is there, :8080 blocked", table() is not None and not probe(8080)))
        results.append(("... :80 allowed", probe(80)))
        results.append(("... /run/vpcfw survives the stop (RuntimeDirectoryPreserve)", os.path.isdir(c.root("/run/vpcfw"))))

        # 9. Lab mode: vpcfwd-lab.service builds the config's lab (it stops vpcfwd.service:
        #    they conflict). Its namespaces' /run/netns mounts must reach PID 1's mount
        #    namespace (no mount sandboxing in this unit), where vpcfw probe and ip netns look.
        with open(os.path.join(SOURCE_DIR, "config/examples/two-tier.yaml")) as f:
            c.write(CFG, f.read())
        config_flag = f" --config {CFG}" if any(p.startswith("--config") for p in pending) else ""
        c.write("/etc/systemd/system/vpcfwd-lab.service.d/test.conf",
                f"[Service]\nExecStart=\nExecStart=/usr/sbin/vpcfwd --lab{config_flag}\n"
                f"Environment=VPCFW_LAB_INTERNET={c.name}-inet\n")
        c.run("systemctl", "daemon-reload")
        r = c.run("systemctl", "start", "vpcfwd-lab", check=False, timeout=180)
        results.append(("systemctl start vpcfwd-lab succeeds", r.returncode == 0))
        if r.returncode != 0:
            print(c.journal("vpcfwd-lab.service")[-3000:])
        results.append(("... with a STATUS line", bool(c.run("systemctl", "show", "-P", "StatusText",
                                                             "vpcfwd-lab").stdout.strip())))
        r = c.run("ip", "netns", "exec", "vpcfw:i:web1", "true", check=False)
        results.append(("the lab's namespaces are mounted where the host sees them (ip netns exec)", r.returncode == 0))
        reach = c.run("vpcfw", "probe", CFG, "--from", "web1", "--to", "db1", "--proto", "tcp", "--port", "5432",
                      check=False, timeout=60)
        results.append((f"vpcfw probe through the daemon's lab: web1 -> db1:5432 reached (rc {reach.returncode})",
                        reach.returncode == 0))
        blocked = c.run("vpcfw", "probe", CFG, "--from", "web1", "--to", "db1", "--proto", "tcp", "--port", "22",
                        check=False, timeout=60)
        results.append((f"... web1 -> db1:22 blocked by web-acl (rc {blocked.returncode})", blocked.returncode == 1))
        results.append(("starting the lab unit stopped vpcfwd.service (they conflict)", active() != "active"))
        c.run("systemctl", "stop", "vpcfwd-lab", check=False, timeout=60)
    finally:
        server.kill()
        server.wait()
    code = report(results, "vpcfwd under systemd")
    for p in pending:
        print("not yet testable:", p)
    if code == 0 and pending:
        print("skipped: every check that could run passed; pending: " + "; ".join(pending))
        return 77
    return code


if __name__ == "__main__":
    sys.exit(main())
