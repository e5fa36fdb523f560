#!/usr/bin/python3
"""Reload under load: vpcfwd (host mode, --netns) reloads 1,000 times,
alternating two configs, while traffic runs without pause from a remote
namespace to the host's ENI:

- an established TCP connection to :80 (both configs allow it) echoes a
  message every few milliseconds: no echo may go missing (no flow cut);
- new TCP connections to :8080 and UDP datagrams to :9999 (both configs
  deny them): none may get through, counted at the server;
- baselines in the same run: UDP to :5000 (both allow) is answered, and new
  connections to :81 (allowed by the first config only) both succeed and
  fail, so the harness demonstrably sees passes, drops and both configs.

usage: test_daemon_load.py VPCFWD [RELOADS]       (root; exit 77 = skipped)"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import host_and_peer, IP, Notifications, report, run  # noqa: E402

BASE = """
vpcs: [{{name: v, cidr: 10.0.0.0/16}}]
subnets: [{{name: s, vpc: v, cidr: 10.0.1.0/24}}]
security_groups:
  - name: web
    vpc: v
    ingress:
      - {{protocol: tcp, ports: 80, cidr: 198.51.100.0/24}}
      - {{protocol: udp, ports: 5000, cidr: 198.51.100.0/24}}
      - {{protocol: tcp, ports: {extra}, cidr: 198.51.100.0/24}}
instances:
  - {{name: h1, subnet: s, private_ip: 10.0.1.10, host: labhost, interface: veth-h, security_groups: [web]}}
"""
CONFIGS = [BASE.format(extra=81), BASE.format(extra=82)]

SERVER = r"""
import socket, sys, threading
counts = {"udp9999": 0}
def echo80():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 80)); s.listen(16)
    while True:
        c, _ = s.accept()
        def serve(c=c):
            while True:
                d = c.recv(4096)
                if not d: break
                c.sendall(d)
        threading.Thread(target=serve, daemon=True).start()
def acceptor(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(256)
    while True:
        c, _ = s.accept(); c.close()
def udp_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5000))
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
def udp_count():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999))
    while True:
        s.recvfrom(2048); counts["udp9999"] += 1
for f, a in [(echo80, ()), (acceptor, (81,)), (acceptor, (82,)), (acceptor, (8080,)), (udp_echo, ()), (udp_count, ())]:
    threading.Thread(target=f, args=a, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
print(counts["udp9999"], flush=True)
"""

LOAD = r"""
import json, os, socket, sys, threading, time
dst, stop = "10.0.1.10", sys.argv[1]
st = {"echo_ok": 0, "echo_lost": 0, "c8080_tries": 0, "c8080_ok": 0, "c81_ok": 0, "c81_fail": 0,
      "udp9999_sent": 0, "udp5000_sent": 0, "udp5000_answered": 0, "errors": []}
def running(): return not os.path.exists(stop)
def established():
    c = socket.create_connection((dst, 80), timeout=2, source_address=("198.51.100.7", 0))
    c.settimeout(1.0)
    n = 0
    while running():
        n += 1
        msg = b"%08d" % n
        try:
            c.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = c.recv(len(msg) - len(got))
                if not d: raise ConnectionError("closed")
                got += d
            st["echo_ok" if got == msg else "echo_lost"] += 1
        except Exception as e:
            st["echo_lost"] += 1; st["errors"].append("echo: %r" % e); break
        time.sleep(0.003)
def connects(port, ok, fail):
    while running():
        s = socket.socket(); s.settimeout(0.15); s.bind(("198.51.100.7", 0))
        if port == 8080: st["c8080_tries"] += 1
        try:
            s.connect((dst, port)); st[ok] += 1
        except Exception:
            if fail: st[fail] += 1
        finally:
            s.close()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("198.51.100.7", 0)); s.setblocking(False)
    while running():
        s.sendto(b"x", (dst, 9999)); st["udp9999_sent"] += 1
        s.sendto(b"y", (dst, 5000)); st["udp5000_sent"] += 1
        time.sleep(0.001)
        while True:
            try:
                s.recvfrom(64); st["udp5000_answered"] += 1
            except BlockingIOError:
                break
