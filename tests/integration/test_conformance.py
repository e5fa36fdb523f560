#!/usr/bin/python3
"""Conformance suite: one small lab per behaviour of vpc-semantics.md that
packets can show, built with `vpcfw lab up`, proved with `vpcfw probe` (real
TCP/UDP/ICMP), and each observation also checked against `vpcfw explain`.

usage: test_conformance.py VPCFW [BEHAVIOUR...]    (root; exit 77 = skipped)"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilab import MiniLab, expect, run  # noqa: E402
from netlab import report  # noqa: E402

VPC = """
vpcs:
  - {name: "{T}v", cidr: 10.60.0.0/16, ipv6_cidr: "2001:db8:60::/56"}
subnets:
  - {name: a, vpc: "{T}v", cidr: 10.60.1.0/24, ipv6_cidr: "2001:db8:60:1::/64"%s}
  - {name: b, vpc: "{T}v", cidr: 10.60.2.0/24, ipv6_cidr: "2001:db8:60:2::/64"%s}
  - {name: c, vpc: "{T}v", cidr: 10.60.3.0/24, ipv6_cidr: "2001:db8:60:3::/64"}
"""


def vpc(acl_a="", acl_b=""):
    return VPC % ((f", network_acl: {acl_a}" if acl_a else ""), (f", network_acl: {acl_b}" if acl_b else ""))


OPEN_GROUPS = """
security_groups:
  - name: open
    vpc: "{T}v"
    ingress:
      - {protocol: all, cidr: 0.0.0.0/0}
      - {protocol: all, cidr: "::/0"}
"""

INSTANCES_AB = """
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10, ipv6_addresses: ["2001:db8:60:1::10"], security_groups: [%s]}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10, ipv6_addresses: ["2001:db8:60:2::10"], security_groups: [%s]}
"""


def nacl(name, ingress, egress):
    def rules(rs):
        return "".join(f"\n      - {r}" for r in rs) if rs else " []"
    return f"""
  - name: {name}
    vpc: "{{T}}v"
    ingress:{rules(ingress)}
    egress:{rules(egress)}"""


ALLOW_ALL_EGRESS = ["{rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}"]


def nacl_order(vpcfw, results):
    # b's ingress: 100 allow tcp 22 / 110 deny tcp 22 (the allow hides the deny), and
    # 120 deny tcp 80 / 130 allow tcp 80 (the deny hides the allow).
    acl = nacl("b-acl", ["{rule: 100, protocol: tcp, ports: 22, cidr: 10.60.0.0/16, action: allow}",
                         "{rule: 110, protocol: tcp, ports: 22, cidr: 10.60.0.0/16, action: deny}",
                         "{rule: 120, protocol: tcp, ports: 80, cidr: 10.60.0.0/16, action: deny}",
                         "{rule: 130, protocol: tcp, ports: 80, cidr: 10.60.0.0/16, action: allow}"],
               ALLOW_ALL_EGRESS)
    text = vpc(acl_b="b-acl") + "network_acls:" + acl + OPEN_GROUPS + INSTANCES_AB % ("open", "open")
    with MiniLab(vpcfw, text) as lab:
        expect(results, "NACL order: a lower allow hides a later deny", lab.probe("{T}a", "{T}b", port=22), "ok")
        expect(results, "NACL order: a lower deny hides a later allow", lab.probe("{T}a", "{T}b", port=80), "dropped")
        expect(results, "NACL implicit deny: no rule matches tcp 443", lab.probe("{T}a", "{T}b", port=443), "dropped")


def nacl_defaults(vpcfw, results):
    text = vpc(acl_b="empty") + "network_acls:" + nacl("empty", [], []) + OPEN_GROUPS + INSTANCES_AB % ("open", "open") + \
        '  - {name: "{T}c", subnet: c, private_ip: 10.60.3.10, ipv6_addresses: ["2001:db8:60:3::10"], security_groups: [open]}\n'
    with MiniLab(vpcfw, text) as lab:
        expect(results, "a new custom NACL (no rules) denies everything", lab.probe("{T}a", "{T}b", port=22), "dropped")
        expect(results, "a new custom NACL denies IPv6 too", lab.probe("{T}a", "{T}b", port=22, family=6), "dropped")
        expect(results, "the default NACL allows all (subnets a and c)", lab.probe("{T}c", "{T}a", port=22), "ok")
        expect(results, "the default NACL allows all IPv6", lab.probe("{T}a", "{T}c", port=22, family=6), "ok")


def ephemeral(vpcfw, results):
    # b allows 22 in, but its egress return rule covers only 1024-2000: replies to
    # the client's ephemeral port (49152+) die on the way out.
    acl = nacl("b-acl", ["{rule: 100, protocol: tcp, ports: 22, cidr: 10.60.0.0/16, action: allow}",
                         "{rule: 110, protocol: tcp, ports: 80, cidr: 10.60.0.0/16, action: allow}"],
               ["{rule: 100, protocol: tcp, ports: 1024-2000, cidr: 10.60.1.10/32, action: allow}",
                "{rule: 110, protocol: tcp, ports: 1024-65535, cidr: 10.60.1.20/32, action: allow}"])
    text = vpc(acl_b="b-acl") + "network_acls:" + acl + OPEN_GROUPS + INSTANCES_AB % ("open", "open") + \
        '  - {name: "{T}c", subnet: a, private_ip: 10.60.1.20, security_groups: [open]}\n'
    with MiniLab(vpcfw, text) as lab:
        expect(results, "a missing ephemeral-port return rule kills the reply", lab.probe("{T}a", "{T}b", port=22), "reply-dropped")
        expect(results, "with the ephemeral return rule the reply gets back", lab.probe("{T}c", "{T}b", port=22), "ok")


def same_subnet(vpcfw, results):
    text = vpc(acl_a="empty") + "network_acls:" + nacl("empty", [], []) + OPEN_GROUPS + """
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10, security_groups: [open]}
  - {name: "{T}c", subnet: a, private_ip: 10.60.1.20, security_groups: [open]}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10, security_groups: [open]}
