#!/usr/bin/python3
"""Flow logs from real packets (`vpcfw lab flowlogs`), with AWS's documented
examples reproduced in a lab and exact expectations: the ping whose NACL
denies the reply (ACCEPT ingress + REJECT egress), the same with a group that
does not allow ICMP (one REJECT), accepted SSH-port TCP with its tcp-flags
(SYN, SYN-ACK, FIN), rejected RDP, UDP with exact packets and bytes both
ways, a long flow split across intervals, NODATA for a quiet ENI, the
private address (not the public one) in srcaddr/dstaddr and pkt-* through
the internet gateway, and SKIPDATA when messages are lost (a tiny socket
buffer and a burst).

vpcfwd in host mode (--netns on a namespace playing the host, its veth the
ENI) writes per-ENI streams: an accepted and a rejected TCP connection, and
its metrics count the records.

The same ping through vpcfwd --lab with the flow log's destination a
directory of files in the S3 key layout: the key and file name as Athena's
tables and flowlogs-reader expect them, gzip, a header line of the format's
fields, and `vpcfw flowlogs show` reading the records back.

usage: test_flowlogs.py VPCFW VPCFWD   (root; exit 77 = skipped)"""
import glob
import gzip
import re
import shutil
import tempfile
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilab import MiniLab, RUN_TAG, run  # noqa: E402
from netlab import IP, Notifications, daemon_configs, host_and_peer  # noqa: E402

TRAFFIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flowtraffic.py")
CLIENT = "198.51.100.100"  # an internet host (the internet namespace answers for the documentation ranges)
FIELDS = ("${version} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} "
          "${start} ${end} ${action} ${log-status} ${tcp-flags} ${flow-direction} ${traffic-path} ${pkt-srcaddr} "
          "${pkt-dstaddr} ${type} ${instance-id}")

CONFIG = """version: 1
limits: {profile: lab}
vpcs: [{name: {T}v, cidr: 172.31.0.0/16}]
internet_gateways: [{name: {T}g, vpc: {T}v}]
route_tables:
  - name: public
    vpc: {T}v
    routes: [{destination: 0.0.0.0/0, internet_gateway: {T}g}]
network_acls:
  - name: no-icmp-out
    vpc: {T}v
    ingress:
      - {rule: 100, protocol: icmp, icmp_type: -1, cidr: 0.0.0.0/0, action: allow}
      - {rule: 110, protocol: tcp, ports: 22, cidr: 0.0.0.0/0, action: allow}
      - {rule: 120, protocol: udp, ports: 7000-7001, cidr: 0.0.0.0/0, action: allow}
    egress:
      - {rule: 100, protocol: tcp, ports: 1024-65535, cidr: 0.0.0.0/0, action: allow}
      - {rule: 110, protocol: udp, ports: 1024-65535, cidr: 0.0.0.0/0, action: allow}
subnets:
  - {name: public-a, vpc: {T}v, cidr: 172.31.16.0/20, availability_zone: use1-az1, route_table: public,
     network_acl: no-icmp-out}
security_groups:
  - name: web-sg
    vpc: {T}v
    ingress:
      - {protocol: icmp, icmp_type: -1, cidr: 0.0.0.0/0}
      - {protocol: tcp, ports: 22, cidr: 0.0.0.0/0}
      - {protocol: udp, ports: 7000, cidr: 0.0.0.0/0}
  - name: ssh-only
    vpc: {T}v
    ingress: [{protocol: tcp, ports: 22, cidr: 0.0.0.0/0}]
instances:
  - {name: {T}web, subnet: public-a, private_ip: 172.31.16.139, public_ip: 203.0.113.139, security_groups: [web-sg]}
  - {name: {T}ssh, subnet: public-a, private_ip: 172.31.16.140, public_ip: 203.0.113.140, security_groups: [ssh-only]}
  - {name: {T}quiet, subnet: public-a, private_ip: 172.31.16.141, security_groups: [ssh-only]}
flow_logs:
  - name: all
    vpc: {T}v
    max_aggregation_interval: 2
    log_format: "FIELDS"
    destination: stdout
""".replace("FIELDS", FIELDS)