ts = [threading.Thread(target=established), threading.Thread(target=connects, args=(8080, "c8080_ok", None)),
      threading.Thread(target=connects, args=(81, "c81_ok", "c81_fail")), threading.Thread(target=udp)]
for t in ts: t.start()
print("ready", flush=True)
for t in ts: t.join()
print(json.dumps(st), flush=True)
"""


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfwd = sys.argv[1]
    reloads = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    tag = f"vl{os.getpid() % 100000}"
    host, peer = f"{tag}-host", f"{tag}-peer"
    work = tempfile.mkdtemp(prefix=f"{tag}-")
    os.chmod(work, 0o700)
    cfg = os.path.join(work, "vpcfw.yaml")
    rundir = os.path.join(work, "run")
    os.mkdir(rundir, 0o700)
    stop = os.path.join(work, "stop")
    notify_path = os.path.join(work, "notify")
    env = dict(os.environ, VPCFW_RUN_DIR=rundir, NOTIFY_SOCKET=notify_path)
    server = load = daemon = None
    notify = Notifications(notify_path)
    log = open(os.path.join(work, "log"), "w")
    results = []

    def write(text):
        tmp = cfg + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, cfg)

    def wait_ready(timeout=10.0):
        return notify.wait("READY=1", timeout)

    try:
        host_and_peer(tag, host, peer)
        server = subprocess.Popen([IP, "netns", "exec", host, "/usr/bin/python3", "-c", SERVER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"

        write(CONFIGS[0])
        daemon = subprocess.Popen([vpcfwd, "--config", cfg, "--host", "labhost", "--netns", host, "--debounce-ms", "0",
                                   "--control-socket", os.path.join(work, "vpcfwd.sock")],
                                  env=env, stdout=log, stderr=log)
        if wait_ready() is None:
            results.append(("the daemon started", False))
            return report(results, "vpcfwd under load")
        load = subprocess.Popen([IP, "netns", "exec", peer, "/usr/bin/python3", "-c", LOAD, stop],
                                stdout=subprocess.PIPE, text=True)
        assert load.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        t0 = time.monotonic()
        missed = 0
        for i in range(reloads):
            write(CONFIGS[(i + 1) % 2])
            if wait_ready() is None:
                missed += 1
        seconds = time.monotonic() - t0
        time.sleep(0.3)
        open(stop, "w").close()
        stats = json.loads(load.stdout.readline())
        load.wait(timeout=10)
        load = None
        server.stdin.write("\n")
        server.stdin.flush()
        udp9999 = int(server.stdout.readline())
        print(f"{reloads} reloads in {seconds:.1f} s ({seconds / reloads * 1000:.1f} ms each, file written -> READY)")
        print("traffic:", json.dumps(stats))
        print(f"udp :9999 datagrams that reached the server: {udp9999}")
        results.append((f"every one of {reloads} reloads reported READY (missed {missed})", missed == 0))
        results.append((f"the daemon is still running", daemon.poll() is None))
        results.append((f"no echo on the established :80 connection lost "
                        f"({stats['echo_ok']} echoed, {stats['echo_lost']} lost {stats['errors'][:2]})",
                        stats["echo_lost"] == 0 and stats["echo_ok"] > 100))
        results.append((f"no new connection to :8080 got through ({stats['c8080_ok']} of {stats['c8080_tries']})",
                        stats["c8080_ok"] == 0 and stats["c8080_tries"] > 10))
        results.append((f"no udp datagram to :9999 reached the server ({udp9999} of {stats['udp9999_sent']})",
                        udp9999 == 0 and stats["udp9999_sent"] > 100))
        results.append((f"baseline: udp :5000 (allowed by both) answered ({stats['udp5000_answered']} of "
                        f"{stats['udp5000_sent']})", stats["udp5000_answered"] > 100))
        results.append((f"baseline: :81 (first config only) both connected ({stats['c81_ok']}) and failed "
                        f"({stats['c81_fail']})", stats["c81_ok"] > 0 and stats["c81_fail"] > 0))
    finally:
        open(stop, "w").close()
        for p in (load, server, daemon):
            if p:
                p.kill()
                p.wait()
        notify.close()
        for ns in (host, peer):
            subprocess.run([IP, "netns", "del", ns], capture_output=True)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return report(results, "vpcfwd under load")


if __name__ == "__main__":
    sys.exit(main())