"""
    with MiniLab(vpcfw, text) as lab:
        expect(results, "no NACL inside one subnet (deny-all NACL, same subnet)", lab.probe("{T}a", "{T}c", port=22), "ok")
        expect(results, "the same NACL applies leaving the subnet", lab.probe("{T}a", "{T}b", port=22), "dropped")


def groups(vpcfw, results):
    text = vpc() + """
security_groups:
  - name: web
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 80, cidr: 10.60.0.0/16}
  - name: ssh
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 22, cidr: 10.60.1.0/24}
  - name: client
    vpc: "{T}v"
  - name: closed
    vpc: "{T}v"
    egress: []
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10, security_groups: [client]}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10, security_groups: [web, ssh]}
  - {name: "{T}z", subnet: a, private_ip: 10.60.1.30, security_groups: [closed]}
"""
    with MiniLab(vpcfw, text) as lab:
        expect(results, "stateful groups: the reply passes with no rule for it", lab.probe("{T}a", "{T}b", port=80), "ok")
        expect(results, "union of groups: the first group's port", lab.probe("{T}a", "{T}b", port=80), "ok")
        expect(results, "union of groups: the second group's port", lab.probe("{T}a", "{T}b", port=22), "ok")
        expect(results, "groups are allow-only: other ports are dropped", lab.probe("{T}a", "{T}b", port=443), "dropped")
        expect(results, "omitted egress allows all out", lab.probe("{T}a", "{T}b", port=22), "ok")
        expect(results, "empty egress allows nothing out", lab.probe("{T}z", "{T}b", port=80), "dropped")


def references(vpcfw, results):
    base = vpc() + """
security_groups:
  - name: app
    vpc: "{T}v"
  - name: other
    vpc: "{T}v"
  - name: db
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 5432, group: app}
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10, security_groups: [%s]}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10, security_groups: [db]}
"""
    # A small group is compiled into the shared sets' elements, a group of more
    # than 8 addresses into a member set: both must follow membership.
    many = "".join(f'  - {{name: "{{T}}m{k}", subnet: c, private_ip: 10.60.3.{20 + k}, security_groups: [app]}}\n'
                   for k in range(9))
    for size, extra in (("small group", ""), ("large group", many)):
        with MiniLab(vpcfw, base % "other" + extra) as lab:
            expect(results, f"group reference ({size}): a non-member is dropped", lab.probe("{T}a", "{T}b", port=5432),
                   "dropped")
            out = lab.apply(base % "app" + extra).stdout
            expect(results, f"group reference ({size}) follows membership (member now, no rule changed)",
                   lab.probe("{T}a", "{T}b", port=5432), "ok")
            results.append((f"a membership change ({size}) is applied as set elements, not rules",
                            "element" in out and "chain" not in out.replace("chains", "")))
            if extra:
                expect(results, "group reference (large group): another member", lab.probe("{T}m3", "{T}b", port=5432), "ok")


def default_group(vpcfw, results):
    text = vpc() + """