class Collector:
    """`vpcfw lab flowlogs --follow --json` in the background; stop() returns its records."""

    def __init__(self, vpcfw, path, *extra):
        self.p = subprocess.Popen([vpcfw, "lab", "flowlogs", path, "--follow", "--json", *extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stderr.readline()
        while line and "collecting" not in line:
            if "error" in line or "cannot" in line:
                raise RuntimeError(f"collector: {line.strip()} {self.p.stderr.read()}")
            line = self.p.stderr.readline()
        if not line:
            raise RuntimeError(f"collector did not start: {self.p.stdout.read()}")

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        out, err = self.p.communicate(timeout=30)
        self.stderr = err
        if self.p.returncode != 0:
            raise RuntimeError(f"collector exit {self.p.returncode}: {err}")
        return [json.loads(x) for x in out.splitlines() if x.strip()]


def netns_run(ns, *args, background=False):
    cmd = ["ip", "netns", "exec", ns, "python3", TRAFFIC, *map(str, args)]
    if background:  # a server: returned once it is listening
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "listening":
            p.kill()
            raise RuntimeError(f"{' '.join(cmd)} did not start: {p.stderr.read()}")
        return p
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    return r.stdout.strip()


failures = []


def fresh_interval(interval=2):
    """Waits for the start of an aggregation interval, so that a short exchange lands in one record."""
    time.sleep(interval - time.time() % interval + 0.05)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def ok_records(records, **match):
    return [r for r in records if r["log-status"] == "OK" and all(r.get(k) == str(v) for k, v in match.items())]


def total(records, field):
    return sum(int(r[field]) for r in records)


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfw = sys.argv[1]
    with MiniLab(vpcfw, CONFIG) as lab:
        inet = os.environ["VPCFW_LAB_INTERNET"]
        ns = {k: f"vpcfw:i:{lab.name('{T}' + k)}" for k in ("web", "ssh", "quiet")}
        c = Collector(vpcfw, lab.path)
        servers = [netns_run(ns["web"], "udp-server", 7000, 25, background=True),
                   netns_run(ns["web"], "tcp-server", 22, 25, background=True)]
        # 1. The ping whose reply the NACL denies.
        fresh_interval()
        ping_web = netns_run(inet, "ping", CLIENT, "203.0.113.139", 3)
        # 2. The same against a group without ICMP.
        fresh_interval()
        ping_ssh = netns_run(inet, "ping", CLIENT, "203.0.113.140", 3)
        # 3. UDP, exact packets and bytes both ways (100-byte payloads: 128-byte packets).
        udp = netns_run(inet, "udp", CLIENT, 45001, "203.0.113.139", 7000, 5, 100, 0)
        # 4. TCP to 22: SYN, SYN-ACK, FIN.
        fresh_interval()
        tcp22 = netns_run(inet, "tcp", CLIENT, "203.0.113.139", 22, 1000, 3)
        # 5. RDP, rejected by the NACL.
        rdp = netns_run(inet, "tcp", CLIENT, "203.0.113.139", 3389, 0, 1.5)
        # 6. A long flow: 12 datagrams 0.5 s apart over several 2-s intervals.
        long_flow = netns_run(inet, "udp", CLIENT, 45002, "203.0.113.139", 7000, 12, 60, 0.5)
        time.sleep(2.5)
        records = c.stop()
        for s in servers:
            s.kill()
            s.wait()

    print(f"{len(records)} records; traffic: ping web [{ping_web}] ping ssh [{ping_ssh}] udp [{udp}] "
          f"tcp22 [{tcp22}] rdp [{rdp}] long [{long_flow}]")
    web, ssh, quiet = "172.31.16.139", "172.31.16.140", "172.31.16.141"
    web_id = next((r["instance-id"] for r in ok_records(records, dstaddr=web)), None)
    check(web_id is not None, "records exist for web (the harness sees traffic)")

    # 1. AWS: one ACCEPT ingress record for the requests, one REJECT egress record for the replies.
    check(ping_web == "replies 0", "the ping's replies were dropped (NACL egress)")
    # (One record each when the exchange fits one interval, as it starts at one; a loaded
    # machine may push its end into the next, hence the sums.)
    req = ok_records(records, srcaddr=CLIENT, dstaddr=web, protocol=1)
    check(req and all(r["action"] == "ACCEPT" and r["flow-direction"] == "ingress" and r["srcport"] == "0"
                      for r in req) and total(req, "packets") == 3 and total(req, "bytes") == 252,
          f"ping: ACCEPT ingress for the requests, 3 packets, 252 bytes: {req}")
    rep = ok_records(records, srcaddr=web, dstaddr=CLIENT, protocol=1)
    check(rep and all(r["action"] == "REJECT" and r["flow-direction"] == "egress" for r in rep)
          and total(rep, "packets") == 3 and total(rep, "bytes") == 252,
          f"ping: REJECT egress for the replies, and nothing else: {rep}")
    # 2. A group without ICMP: a single REJECT record.
    p2 = ok_records(records, dstaddr=ssh, protocol=1) + ok_records(records, srcaddr=ssh, protocol=1)
    check(ping_ssh == "replies 0" and p2 and all(r["action"] == "REJECT" and r["flow-direction"] == "ingress"
                                                 for r in p2) and total(p2, "packets") == 3,
          f"ping through a group without ICMP: only REJECT ingress, 3 packets: {p2}")
    # 3. UDP both ways, exact.
    uin = ok_records(records, srcaddr=CLIENT, dstaddr=web, srcport=45001, dstport=7000, action="ACCEPT")
    uout = ok_records(records, srcaddr=web, dstaddr=CLIENT, srcport=7000, dstport=45001, action="ACCEPT")
    check(udp == "echoes 5", "the UDP client got its 5 echoes")
    check(total(uin, "packets") == 5 and total(uin, "bytes") == 640, f"UDP ingress: 5 packets, 640 bytes: {uin}")
    check(total(uout, "packets") == 5 and total(uout, "bytes") == 640, f"UDP egress: 5 packets, 640 bytes: {uout}")
    check(all(r["traffic-path"] == "2" for r in uout) and all(r["traffic-path"] == "-" for r in uin),
          "traffic-path: 2 (internet gateway) on egress, - on ingress")
    check(all(r["dstaddr"] == web and r["pkt-dstaddr"] == web for r in uin) and
          all(r["srcaddr"] == web and r["pkt-srcaddr"] == web for r in uout),
          "through the internet gateway the ENI's records show its private address, also in pkt-*")
    check(all(r["type"] == "IPv4" and r["version"] == "5" for r in uin), "type IPv4; version 5 (the format's highest)")
    # 4. TCP flags, ORed over the records of each direction.
    tin = ok_records(records, srcaddr=CLIENT, dstaddr=web, dstport=22)
    tout = ok_records(records, srcaddr=web, dstaddr=CLIENT, srcport=22)
    fin = 0
    for r in tin:
        fin |= int(r["tcp-flags"])
    fout = 0
    for r in tout:
        fout |= int(r["tcp-flags"])
    check(tcp22 == "connected" and fin == 3 and fout == 19,
          f"TCP 22: client->server SYN|FIN = 3, server->client SYN-ACK|FIN = 19 (got {fin}, {fout})")
    check(all(r["action"] == "ACCEPT" for r in tin + tout) and total(tin, "bytes") > 1000,
          "TCP 22 accepted both ways, the 1000 bytes counted")
    # 5. RDP: REJECT ingress, SYN.
    r3389 = ok_records(records, dstaddr=web, dstport=3389)
    check(rdp == "timeout" and len(r3389) >= 1 and all(r["action"] == "REJECT" for r in r3389)
          and all(r["tcp-flags"] == "2" for r in r3389) and not ok_records(records, srcaddr=web, srcport=3389),
          f"RDP: REJECT ingress with SYN, nothing back: {r3389}")
    # 6. The long flow: several intervals, the packets add up.
    lf = ok_records(records, srcaddr=CLIENT, dstaddr=web, srcport=45002, action="ACCEPT")
    check(long_flow == "echoes 12" and len(lf) >= 2 and total(lf, "packets") == 12 and total(lf, "bytes") == 12 * 88,
          f"a long flow: records in {len(lf)} intervals, 12 packets in all")
    starts = sorted(int(r["start"]) for r in lf)
    check(all(int(r["start"]) <= int(r["end"]) for r in lf) and len(set(starts)) == len(starts),
          "each interval's record has start <= end, one per interval")
    # 7. NODATA for the quiet ENI, nothing else.
    q = [r for r in records if r["srcaddr"] == quiet or r["dstaddr"] == quiet]
    qid = {r["instance-id"] for r in records if r["log-status"] == "NODATA"}
    check(not q and len(qid) >= 1, "the quiet instance has NODATA rows and no flow records")
    check(not [r for r in records if r["log-status"] == "SKIPDATA"], "no SKIPDATA without loss")

    # 8. Loss: a burst of rejected packets into a tiny socket buffer nobody reads must give SKIPDATA, never silence.
    with MiniLab(vpcfw, CONFIG) as lab2:
        c = Collector(vpcfw, lab2.path, "--socket-buffer", "4096")
        c.p.send_signal(signal.SIGSTOP)  # not reading: the burst must overflow the 4 KB socket
        burst = subprocess.run(["ip", "netns", "exec", os.environ["VPCFW_LAB_INTERNET"], "python3", "-c",
                                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                                f"s.bind(('{CLIENT}',0))\n"
                                "for i in range(4000): s.sendto(b'x'*32,('203.0.113.139',9999))"],
                               capture_output=True, text=True)
        c.p.send_signal(signal.SIGCONT)
        time.sleep(2.5)
        lossy = c.stop()
    skip = [r for r in lossy if r["log-status"] == "SKIPDATA"]
    rejected = total(ok_records(lossy, dstport=9999, action="REJECT"), "packets")
    check(burst.returncode == 0 and skip and "lost" in c.stderr,
          f"a burst into a 4 KB buffer: SKIPDATA rows ({len(skip)}) and the loss said on stderr")
    check(rejected < 4000, f"not all of the burst recorded ({rejected} of 4000): the rest stood for by SKIPDATA")

    daemon_files(vpcfw, sys.argv[2])
    daemon_host(vpcfw, sys.argv[2])
    print(f"flowlogs: {len(failures)} failing")
    return 1 if failures else 0


def daemon_files(vpcfw, vpcfwd):
    """vpcfwd --lab writes the S3 layout; the files parse as AWS's readers expect."""
    work = tempfile.mkdtemp(prefix=f"vpcfw-{RUN_TAG}-fl-")
    tag = f"{RUN_TAG}d"
    cfg = os.path.join(work, "vpcfw.yaml")
    prefix = os.path.join(work, "bucket")
    text = CONFIG.replace("{T}", tag).replace("destination: stdout", f"destination: {{files: {prefix}}}")
    with open(cfg, "w") as f:
        f.write(text)
    env = dict(os.environ, NOTIFY_SOCKET=os.path.join(work, "notify"))
    notify = Notifications(env["NOTIFY_SOCKET"])
    log = open(os.path.join(work, "vpcfwd.log"), "w")
    daemon = subprocess.Popen([vpcfwd, "--config", cfg, "--lab", "--control-socket", os.path.join(work, "s.sock")],
                              env=env, stdout=log, stderr=log)
    try:
        ready = notify.wait("READY=1", timeout=60)
        check(ready is not None, "vpcfwd --lab with a flow log is READY")
        time.sleep(0.5)
        pinged = netns_run(os.environ["VPCFW_LAB_INTERNET"], "ping", CLIENT, "203.0.113.139", 4)
        time.sleep(2.5)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        log.close()
        run(vpcfw, "lab", "down", cfg, check=False)
    daemon_log = open(os.path.join(work, "vpcfwd.log")).read()
    check(daemon.returncode == 0 and "flow logs: collecting 1 flow log" in daemon_log,
          f"vpcfwd collected and stopped cleanly: {daemon_log[-400:] if daemon.returncode else ''}")
    files = glob.glob(os.path.join(prefix, "**", "*.log.gz"), recursive=True)
    name = re.compile(r"AWSLogs/123456789010/vpcflowlogs/us-east-1/(\d{4})/(\d{2})/(\d{2})/"
                      r"123456789010_vpcflowlogs_us-east-1_fl-[0-9a-f]{17}_(\d{8})T(\d{4})Z_[0-9a-f]+\.log\.gz$")
    keys = [os.path.relpath(f, prefix) for f in files]
    check(files and all(name.match(k) for k in keys), f"files in the S3 key layout: {keys}")
    check(all(name.match(k).group(1) + name.match(k).group(2) + name.match(k).group(3) == name.match(k).group(4)
              for k in keys if name.match(k)), "the file name's date is its directory's")
    rows, header_ok = [], True
    for f in files:
        with gzip.open(f, "rt") as g:
            lines = g.read().splitlines()
        header_ok &= bool(lines) and lines[0] == FIELDS.replace("${", "").replace("}", "")
        rows += [dict(zip(lines[0].split(" "), x.split(" "))) for x in lines[1:]]
    check(header_ok, "each file is gzip with the format's field names as its first line")
    req = [r for r in rows if r["srcaddr"] == CLIENT and r["protocol"] == "1"]
    rep = [r for r in rows if r["dstaddr"] == CLIENT and r["protocol"] == "1"]
    check(pinged == "replies 0" and total(req, "packets") == 4 and all(r["action"] == "ACCEPT" for r in req)
          and total(rep, "packets") == 4 and all(r["action"] == "REJECT" for r in rep),
          f"the daemon's files hold the ping: 4 ACCEPT ingress, 4 REJECT egress ({req} {rep})")
    shown = run(vpcfw, "flowlogs", "show", prefix, "--action", "REJECT", "--json", check=False)
    got = [json.loads(x) for x in shown.stdout.splitlines() if x.strip()]
    check(shown.returncode == 0 and len(got) == len(rep) and all(g["action"] == "REJECT" for g in got),
          f"vpcfw flowlogs show --action REJECT reads back the REJECT rows: {shown.stderr.strip()}")
    notify.close()
    shutil.rmtree(work, ignore_errors=True)


def daemon_host(vpcfw, vpcfwd):
    """vpcfwd --netns (host mode): flow logs of the host's own ENI as streams."""
    tag = f"{RUN_TAG}h"
    host, peer = f"{tag}-host", f"{tag}-peer"
    work = tempfile.mkdtemp(prefix=f"vpcfw-{tag}-")
    streams = os.path.join(work, "streams")
    valid = daemon_configs("labhost")[0]
    text = ("limits: {profile: lab}\n" + valid +
            f"flow_logs:\n  - {{name: h1-log, instance: h1, max_aggregation_interval: 2, log_format: '{FIELDS}',"
            f" destination: {{streams: {streams}}}}}\n")
    cfg = os.path.join(work, "vpcfw.yaml")
    with open(cfg, "w") as f:
        f.write(text)
    env = dict(os.environ, VPCFW_RUN_DIR=os.path.join(work, "run"), NOTIFY_SOCKET=os.path.join(work, "notify"))
    os.mkdir(env["VPCFW_RUN_DIR"], 0o700)
    notify = Notifications(env["NOTIFY_SOCKET"])
    sock = os.path.join(work, "s.sock")
    daemon = server = None
    metrics = ""
    try:
        host_and_peer(tag, host, peer)
        server = netns_run(host, "tcp-server", 80, 30, background=True)
        log = open(os.path.join(work, "vpcfwd.log"), "w")
        daemon = subprocess.Popen([vpcfwd, "--config", cfg, "--host", "labhost", "--netns", host,
                                   "--control-socket", sock], env=env, stdout=log, stderr=log)
        check(notify.wait("READY=1", timeout=30) is not None, "host mode: vpcfwd with a flow log is READY")
        fresh_interval()
        ok80 = netns_run(peer, "tcp", "198.51.100.7", "10.0.1.10", 80, 500, 3)
        no8080 = netns_run(peer, "tcp", "198.51.100.7", "10.0.1.10", 8080, 0, 1.5)
        time.sleep(2.5)
        metrics = run(vpcfw, "metrics", "--socket", sock, check=False).stdout
    finally:
        if daemon:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        if server:
            server.kill()
            server.wait()
        run(vpcfw, "flush", "--netns", host, check=False)
        for ns in (host, peer):
            run(IP, "netns", "delete", ns, check=False)
        notify.close()
    files = glob.glob(os.path.join(streams, "eni-*.log"))
    rows = []
    for f in files:
        lines = open(f).read().splitlines()
        rows += [dict(zip(lines[0].split(" "), x.split(" "))) for x in lines[1:]]
    a = [r for r in rows if r["dstport"] == "80" and r["flow-direction"] == "ingress"]
    b = [r for r in rows if r["srcport"] == "80" and r["flow-direction"] == "egress"]
    c = [r for r in rows if r["dstport"] == "8080"]
    check(len(files) == 1 and ok80 == "connected" and a and b and all(r["action"] == "ACCEPT" for r in a + b)
          and total(a, "bytes") > 500, f"host mode: the accepted connection, both ways, in the ENI's stream ({files})")
    flags_in = 0
    for r in a:
        flags_in |= int(r["tcp-flags"])
    check(flags_in & 3 == 3, f"host mode: the client's SYN and FIN in tcp-flags ({flags_in})")
    check(no8080 == "timeout" and c and all(r["action"] == "REJECT" and r["tcp-flags"] == "2" for r in c),
          f"host mode: 8080 REJECTed with SYN: {c}")
    m = re.search(r'^vpcfw_flowlog_records_total\{status="OK"\} (\d+)', metrics, re.M)
    check(m is not None and int(m.group(1)) >= 3 and "vpcfw_flowlog_collecting 1" in metrics,
          "host mode: the metrics count the records and say it is collecting")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
