#!/usr/bin/python3
"""Traffic with exactly known packets and bytes (the flow-log tests) and long-lived
flows (the untracked-flow tests), run inside a lab namespace (`ip netns exec NS python3 flowtraffic.py ...`).
The servers print "listening" once every port is bound; callers wait for that line.

  ping SRC DST N            N ICMP echo requests of 84 bytes; prints "replies R"
  udp-server PORT SECONDS   echoes every datagram back for SECONDS
  udp SRC SPORT DST PORT N SIZE GAP
                            N datagrams of SIZE payload bytes, GAP s apart,
                            from SRC:SPORT; prints "echoes E"
  tcp-server PORT SECONDS   accepts, reads to EOF, closes
  tcp SRC DST PORT BYTES TIMEOUT
                            connects, sends BYTES, closes; prints "connected" or "refused/timeout"
  echo-server PORT [PORT...] SECONDS
                            echoes every byte back on each TCP port, for SECONDS
  pinger SRC DST            an ICMP echo flow with one identifier: each line on
                            stdin sends one request; prints "reply ok" or "reply lost"
  echo-client SRC DST PORT  a long-lived TCP flow: connects from SRC, prints
                            "connected SPORT" or "failed WHY"; then for each line
                            read on stdin sends it and prints "echo ok" when it
                            comes back within 1.5 s, else "echo lost" (the
                            connection is kept either way)
  push-server PORT [PORT...] SECONDS
                            UDP: once a client has sent a datagram to a port,
                            sends it one every 0.1 s from that port (a server
                            that streams to its client)
  push-client SRC DST PORT  UDP from SRC (one port for the flow's life): sends
                            a datagram at start and on each "hello" line; on
                            each "count" line prints "pushes N", the datagrams
                            that arrive in the next 1.5 s
"""
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    t = (t >> 16) + (t & 0xFFFF)
    t += t >> 16
    return ~t & 0xFFFF