security_groups:
  - name: custom
    vpc: "{T}v"
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10}
  - {name: "{T}c", subnet: a, private_ip: 10.60.1.20, security_groups: [custom]}
"""
    with MiniLab(vpcfw, text) as lab:
        expect(results, "default group: members reach each other (self reference), tcp", lab.probe("{T}a", "{T}b", port=9999), "ok")
        expect(results, "default group: members reach each other, udp", lab.probe("{T}b", "{T}a", proto="udp", port=53), "ok")
        expect(results, "default group: a non-member is dropped", lab.probe("{T}c", "{T}b", port=9999), "dropped")


def icmp(vpcfw, results):
    text = vpc() + """
security_groups:
  - name: echo
    vpc: "{T}v"
    ingress:
      - {protocol: icmp, icmp_type: 8, icmp_code: 0, cidr: 10.60.0.0/16}
  - name: tstamp
    vpc: "{T}v"
    ingress:
      - {protocol: icmp, icmp_type: 13, cidr: 10.60.0.0/16}
  - name: v6echo
    vpc: "{T}v"
    ingress:
      - {protocol: icmpv6, icmp_type: 128, cidr: "::/0"}
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10, ipv6_addresses: ["2001:db8:60:1::10"]}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10, ipv6_addresses: ["2001:db8:60:2::10"], security_groups: [echo, v6echo]}
  - {name: "{T}c", subnet: b, private_ip: 10.60.2.20, security_groups: [tstamp]}
"""
    with MiniLab(vpcfw, text) as lab:
        expect(results, "ICMP type 8 code 0 allows echo", lab.probe("{T}a", "{T}b", proto="icmp"), "ok")
        expect(results, "ICMP type 13 does not allow echo", lab.probe("{T}a", "{T}c", proto="icmp"), "dropped")
        expect(results, "ICMP type 13 allows timestamp requests", lab.probe("{T}a", "{T}c", proto="icmp", icmp_type=13), "arrived")
        expect(results, "ICMPv6 type 128 allows IPv6 echo", lab.probe("{T}a", "{T}b", proto="icmpv6"), "ok")


def families(vpcfw, results):
    text = vpc() + """
security_groups:
  - name: v4only
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 80, cidr: 0.0.0.0/0}
  - name: v6only
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 80, cidr: "::/0"}
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10, ipv6_addresses: ["2001:db8:60:1::10"]}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10, ipv6_addresses: ["2001:db8:60:2::10"], security_groups: [v4only]}
  - {name: "{T}c", subnet: b, private_ip: 10.60.2.20, ipv6_addresses: ["2001:db8:60:2::20"], security_groups: [v6only]}
"""
    with MiniLab(vpcfw, text) as lab:
        expect(results, "an IPv4 rule allows IPv4", lab.probe("{T}a", "{T}b", port=80), "ok")
        expect(results, "an IPv4 rule does not allow IPv6", lab.probe("{T}a", "{T}b", port=80, family=6), "dropped")
        expect(results, "an IPv6 rule allows IPv6", lab.probe("{T}a", "{T}c", port=80, family=6), "ok")
        expect(results, "an IPv6 rule does not allow IPv4", lab.probe("{T}a", "{T}c", port=80), "dropped")


def protocols(vpcfw, results):
    text = vpc(acl_b="b-acl") + "network_acls:" + nacl(
        "b-acl", ["{rule: 100, protocol: 17, ports: 0-65535, cidr: 10.60.0.0/16, action: allow}",
                  "{rule: 110, protocol: -1, cidr: 10.60.1.20/32, action: allow}"],
        ALLOW_ALL_EGRESS) + """
security_groups:
  - name: all
    vpc: "{T}v"
    ingress:
      - {protocol: -1, cidr: 10.60.0.0/16}
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10}
  - {name: "{T}c", subnet: a, private_ip: 10.60.1.20}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10, security_groups: [all]}
