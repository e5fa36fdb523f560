"""A throwaway container with systemd as PID 1 over this machine's own /usr,
for tests that need a real systemd (this machine's PID 1 is not one):

    systemd-nspawn --keep-unit --register=no -D / --volatile=yes --private-network -M NAME -b

--volatile=yes gives the container a fresh tmpfs root and /etc, with this
machine's /usr mounted read-only; --private-network gives it its own network
namespace (only lo), so its nftables rules and packets never reach ours.
install() puts a build in the way `cmake --install --prefix /usr` does: into
a DESTDIR staging tree, then copied into the container, whose /usr is first
made writable by an overlay (upper layer on the container's tmpfs). Nothing is
installed into this machine's /usr or /etc. The container is always powered
off and its leftovers removed (stop(), also from atexit and on SIGTERM).

Container.available() says why a container cannot run here (the caller skips
with exit 77 and that reason); a container that cannot boot raises Unavailable
with nspawn's own last lines."""
import atexit
import ctypes
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

NSPAWN = shutil.which("systemd-nspawn") or "/usr/bin/systemd-nspawn"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"

# Units that would hang, fail or spam in a volatile container and that no test
# needs: the console login, nftables.service (no /etc/nftables.conf; it would
# also flush the container's ruleset), networkd/resolved (they would manage
# the test's links), and periodic jobs.
MASKED = [
    "console-getty.service", "getty.target", "nftables.service",
    "systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
    "systemd-resolved.service", "systemd-timesyncd.service", "systemd-homed.service",
    "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer",
    "fstrim.timer", "logrotate.timer", "dpkg-db-backup.timer", "systemd-tmpfiles-clean.timer",
]


def _die_with_parent():
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Unavailable(Exception):
    """A container cannot run on this machine (the test is skipped)."""