def ping(src, dst, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.bind((src, 0))
    s.settimeout(0.3)
    ident, got = os.getpid() & 0xFFFF, 0
    for seq in range(n):
        payload = b"v" * 56
        h = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        s.sendto(struct.pack("!BBHHH", 8, 0, checksum(h + payload), ident, seq) + payload, (dst, 0))
        deadline = time.time() + 0.3
        while time.time() < deadline:
            try:
                d, _ = s.recvfrom(2048)
            except socket.timeout:
                break
            if d[20] == 0 and struct.unpack("!H", d[24:26])[0] == ident:
                got += 1
                break
    print(f"replies {got}")


def pinger(src, dst):
    """One ICMP echo "flow": a fixed identifier; each line on stdin sends the next
    sequence number and prints "reply ok" or "reply lost" (1.5 s)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.bind((src, 0))
    ident = os.getpid() & 0xFFFF
    print("ready", flush=True)
    for seq, _ in enumerate(sys.stdin):
        payload = b"p" * 56
        h = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        s.sendto(struct.pack("!BBHHH", 8, 0, checksum(h + payload), ident, seq) + payload, (dst, 0))
        ok, deadline = False, time.time() + 1.5
        while not ok and time.time() < deadline:
            r, _, _ = select.select([s], [], [], max(0.0, deadline - time.time()))
            if r:
                d = s.recv(2048)
                ok = d[20] == 0 and struct.unpack("!HH", d[24:28]) == (ident, seq)
        print("reply ok" if ok else "reply lost", flush=True)


def udp_server(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.2)
    listening()
    end = time.time() + seconds
    while time.time() < end:
        try:
            d, a = s.recvfrom(65535)
            s.sendto(d, a)
        except socket.timeout:
            pass


def udp(src, sport, dst, port, n, size, gap):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, sport))
    s.settimeout(0.5)
    got = 0
    for _ in range(n):
        s.sendto(b"u" * size, (dst, port))
        try:
            s.recvfrom(65535)
            got += 1
        except socket.timeout:
            pass
        time.sleep(gap)
    print(f"echoes {got}")


def listener(port):
    # IPv6 and IPv4 (mapped) on one socket; IPv4 alone where the namespace has no IPv6.
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
    except OSError:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
    s.listen(16)
    s.settimeout(0.2)
    return s


def listening():
    # The caller waits for this line: a connection made before it could be refused.
    print("listening", flush=True)


def accept_until(s, end, handle):
    """Accepts TCP connections on the listening socket `s` until `end`, each handed to `handle`."""
    while time.time() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        handle(c)


def drain(c):
    c.settimeout(2)
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass
    c.close()


def tcp_server(port, seconds):
    s = listener(port)
    listening()
    accept_until(s, time.time() + seconds, drain)


def echo_server(ports, seconds):
    end = time.time() + seconds

    def echo(c):
        c.settimeout(0.2)
        while time.time() < end:
            try:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)
            except socket.timeout:
                continue
            except OSError:
                return

    def serve(s):
        accept_until(s, end, lambda c: threading.Thread(target=echo, args=(c,), daemon=True).start())

    threads = [threading.Thread(target=serve, args=(listener(p),), daemon=True) for p in ports]
    listening()
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def echo_client(src, dst, port):
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(3)
    try:
        s.connect((dst, port))
    except OSError as e:
        print(f"failed {e}", flush=True)
        return
    print(f"connected {s.getsockname()[1]}", flush=True)
    s.setblocking(False)
    for line in sys.stdin:
        msg = line.strip().encode() + b"\n"
        try:
            s.send(msg)
        except OSError:
            pass
        got, deadline = b"", time.time() + 1.5
        while not got.endswith(msg) and time.time() < deadline:
            r, _, _ = select.select([s], [], [], max(0.0, deadline - time.time()))
            if not r:
                continue
            try:
                d = s.recv(65536)
            except OSError:
                break
            if not d:
                break
            got += d
        print("echo ok" if got.endswith(msg) else "echo lost", flush=True)


def tcp(src, dst, port, nbytes, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    try:
        s.connect((dst, port))
    except socket.timeout:
        print("timeout")
        return
    except OSError as e:
        print(f"refused {e}")
        return
    s.sendall(b"t" * nbytes)
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
    print("connected")


def push_server(ports, seconds):
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        s.setblocking(False)
        socks.append(s)
    print("listening", flush=True)
    clients = {}  # socket -> the client's address
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select(socks, [], [], 0.1)
        for s in ready:
            try:
                _, addr = s.recvfrom(2048)
                clients[s] = addr
            except OSError:
                pass
        for s, addr in clients.items():
            try:
                s.sendto(b"push", addr)
            except OSError:  # a failed send is one push fewer: the client counts what arrives
                pass


def push_client(src, dst, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.sendto(b"hello", (dst, port))
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "hello":
            s.sendto(b"hello", (dst, port))
            print("sent", flush=True)
            continue
        s.setblocking(False)
        try:
            while True:
                s.recv(2048)  # what came before the window does not count
        except BlockingIOError:
            pass
        n, end = 0, time.time() + 1.5
        while (left := end - time.time()) > 0:
            if select.select([s], [], [], left)[0]:
                s.recv(2048)
                n += 1
        print(f"pushes {n}", flush=True)


# ---- the caller's side (imported by the tests) ----

from netlab import IP  # noqa: E402  (beside this file: the import works when it runs as a script too)


class EchoFlow:
    """An echo-client in namespace `ns`: one long-lived TCP flow."""

    def __init__(self, ns, src, dst, port):
        self.p = subprocess.Popen([IP, "netns", "exec", ns, "python3", os.path.abspath(__file__), "echo-client", src,
                                   dst, str(port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.first = self.p.stdout.readline().strip()
        self.sport = int(self.first.split()[-1]) if self.first.startswith("connected") else None

    def exchange(self, n):
        """ "echo ok", "echo lost" or "client gone"."""
        if self.p.poll() is not None:
            return "client gone"
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Pinger:
    """A pinger in namespace `ns`: one ICMP echo flow (one identifier)."""

    def __init__(self, ns, src, dst):
        self.p = subprocess.Popen([IP, "netns", "exec", ns, "python3", os.path.abspath(__file__), "pinger", src, dst],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"pinger in {ns} did not start")

    def ping(self):
        self.p.stdin.write("\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        self.p.kill()
        self.p.wait()


class PushFlow:
    """A push-client in namespace `ns`: one UDP flow its server streams on."""

    def __init__(self, ns, src, dst, port):
        self.p = subprocess.Popen([IP, "netns", "exec", ns, "python3", os.path.abspath(__file__), "push-client", src,
                                   dst, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"push-client in {ns} did not start")

    def say(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def pushes(self):
        """How many of the server's datagrams arrive in 1.5 s."""
        return int(self.say("count").split()[-1])

    def close(self):
        self.p.kill()
        self.p.wait()


def start_server(ns, mode, ports, seconds):
    """An echo-server or push-server in namespace `ns`, returned once every port listens."""
    p = subprocess.Popen([IP, "netns", "exec", ns, "python3", os.path.abspath(__file__), mode,
                          *map(str, ports), str(seconds)], stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "listening":
        p.kill()
        p.wait()
        raise RuntimeError(f"{mode} in {ns} did not start")
    return p


def start_echo_server(ns, ports, seconds):
    """An echo-server in namespace `ns`, returned once every port listens."""
    return start_server(ns, "echo-server", ports, seconds)


if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "ping":
        ping(a[0], a[1], int(a[2]))
    elif cmd == "udp-server":
        udp_server(int(a[0]), float(a[1]))
    elif cmd == "udp":
        udp(a[0], int(a[1]), a[2], int(a[3]), int(a[4]), int(a[5]), float(a[6]))
    elif cmd == "tcp-server":
        tcp_server(int(a[0]), float(a[1]))
    elif cmd == "tcp":
        tcp(a[0], a[1], int(a[2]), int(a[3]), float(a[4]))
    elif cmd == "echo-server":
        echo_server([int(p) for p in a[:-1]], float(a[-1]))
    elif cmd == "echo-client":
        echo_client(a[0], a[1], int(a[2]))
    elif cmd == "pinger":
        pinger(a[0], a[1])
    elif cmd == "push-server":
        push_server([int(p) for p in a[:-1]], float(a[-1]))
    elif cmd == "push-client":
        push_client(a[0], a[1], int(a[2]))
    else:
        sys.exit(f"unknown command {cmd}")
