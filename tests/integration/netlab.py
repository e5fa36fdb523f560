"""A small hand-built namespace topology for kernel tests: one fabric (router)
namespace per VPC and one namespace per instance, wired as vpcfw's lab wires
them (docs/ruleset.md), so that compiled rulesets can be checked with real
packets. Everything is created under a unique prefix and always removed.

This is test scaffolding: it runs `ip`; the product's lab uses netlink."""
import atexit
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
NFT = "/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else "nft"

# TCP and UDP servers, IPv4 and IPv6: argv TCP-PORTS UDP-PORTS [hold]
# (comma-separated). A TCP connection is closed once accepted, or with
# "hold" kept open, so that its flow stays in conntrack as long as the test
# wants. UDP echoes.
SERVER = r"""
import socket, sys, threading
hold = len(sys.argv) > 3 and sys.argv[3] == "hold"
held = []
def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        held.append(c) if hold else c.close()
def udp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        data, addr = s.recvfrom(2048); s.sendto(data, addr)
for p in sys.argv[1].split(","):
    if p: threading.Thread(target=tcp, args=(int(p),), daemon=True).start()
for p in sys.argv[2].split(","):
    if p: threading.Thread(target=udp, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# A TCP connection (to SERVER with "hold", say), from an optional source address, held until
# stdin closes: prints "connected" or "failed".
HOLD_CLIENT = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3,
                                 source_address=(sys.argv[3], 0) if len(sys.argv) > 3 and sys.argv[3] else None)
    print("connected", flush=True)
except Exception:
    print("failed", flush=True)
sys.stdin.read()
"""

CLIENT = r"""
import os, socket, struct, sys, time
proto, dst, port, sport, timeout, src = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET

def checksum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def echo():
    # An ICMP / ICMPv6 echo request on a raw socket; success = the matching reply.
    v6 = fam == socket.AF_INET6
    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    if src: s.bind((src, 0))
    ident = os.getpid() & 0xffff
    req_type, rep_type = (128, 129) if v6 else (8, 0)
    hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, 1) + b"vpcfw-probe"
    if not v6: hdr = hdr[:2] + struct.pack("!H", checksum(hdr)) + hdr[4:]
    s.sendto(hdr, (dst, 0))
    deadline = time.time() + timeout
    while time.time() < deadline:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            data, _ = s.recvfrom(2048)
        except socket.timeout:
            break
        off = 0 if v6 else (data[0] & 0x0f) * 4
        t, _, _, i, _ = struct.unpack("!BBHHH", data[off:off + 8])
        if t == rep_type and i == ident:
            return True
    return False

if proto in ("icmp", "icmpv6"):
    print("ok" if echo() else "fail")
    sys.exit(0)
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(fam, kind); s.settimeout(timeout)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((src or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), sport))
try:
    if proto == "tcp":
        s.connect((dst, port))
    else:
        s.sendto(b"vpcfw-probe", (dst, port)); s.recvfrom(2048)
    print("ok")
except OSError as e:
    print("fail", e)
"""