"""
    with MiniLab(vpcfw, text) as lab:
        expect(results, "protocol 17 (by number) allows udp", lab.probe("{T}a", "{T}b", proto="udp", port=53), "ok")
        expect(results, "protocol 17 does not allow tcp", lab.probe("{T}a", "{T}b", port=53), "dropped")
        expect(results, "protocol 17 does not allow icmp", lab.probe("{T}a", "{T}b", proto="icmp"), "dropped")
        expect(results, "protocol -1 allows tcp", lab.probe("{T}c", "{T}b", port=53), "ok")
        expect(results, "protocol -1 allows icmp", lab.probe("{T}c", "{T}b", proto="icmp"), "ok")


PEERING = """
vpcs:
  - {name: "{T}a", cidr: 10.61.0.0/16}
  - {name: "{T}b", cidr: 10.62.0.0/16}
  - {name: "{T}c", cidr: 10.63.0.0/16}
subnets:
  - {name: sa, vpc: "{T}a", cidr: 10.61.1.0/24}
  - {name: sb, vpc: "{T}b", cidr: 10.62.1.0/24}
  - {name: sc, vpc: "{T}c", cidr: 10.63.1.0/24}
peerings:
  - {name: "{T}ab", requester: "{T}a", accepter: "{T}b"}
  - {name: "{T}bc", requester: "{T}b", accepter: "{T}c"}
route_tables:
  - name: a-main
    vpc: "{T}a"
    main: true
    routes:
      - {destination: 10.62.0.0/16, peering: "{T}ab"}
      - {destination: 10.63.0.0/16, peering: "{T}ab"}
  - name: b-main
    vpc: "{T}b"
    main: true
    routes:
      - {destination: 10.61.0.0/16, peering: "{T}ab"}
%s
  - name: c-main
    vpc: "{T}c"
    main: true
    routes:
      - {destination: 10.61.0.0/16, peering: "{T}bc"}
      - {destination: 10.62.0.0/16, peering: "{T}bc"}
security_groups:
  - {name: open, vpc: "{T}a", ingress: [{protocol: all, cidr: 10.0.0.0/8}]}
  - {name: open, vpc: "{T}b", ingress: [{protocol: all, cidr: 10.0.0.0/8}]}
  - {name: open, vpc: "{T}c", ingress: [{protocol: all, cidr: 10.0.0.0/8}]}
instances:
  - {name: "{T}a1", subnet: sa, private_ip: 10.61.1.10, security_groups: [open]}
  - {name: "{T}b1", subnet: sb, private_ip: 10.62.1.10, security_groups: [open]}
  - {name: "{T}c1", subnet: sc, private_ip: 10.63.1.10, security_groups: [open]}
"""


def peering(vpcfw, results):
    # b routes to a but (at first) not to c: c's requests arrive, replies cannot route back.
    with MiniLab(vpcfw, PEERING % "") as lab:
        expect(results, "peering with routes on both sides", lab.probe("{T}a1", "{T}b1", port=22), "ok")
        expect(results, "peering is not transitive (a -> c through b)", lab.probe("{T}a1", "{T}c1", port=22), "dropped")
        expect(results, "peering needs routes on both sides (no route back from b to c)",
               lab.probe("{T}c1", "{T}b1", port=22), "reply-dropped")


INTERNET = """
vpcs:
  - {name: "{T}v", cidr: 10.64.0.0/16, ipv6_cidr: "2001:db8:64::/56"}
internet_gateways:
  - {name: "{T}igw", vpc: "{T}v"}
route_tables:
  - name: public
    vpc: "{T}v"
    routes:
      - {destination: 0.0.0.0/0, internet_gateway: "{T}igw"}
      - {destination: "::/0", internet_gateway: "{T}igw"}
subnets:
  - {name: pub, vpc: "{T}v", cidr: 10.64.1.0/24, ipv6_cidr: "2001:db8:64:1::/64", route_table: public}
  - {name: priv, vpc: "{T}v", cidr: 10.64.2.0/24}
security_groups:
  - name: web
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 443, cidr: 0.0.0.0/0}
      - {protocol: tcp, ports: 443, cidr: "::/0"}
instances:
  - {name: "{T}w", subnet: pub, private_ip: 10.64.1.10, public_ip: 203.0.113.64, ipv6_addresses: ["2001:db8:64:1::10"], security_groups: [web]}
  - {name: "{T}n", subnet: pub, private_ip: 10.64.1.20, security_groups: [web]}
  - {name: "{T}p", subnet: priv, private_ip: 10.64.2.10, public_ip: 203.0.113.65, security_groups: [web]}