class Container:
    def __init__(self, prefix="vpcfwsd"):
        # A machine name unique to this run: also the container's hostname.
        self.name = f"{prefix}-{os.getpid() % 100000}-{random.randrange(16**4):04x}"
        self.proc = None
        self.leader = None
        self.log_path = None
        self.boot_seconds = None
        self.work = tempfile.mkdtemp(prefix=f"{self.name}-")
        atexit.register(self.stop)

    @staticmethod
    def available():
        """None when a container can be tried here, else why not."""
        if os.geteuid() != 0:
            return "systemd-nspawn needs root"
        if not os.access(NSPAWN, os.X_OK):
            return "systemd-nspawn is not installed (package systemd-container)"
        if not os.access(NSENTER, os.X_OK):
            return "nsenter is not installed (package util-linux)"
        if not os.path.exists("/usr/lib/systemd/systemd"):
            return "no /usr/lib/systemd/systemd to boot (package systemd)"
        if not os.path.exists("/sys/fs/cgroup/cgroup.controllers") and not os.path.isdir("/sys/fs/cgroup/systemd"):
            return "no cgroup hierarchy systemd can use (/sys/fs/cgroup)"
        return None

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout=60.0):
        """Boots the container and waits until its systemd has finished
        starting up (running or degraded). Returns the boot time in seconds."""
        args = [NSPAWN, "--keep-unit", "--register=no", "-D", "/", "--volatile=yes", "--private-network",
                "-M", self.name, "--console=read-only", "-b", "systemd.firstboot=off"]
        args += [f"systemd.mask={u}" for u in MASKED]
        self.log_path = os.path.join(self.work, "console.log")
        log = open(self.log_path, "w")
        t0 = time.monotonic()
        # If this process dies without stop() (killed by a test timeout), nspawn gets SIGTERM,
        # which powers the container off; a SIGTERM to us runs stop() through atexit.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        log.close()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"systemd-nspawn exited with {self.proc.returncode} before booting: "
                                  + self._log_tail())
            self.leader = self.leader or self._find_leader()
            if self.leader:
                r = self.run("systemctl", "is-system-running", check=False, timeout=10)
                state = r.stdout.strip()
                if state in ("running", "degraded"):
                    self.boot_seconds = time.monotonic() - t0
                    return self.boot_seconds
                if state in ("maintenance", "stopping"):
                    raise RuntimeError(f"container {self.name} is {state}: " + self._log_tail())
            time.sleep(0.1)
        raise RuntimeError(f"container {self.name} did not finish booting in {timeout:.0f} s: " + self._log_tail())

    def _find_leader(self):
        """The container's PID 1, as seen from here: the nspawn child whose
        innermost PID is 1."""
        try:
            tasks = os.listdir(f"/proc/{self.proc.pid}/task")
        except FileNotFoundError:
            return None
        for t in tasks:
            try:
                with open(f"/proc/{self.proc.pid}/task/{t}/children") as f:
                    children = f.read().split()
            except FileNotFoundError:
                continue
            for c in children:
                try:
                    with open(f"/proc/{c}/status") as f:
                        nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")]
                except FileNotFoundError:
                    continue
                if nspid and nspid[0][-1] == "1" and len(nspid[0]) > 1:
                    return int(c)
        return None

    def _log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except (OSError, TypeError):
            return "(no console log)"

    def stop(self, timeout=30.0):
        """Powers the container off (SIGTERM to nspawn asks PID 1 for a clean
        shutdown), kills it if it does not go, removes what it left."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.proc = None
        self.leader = None
        # nspawn leaves an empty propagation directory named after the machine.
        for d in (f"/run/systemd/nspawn/propagate/{self.name}",):
            try:
                os.rmdir(d)
            except OSError:
                pass
        if self.work and os.path.isdir(self.work):
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    # -- inside ------------------------------------------------------------
    def argv(self, *cmd, user=None, group=None, groups=None):
        """A command line that runs `cmd` inside the container (all its
        namespaces), as root or as `user`:`group` with exactly the
        supplementary `groups` (setpriv; none when empty), every capability dropped."""
        base = [NSENTER, "-t", str(self.leader), "-a", "--"]
        if user is None:
            return base + list(cmd)
        ids = ["--reuid", user, "--regid", group or user]
        ids += ["--groups", groups] if groups else ["--clear-groups"]
        ids += ["--inh-caps=-all", "--bounding-set=-all"]
        return base + ["/usr/bin/setpriv"] + ids + ["--"] + list(cmd)

    def run(self, *cmd, check=True, input=None, timeout=60, user=None, group=None, groups=None):
        if not self.leader:
            raise RuntimeError("container not started")
        r = subprocess.run(self.argv(*cmd, user=user, group=group, groups=groups), capture_output=True, text=True,
                           input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"in {self.name}: {' '.join(cmd)}: rc {r.returncode}: {r.stdout.strip()} "
                               f"{r.stderr.strip()}")
        return r

    def popen(self, *cmd, **kw):
        return subprocess.Popen(self.argv(*cmd), **kw)

    def root(self, path=""):
        """`path` inside the container, as a path from here (its mount namespace's root)."""
        return f"/proc/{self.leader}/root/{path.lstrip('/')}"

    def write(self, path, text, mode=0o644):
        """Writes a file inside the container, atomically (temp file + rename, as editors do)."""
        tmp = path + ".tmp-nspawn"
        self.run("/bin/sh", "-c", f"umask 077; mkdir -p \"$(dirname '{path}')\" && cat > '{tmp}' && chmod {mode:o} '{tmp}' && mv -f '{tmp}' '{path}'",
                 input=text)

    def journal(self, unit, since_cursor=None):
        args = ["journalctl", "--no-pager", "-o", "cat", "-u", unit]
        if since_cursor:
            args += ["--after-cursor", since_cursor]
        return self.run(*args, check=False).stdout

    def journal_cursor(self):
        r = self.run("journalctl", "--no-pager", "-n", "0", "--show-cursor", check=False)
        for line in r.stdout.splitlines():
            if line.startswith("-- cursor: "):
                return line[len("-- cursor: "):].strip()
        return None

    def overlay_usr(self):
        """Makes the container's /usr writable: an overlay whose lower layer
        is this machine's /usr (read-only) and whose upper layer sits on the
        container's tmpfs root, so nothing reaches the real /usr."""
        self.run("/bin/sh", "-c", "mkdir -p /.usr-overlay/upper /.usr-overlay/work && "
                 "mount -t overlay overlay -o lowerdir=/usr,upperdir=/.usr-overlay/upper,"
                 "workdir=/.usr-overlay/work /usr")

    def install(self, build_dir, prefix="/usr"):
        """`cmake --install BUILD --prefix /usr` into a staging tree, copied
        into the container; then what the package's postinst does (sysusers,
        tmpfiles, daemon-reload). Returns the staged file list."""
        stage = os.path.join(self.work, "stage")
        r = subprocess.run(["cmake", "--install", build_dir, "--prefix", prefix],
                           env=dict(os.environ, DESTDIR=stage), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"cmake --install: {r.stdout}{r.stderr}")
        files = []
        for d, _, names in os.walk(stage):
            files += [os.path.relpath(os.path.join(d, n), stage) for n in names]
        self.overlay_usr()
        tar = subprocess.Popen(["tar", "-C", stage, "-cf", "-", "."], stdout=subprocess.PIPE)
        # --keep-directory-symlink: the container's /lib is a symlink to usr/lib.
        x = subprocess.run(self.argv("tar", "-C", "/", "--keep-directory-symlink", "--no-same-owner", "-xf", "-"),
                           stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() != 0 or x.returncode != 0:
            raise RuntimeError(f"copy into the container: {x.stderr}")
        self.run("systemd-sysusers")
        self.run("systemd-tmpfiles", "--create", "vpcfw.conf")
        self.run("systemctl", "daemon-reload")
        return sorted(files)