def host_and_peer(tag, host, peer):
    """Host mode's test topology: namespace `host` whose veth-h (10.0.1.10/24) is
    the ENI, and `peer` on the other end (eth0: 10.0.1.20/24 in the subnet and
    198.51.100.7/32 outside it, routed back by the host). The caller removes
    both namespaces."""
    for ns in (host, peer):
        run(IP, "netns", "add", ns)
        run(IP, "-n", ns, "link", "set", "lo", "up")
    run(IP, "link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
    run(IP, "link", "set", f"{tag}a", "netns", host, "name", "veth-h")
    run(IP, "link", "set", f"{tag}b", "netns", peer, "name", "eth0")
    run(IP, "-n", host, "addr", "add", "10.0.1.10/24", "dev", "veth-h")
    run(IP, "-n", host, "link", "set", "veth-h", "up")
    run(IP, "-n", host, "route", "add", "198.51.100.0/24", "via", "10.0.1.20")
    run(IP, "-n", peer, "addr", "add", "10.0.1.20/24", "dev", "eth0")
    run(IP, "-n", peer, "addr", "add", "198.51.100.7/32", "dev", "eth0")
    run(IP, "-n", peer, "link", "set", "eth0", "up")


def daemon_configs(host):
    """The daemon tests' configs for an instance on `host`'s interface veth-h: a group open on tcp/80
    from 198.51.100.0/24; the same also open on 8080; and that with an invalid instance (the bad
    address is the last line's) that would open 8080 if it were taken."""
    valid = f"""# vpcfwd test config
vpcs: [{{name: v, cidr: 10.0.0.0/16}}]
subnets: [{{name: s, vpc: v, cidr: 10.0.1.0/24}}]
security_groups:
  - name: web
    vpc: v
    ingress:
      - {{protocol: tcp, ports: 80, cidr: 198.51.100.0/24}}
instances:
  - {{name: h1, subnet: s, private_ip: 10.0.1.10, host: {host}, interface: veth-h, security_groups: [web]}}
"""
    rule = "      - {protocol: tcp, ports: 80, cidr: 198.51.100.0/24}\n"
    opened = valid.replace(rule, rule + rule.replace("ports: 80,", "ports: 8080,"))
    return valid, opened, opened + "  - {name: h2, subnet: s, private_ip: 10.0.1.999}\n"


class Notifications:
    """The daemon's sd_notify messages, read from our own datagram socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def wait(self, key, timeout=10.0):
        """The next message holding `key` (e.g. 'READY=1'); None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                break
            self.messages.append(data)
            if key in data.split("\n"):
                return data
        return None

    def drain(self):
        """Forgets what the daemon said so far (answers to earlier steps)."""
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.append(self.sock.recv(65536).decode("utf-8", "replace"))
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

    def close(self):
        self.sock.close()


def report(results, label):
    """Prints each failed (name, ok) check and "label: N passed, M failed";
    returns the exit status for the test."""
    failed = [name for name, ok in results if not ok]
    for name in failed:
        print("FAIL", name)
    print(f"{label}: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def run(*args, check=True, input=None):
    r = subprocess.run(args, capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {r.stdout.strip()} {r.stderr.strip()}")
    return r


class Lab:
    """Namespaces for the VPC routers and instances of one config."""

    def __init__(self, vpcfw, config):
        self.vpcfw = vpcfw
        self.config = config
        self.prefix = f"vt{os.getpid() % 100000}"
        self.namespaces = []
        self.servers = []
        atexit.register(self.close)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: (self.close(), sys.exit(1)))
        # The effective model (AWS defaults included) and the lab placement, from vpcfw itself.
        self.model = json.loads(run(vpcfw, "show", config, "--json").stdout)

    def ns(self, name):
        full = f"{self.prefix}-{name}"
        run(IP, "netns", "add", full)
        self.namespaces.append(full)
        run(IP, "-n", full, "link", "set", "lo", "up")
        return full

    def exec(self, ns, *args, check=True):
        return run(IP, "netns", "exec", ns, *args, check=check)

    def build(self, vpcs, subnets, instances, ifname):
        """vpcs: {name}; subnets: {name: (vpc, cidr, ipv6cidr|None)};
        instances: {name: (subnet, ipv4, [ipv6])}; ifname(instance) -> fabric-side name."""
        self.routers = {v: self.ns("r-" + v) for v in vpcs}
        for r in self.routers.values():
            self.exec(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.exec(r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        self.instance_ns = {}
        for i, (subnet, v4, v6s) in sorted(instances.items()):
            vpc, cidr, cidr6 = subnets[subnet]
            router = self.routers[vpc]
            ins = self.ns("i-" + i)
            self.instance_ns[i] = ins
            gw4 = str(ipaddress.ip_network(cidr)[1])
            outer = ifname(i)
            run(IP, "link", "add", "tmp-" + self.prefix, "type", "veth", "peer", "name", "tmpp-" + self.prefix)
            run(IP, "link", "set", "tmp-" + self.prefix, "netns", ins, "name", "eth0")
            run(IP, "link", "set", "tmpp-" + self.prefix, "netns", router, "name", outer)
            self.exec(ins, IP, "link", "set", "eth0", "up")
            self.exec(router, IP, "link", "set", outer, "up")
            # Every packet goes through the router, as in a VPC: /32 on the
            # instance, the subnet's router address on the fabric side.
            self.exec(ins, IP, "addr", "add", v4 + "/32", "dev", "eth0")
            self.exec(ins, IP, "route", "add", gw4, "dev", "eth0")
            self.exec(ins, IP, "route", "add", "default", "via", gw4)
            self.exec(router, IP, "addr", "add", gw4 + "/32", "dev", outer)
            self.exec(router, IP, "route", "add", v4 + "/32", "dev", outer)
            for v6 in v6s:
                gw6 = str(ipaddress.ip_network(cidr6)[1])
                self.exec(ins, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
                self.exec(router, "sysctl", "-qw", f"net.ipv6.conf.{outer}.accept_dad=0")
                self.exec(ins, IP, "-6", "addr", "add", v6 + "/128", "dev", "eth0", "nodad")
                self.exec(ins, IP, "-6", "route", "add", gw6, "dev", "eth0")
                self.exec(ins, IP, "-6", "route", "add", "default", "via", gw6)
                self.exec(router, IP, "-6", "addr", "add", gw6 + "/128", "dev", outer, "nodad")
                self.exec(router, IP, "-6", "route", "add", v6 + "/128", "dev", outer)

    def serve(self, tcp_ports, udp_ports):
        for i, ns in self.instance_ns.items():
            p = subprocess.Popen([IP, "netns", "exec", ns, "/usr/bin/python3", "-c", SERVER,
                                  ",".join(map(str, tcp_ports)), ",".join(map(str, udp_ports))],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.servers.append(p)
            assert p.stdout.readline().strip() == "ready"

    def probe(self, src, dst_addr, proto, port, sport=50000, timeout=0.6, src_addr=""):
        ns = self.instance_ns[src]
        r = self.exec(ns, "/usr/bin/python3", "-c", CLIENT, proto, dst_addr, str(port), str(sport), str(timeout), src_addr, check=False)
        return r.stdout.startswith("ok")

    def close(self):
        for p in self.servers:
            p.kill()
            p.wait()
        self.servers = []
        for ns in reversed(self.namespaces):
            subprocess.run([IP, "netns", "del", ns], capture_output=True)
        self.namespaces = []