"""


def internet(vpcfw, results):
    with MiniLab(vpcfw, INTERNET) as lab:
        expect(results, "internet -> public IP with a gateway route: through (1:1 NAT)",
               lab.probe("198.51.100.9", "{T}w", port=443), "ok")
        expect(results, "instance -> internet with a public IP and a gateway route",
               lab.probe("{T}w", "192.0.2.80", port=443), "ok")
        expect(results, "instance without a public IP cannot reach the internet",
               lab.probe("{T}n", "192.0.2.80", port=443), "dropped")
        expect(results, "public IP but no gateway route: the request arrives, the reply cannot leave",
               lab.probe("198.51.100.9", "{T}p", port=443), "reply-dropped")
        expect(results, "IPv6 through the gateway untranslated", lab.probe("2001:db8:ff::9", "{T}w", port=443), "ok")
        expect(results, "the gateway does not change the groups: port 22 dropped",
               lab.probe("198.51.100.9", "{T}w", port=22), "dropped")


HOLD = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
print("connected", flush=True)
for line in sys.stdin:
    try:
        s.settimeout(1.5); s.sendall(b"x"); d = s.recv(10)
        print("ok" if d else "closed", flush=True)
    except Exception as e:
        print("fail", flush=True)
"""

ECHO = r"""
import socket, sys, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[1]))); l.listen(8)
print("ready", flush=True)
def serve(c):
    while True:
        d = c.recv(10)
        if not d: return
        c.sendall(d)
while True:
    c, _ = l.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def cache_state(vpcfw, lab):
    """The router's NACL verdict cache: {"generation": G, "hits": packets that took the shortcut}."""
    r = run(vpcfw, "status", "--netns", lab.name("vpcfw-{T}v"), "--json")
    return json.loads(r.stdout)["nacl_verdict_cache"]


def established(vpcfw, results):
    # With the NACL verdict cache on (a lab router): established packets skip
    # the NACLs once their direction passed them, and a NACL change must still
    # cut the flow in either direction at once; a group change must not.
    base = vpc(acl_b="b-acl") + "network_acls:" + nacl(
        "b-acl", ["{rule: 100, protocol: tcp, ports: %s, cidr: 10.60.0.0/16, action: allow}"],
        ["{rule: 100, protocol: tcp, ports: %s, cidr: 10.60.0.0/16, action: allow}"]) + """
security_groups:
  - name: server
    vpc: "{T}v"
    ingress:%s
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10}
  - {name: "{T}b", subnet: b, private_ip: 10.60.2.10, security_groups: [server]}
"""
    rule = "\n      - {protocol: tcp, ports: 7000, cidr: 10.60.0.0/16}"
    replies = "1024-65535"
    with MiniLab(vpcfw, base % ("7000", replies, rule)) as lab:
        server = lab.exec("{T}b", "/usr/bin/python3", "-c", ECHO, "7000", stdout=subprocess.PIPE, text=True)
        clients = []

        def connect():
            c = lab.exec("{T}a", "/usr/bin/python3", "-u", "-c", HOLD, "10.60.2.10", "7000",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            clients.append(c)
            return c.stdout.readline().strip() == "connected"

        def talk(k=-1):
            clients[k].stdin.write("go\n")
            clients[k].stdin.flush()
            return clients[k].stdout.readline().strip()
        try:
            assert server.stdout.readline().strip() == "ready"
            results.append(("a TCP connection is established", connect()))
            results.append(("the connection carries data", talk() == "ok"))
            before = cache_state(vpcfw, lab)
            talks = [talk() for _ in range(3)]
            after = cache_state(vpcfw, lab)
            results.append((f"established packets take the NACL verdict cache's shortcut (hits {before['hits']} -> "
                            f"{after['hits']}, talks {talks})",
                            talks == ["ok"] * 3 and after["hits"] >= before["hits"] + 6))
            lab.apply(base % ("7000", replies, " []"))
            expect(results, "after the group rule is removed, a new connection is dropped",
                   lab.probe("{T}a", "{T}b", port=7000), "dropped")
            results.append(("an established connection survives removal of the group rule that allowed it",
                            talk() == "ok"))
            results.append(("a group change keeps the cache generation (cached NACL verdicts stay)",
                            cache_state(vpcfw, lab)["generation"] == before["generation"]))
            lab.apply(base % ("7001", replies, " []"))
            results.append(("a NACL ingress change cuts the established connection (request direction, cache on)",
                            talk() == "fail"))
            results.append(("a NACL change starts a new cache generation",
                            cache_state(vpcfw, lab)["generation"] != before["generation"]))
            lab.apply(base % ("7000", replies, rule))
            results.append(("a second connection is established", connect()))
            results.append(("it carries data", [talk(), talk()] == ["ok", "ok"]))
            lab.apply(base % ("7000", "1024-2000", rule))
            results.append(("a NACL egress change cuts the established connection (reply direction, cache on)",
                            talk() == "fail"))
        finally:
            for p in (*clients, server):
                if p:
                    p.kill()
                    p.wait()


CATCH = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1]))); s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    d, a = s.recvfrom(100); print("got", a[0], flush=True)
except socket.timeout:
    print("none", flush=True)
