#!/usr/bin/python3
"""Long-lived TCP flows whose every exchange the test sees, for the untracked
flow tests, run inside a lab namespace (`ip netns exec NS python3 echoflow.py ...`):

  server PORT [PORT...] SECONDS   echoes every byte back on each port, for SECONDS
  client SRC DST PORT             connects from SRC (port chosen by the kernel) and
                                  prints "connected SPORT" or "failed WHY"; then for
                                  each line read on stdin sends it and prints
                                  "echo ok" when it comes back within 1.5 s, else
                                  "echo lost" (the connection is kept either way)
"""
import select
import socket
import sys
import threading
import time


def serve(port, end):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    s.settimeout(0.2)
    while time.time() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        threading.Thread(target=echo, args=(c, end), daemon=True).start()


def echo(c, end):
    c.settimeout(0.2)
    while time.time() < end:
        try:
            d = c.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return
        if not d:
            return
        try:
            c.sendall(d)
        except OSError:
            return


def client(src, dst, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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
            if r:
                try:
                    d = s.recv(65536)
                except OSError:
                    break
                if not d:
                    break
                got += d
        print("echo ok" if got.endswith(msg) else "echo lost", flush=True)


if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "server":
        end = time.time() + float(a[-1])
        threads = [threading.Thread(target=serve, args=(int(p), end), daemon=True) for p in a[:-1]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif cmd == "client":
        client(a[0], a[1], int(a[2]))
    else:
        sys.exit(f"unknown command {cmd}")
