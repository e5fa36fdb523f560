#!/usr/bin/python3
"""Kernel test of vpcfwd's config watching against hostile file handling:
the config's directory renamed away and made again, or deleted and made
again, must still be watched (a watch follows the old inode); a config file
created afresh and written in two parts must not be applied half-written (a
prefix that parses as a smaller valid config: here the NACL without its deny
rule, i.e. wider access). Each negative observation has a positive baseline.

usage: test_daemon_watch.py VPCFWD       (root; exit 77 = skipped)"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import IP, NFT, report, run  # noqa: E402

CONFIG = """vpcs: [{name: v, cidr: 10.0.0.0/16}]
subnets: [{name: s, vpc: v, cidr: 10.0.1.0/24, network_acl: n}]
security_groups:
  - {name: web, vpc: v, ingress: [{protocol: tcp, ports: 1-65535, cidr: 0.0.0.0/0}]}
instances:
  - {name: h1, subnet: s, private_ip: 10.0.1.10, host: labhost, interface: veth-h, security_groups: [web]}
network_acls:
  - name: n
    vpc: v
    ingress:
      - {rule: 200, protocol: all, cidr: 0.0.0.0/0, action: allow}
      - {rule: 100, protocol: tcp, ports: PORT, cidr: 198.51.100.0/24, action: deny}
    egress:
      - {rule: 100, protocol: all, cidr: 0.0.0.0/0, action: allow}
"""


def main():
    if os.geteuid() != 0:
        print("skipped: kernel tests need root")
        return 77
    vpcfwd = sys.argv[1]
    tag = f"vw{os.getpid() % 100000}"
    ns = f"{tag}-host"
    work = tempfile.mkdtemp(prefix=f"{tag}-")
    os.chmod(work, 0o700)
    etc = os.path.join(work, "etc")
    cfg = os.path.join(etc, "vpcfw.yaml")
    rundir = os.path.join(work, "run")
    os.mkdir(rundir, 0o700)
    env = dict(os.environ, VPCFW_RUN_DIR=rundir)
    env.pop("NOTIFY_SOCKET", None)
    results = []
    daemon = None
    log = open(os.path.join(work, "log"), "w+")

    def put(path, port):
        with open(path + ".tmp", "w") as f:
            f.write(CONFIG.replace("PORT", str(port)))
        os.rename(path + ".tmp", path)

    def enforced(port, timeout=2.0):
        """True once the kernel denies tcp `port` in the NACL; False if not within `timeout`."""
        t0 = time.monotonic()
        while True:
            r = run(IP, "netns", "exec", ns, NFT, "list", "table", "inet", "vpcfw", check=False)
            if f"dport {port} " in r.stdout:
                return True
            if time.monotonic() - t0 > timeout:
                return False
            time.sleep(0.05)

    try:
        run(IP, "netns", "add", ns)
        run(IP, "-n", ns, "link", "add", "veth-h", "type", "veth", "peer", "name", "veth-p")
        os.mkdir(etc)
        put(cfg, 22)
        daemon = subprocess.Popen([vpcfwd, "--config", cfg, "--host", "labhost", "--netns", ns], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        results.append(("baseline: the first config is enforced", enforced(22)))
        put(cfg, 23)
        results.append(("baseline: an edit (write + rename) is enforced", enforced(23)))

        # The directory renamed away and a new one made in its place.
        os.rename(etc, etc + ".old")
        os.mkdir(etc)
        put(cfg, 24)
        time.sleep(0.3)
        put(cfg, 25)
        results.append(("an edit in a directory that replaced the config's directory is enforced", enforced(25)))

        # The directory deleted and made again (the daemon retries the watch).
        shutil.rmtree(etc)
        time.sleep(0.3)
        os.mkdir(etc)
        put(cfg, 26)
        results.append(("a config in a re-created directory is enforced", enforced(26, timeout=3.0)))

        # A file created afresh and written in two parts: the first part is
        # a valid config without the deny rule.
        text = CONFIG.replace("PORT", "27")
        cut = text.index("      - {rule: 100, protocol: tcp")
        os.unlink(cfg)
        time.sleep(0.3)
        with open(cfg, "w") as f:
            f.write(text[:cut])
            f.flush()
            time.sleep(1.0)
            half = run(IP, "netns", "exec", ns, NFT, "list", "table", "inet", "vpcfw", check=False).stdout
            results.append(("a half-written new file is not applied (the deny rule stays)", "dport 26 " in half))
            f.write(text[cut:])
        results.append(("the file once written whole is enforced", enforced(27)))
        results.append(("the daemon is still running", daemon.poll() is None))
    finally:
        if daemon and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=10)
        run(IP, "netns", "del", ns, check=False)
        log.flush()
        log.seek(0)
        text = log.read()
        shutil.rmtree(work, ignore_errors=True)
    rc = report(results, "daemon config watching")
    if rc:
        print(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