"""

SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT: send from an address the ENI does not own
s.bind((sys.argv[1], 0)); s.sendto(b"spoof", (sys.argv[2], int(sys.argv[3])))
"""


def spoofing(vpcfw, results):
    import subprocess
    text = vpc() + OPEN_GROUPS + INSTANCES_AB % ("open", "open")
    with MiniLab(vpcfw, text) as lab:
        for src, want, name in (("10.60.1.10", "got 10.60.1.10", "a packet from the ENI's own address arrives"),
                                ("10.60.1.99", "none", "a spoofed source address is dropped"),
                                ("10.60.2.10", "none", "a source address of another ENI is dropped")):
            catcher = lab.exec("{T}b", "/usr/bin/python3", "-c", CATCH, "5555", "0.8", stdout=subprocess.PIPE, text=True)
            assert catcher.stdout.readline().strip() == "ready"
            sent = lab.exec("{T}a", "/usr/bin/python3", "-c", SEND, src, "10.60.2.10", "5555").wait()
            got = catcher.stdout.readline().strip()
            catcher.wait()
            results.append((f"{name} (sent: {sent == 0}, saw: {got})", sent == 0 and got == want))


def many_enis(vpcfw, results):
    # 40 ENIs in one fabric: the security-group sets are sharded (more than 16
    # ENIs); every shard must hold its ENIs' rules and nothing else.
    servers = "".join(f'  - {{name: "{{T}}s{k}", subnet: b, private_ip: 10.60.2.{20 + k}, security_groups: [web%s]}}\n'
                      % (", special" if k == 13 else "") for k in range(40))
    text = vpc() + """
security_groups:
  - name: web
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 80, cidr: 10.60.1.0/24}
  - name: special
    vpc: "{T}v"
    ingress:
      - {protocol: tcp, ports: 81, group: client}
  - name: client
    vpc: "{T}v"
instances:
  - {name: "{T}a", subnet: a, private_ip: 10.60.1.10, security_groups: [client]}
""" + servers
    with MiniLab(vpcfw, text) as lab:
        for k in (0, 7, 13, 22, 31, 39):
            expect(results, f"40 ENIs (sharded sets): s{k} port 80 allowed", lab.probe("{T}a", f"{{T}}s{k}", port=80), "ok")
            expect(results, f"40 ENIs (sharded sets): s{k} port 81 " + ("allowed (its own group)" if k == 13 else "dropped"),
                   lab.probe("{T}a", f"{{T}}s{k}", port=81), "ok" if k == 13 else "dropped")


BEHAVIOURS = [nacl_order, nacl_defaults, ephemeral, same_subnet, groups, references, default_group, icmp, families,
              protocols, peering, internet, established, spoofing, many_enis]


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw = sys.argv[1]
    only = set(sys.argv[2:])
    results = []
    t0 = time.time()
    for b in BEHAVIOURS:
        if only and b.__name__ not in only:
            continue
        try:
            b(vpcfw, results)
        except Exception as e:  # a broken lab is a failure of that behaviour, not of the run
            results.append((f"{b.__name__}: {e}", False))
    internet_ns = os.environ["VPCFW_LAB_INTERNET"]
    left = [n for n in run("ip", "netns", "list").stdout.split("\n") if "c" + str(os.getpid() % 100000) + "x" in n
            or internet_ns in n]
    results.append((f"every lab was taken down (left: {left})", not left))
    print(f"conformance: {len(BEHAVIOURS)} behaviours in {time.time() - t0:.1f} s")
    return report(results, "conformance")


if __name__ == "__main__":
    sys.exit(main())
