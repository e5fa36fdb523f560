#!/usr/bin/python3
"""`cpack -G DEB` of the build tree into a temporary directory, then the
package read back with dpkg-deb (never installed here): the files and their
modes, the unit naming the packaged binaries, the example config as a
conffile (and valid), Depends from dpkg-shlibdeps naming the libraries the
binaries link, and maintainer scripts that never enable or start the service.

usage: check_deb.py BUILD_DIR VPCFW"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def main():
    build, vpcfw = sys.argv[1], sys.argv[2]
    for tool in ("cpack", "dpkg-deb"):
        if not shutil.which(tool):
            print(f"skipped: {tool} is not installed")
            return 77
    failures = []

    def check(ok, what):
        print(("ok  " if ok else "FAIL") + " " + what)
        if not ok:
            failures.append(what)

    have_daemon = os.path.exists(os.path.join(build, "vpcfwd"))
    with tempfile.TemporaryDirectory(prefix="vpcfw-deb-") as tmp:
        r = run("cpack", "-G", "DEB", "-B", tmp, "--config", os.path.join(build, "CPackConfig.cmake"), cwd=build)
        debs = glob.glob(os.path.join(tmp, "*.deb"))
        check(r.returncode == 0 and len(debs) == 1, f"cpack built one .deb ({debs}; rc {r.returncode})")
        if not debs:
            print(r.stdout, r.stderr)
            return 1
        deb = debs[0]
        print("package:", os.path.basename(deb), os.path.getsize(deb), "bytes")

        listing = run("dpkg-deb", "-c", deb).stdout.splitlines()
        files = {}
        for line in listing:
            parts = line.split()
            files[parts[5].removeprefix(".")] = (parts[0], parts[1])
        expect = {
            "/usr/bin/vpcfw": "-rwxr-xr-x",
            "/lib/systemd/system/vpcfwd.service": "-rw-r--r--",
            "/lib/systemd/system/vpcfwd-lab.service": "-rw-r--r--",
            "/usr/lib/sysusers.d/vpcfw.conf": "-rw-r--r--",
            "/usr/lib/tmpfiles.d/vpcfw.conf": "-rw-r--r--",
            "/etc/vpcfw/vpcfw.yaml": "-rw-r--r--",
            "/usr/share/doc/vpcfw/README.md": "-rw-r--r--",
        }
        if have_daemon:
            expect["/usr/sbin/vpcfwd"] = "-rwxr-xr-x"
        for path, mode in expect.items():
            got = files.get(path)
            check(got == (mode, "root/root"), f"{path} {mode} root/root (got {got})")
        check(not any(p.startswith("/usr/local") for p in files), "nothing under /usr/local")
        check(all(owner == "root/root" for _, owner in files.values()), "every file root/root")
        check(not any(m[0] == "-" and ("w" in m[5] or "w" in m[8]) for m, _ in files.values()),
              "no group- or world-writable file")

        ctl = os.path.join(tmp, "control")
        run("dpkg-deb", "-e", deb, ctl)
        fields = run("dpkg-deb", "-f", deb).stdout
        print(fields)
        check(re.search(r"^Package: vpcfw$", fields, re.M) is not None, "Package: vpcfw")
        depends = re.search(r"^Depends: (.*)$", fields, re.M)
        depends = depends.group(1) if depends else ""
        libs = ["libnftnl11", "libmnl0", "libyaml-cpp0.7", "libfmt9", "libnetfilter-conntrack3", "libc6", "libstdc++6"]
        if have_daemon:
            libs.append("libsystemd0")
        for lib in libs:
            check(re.search(rf"(^|, ){re.escape(lib)}( |,|$)", depends) is not None, f"Depends names {lib}")
        with open(os.path.join(ctl, "conffiles")) as f:
            check(f.read().split() == ["/etc/vpcfw/vpcfw.yaml"], "conffiles: /etc/vpcfw/vpcfw.yaml")

        for script in ("postinst", "prerm", "postrm"):
            path = os.path.join(ctl, script)
            check(os.path.exists(path) and os.stat(path).st_mode & 0o777 == 0o755, f"{script} present, 0755")
            check(run("sh", "-n", path).returncode == 0, f"{script} is valid sh")
            text = open(path).read()
            code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
            # Never `systemctl enable`/`start`/`restart` (try-restart of a running daemon on upgrade is fine).
            bad = re.findall(r"systemctl[^\n]*\b(enable|start|restart|reload-or-restart)\b", code.replace("try-restart", ""))
            check(not bad, f"{script} neither enables nor starts the service ({bad})")
        postinst = open(os.path.join(ctl, "postinst")).read()
        for step in ("systemd-sysusers", "systemd-tmpfiles --create", "systemctl daemon-reload"):
            check(step in postinst, f"postinst runs {step}")

        root = os.path.join(tmp, "root")
        run("dpkg-deb", "-x", deb, root)
        unit = open(os.path.join(root, "lib/systemd/system/vpcfwd.service")).read()
        for line in ("ExecStart=/usr/sbin/vpcfwd", "ExecReload=/usr/bin/vpcfw reload", "Type=notify"):
            check(re.search(rf"^{re.escape(line)}$", unit, re.M) is not None, f"unit: {line}")
        r = run(os.path.join(root, "usr/bin/vpcfw"), "validate", os.path.join(root, "etc/vpcfw/vpcfw.yaml"))
        check(r.returncode == 0, f"the packaged vpcfw validates the packaged config ({r.stdout.strip()}{r.stderr.strip()})")
        r = run("file", os.path.join(root, "usr/bin/vpcfw")) if shutil.which("file") else None
        if r:
            check("not stripped" not in r.stdout, "binaries are stripped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
