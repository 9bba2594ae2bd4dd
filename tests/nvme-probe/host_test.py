#!/usr/bin/python3
"""Host tests of the nvme-probe CLI: what it says without (or with) NVMe devices.

Usage: host_test.py NVME_PROBE cli|permission

  cli         exit codes and messages of list / info / usage errors / --help,
              and that every -o json output is one valid JSON document.
  permission  exit code 3 for an unprivileged user: against a root-only NVMe
              device node when the host has one, else SKIPPED (exit 77). Also
              checks exit 3 when the path itself cannot be looked up.

The real devices are tested in the QEMU guest (tests/nvme/guest.d/20-nvme-probe.sh).
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

PROBE = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "nvme-probe"
MODE = sys.argv[2] if len(sys.argv) > 2 else "cli"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

failures = []
checks = 0


def run(*args, prefix=()):
    env = dict(os.environ, NO_COLOR="", TERM="dumb")
    p = subprocess.run([*prefix, PROBE, *args], capture_output=True, text=True, env=env,
                       timeout=60, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def check(what, cond, detail=""):
    global checks
    checks += 1
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what} {detail}")
        failures.append(what)


def check_json(what, text):
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        check(f"{what}: valid JSON", False, f"({e}): {text!r}")
        return {}
    check(f"{what}: valid JSON", isinstance(doc, dict))
    check(f"{what}: schema_version 1", doc.get("schema_version") == 1, repr(doc))
    return doc


def host_has_nvme():
    try:
        return any(n.startswith("nvme") for n in os.listdir("/sys/class/nvme"))
    except OSError:
        return False


def test_cli():
    rc, out, err = run("--help")
    check("--help exits 0", rc == 0, f"rc={rc}")
    for sub in ("list", "info", "health"):
        check(f"--help lists {sub}", sub in out, out)
    rc, out, err = run("info", "--help")
    check("info --help exits 0", rc == 0 and "DEVICE" in out, f"rc={rc} {out!r}")
    rc, out, err = run("--version")
    check("--version exits 0", rc == 0 and "nvme-probe" in out, f"rc={rc} {out!r}")

    # Usage errors exit 2.
    for args in ((), ("bogus",), ("info",), ("list", "-o", "xml"), ("list", "--no-such-flag"),
                 ("health",), ("list", "extra")):
        rc, out, err = run(*args)
        check(f"usage error {' '.join(args) or '(no arguments)'} exits 2", rc == 2,
              f"rc={rc} stderr={err!r}")

    if host_has_nvme():
        # A host with NVMe: list works and reports the controllers.
        rc, out, err = run("list")
        check("list exits 0 with NVMe present", rc == 0, f"rc={rc} {err!r}")
        rc, out, err = run("list", "-o", "json")
        doc = check_json("list -o json", out)
        check("list -o json: controllers", len(doc.get("controllers", [])) > 0, out)
    else:
        rc, out, err = run("list")
        check("list without NVMe exits 1", rc == 1, f"rc={rc}")
        check("list without NVMe says so",
              "no NVMe controllers found: /sys/class/nvme is empty" in err, repr(err))
        check("list without NVMe prints nothing on stdout", out == "", repr(out))
        for flag in ("-o", "--output-format"):
            rc, out, err = run("list", flag, "json")
            check(f"list {flag} json without NVMe exits 1", rc == 1, f"rc={rc}")
            doc = check_json(f"list {flag} json", out)
            check("no-device JSON: ok false", doc.get("ok") is False, out)
            check("no-device JSON: command list", doc.get("command") == "list", out)
            check("no-device JSON: controllers []", doc.get("controllers") == [], out)
            error = doc.get("error") or {}
            check("no-device JSON: error.kind no_devices", error.get("kind") == "no_devices", out)
            check("no-device JSON: error.message",
                  "no NVMe controllers found" in error.get("message", ""), out)

    # info / health on things that are not NVMe devices.
    rc, out, err = run("info", "/dev/nonexistent")
    check("info /dev/nonexistent exits 1", rc == 1, f"rc={rc}")
    check("info /dev/nonexistent says no such device",
          "/dev/nonexistent" in err and "no such device" in err, repr(err))
    rc, out, err = run("info", "/dev/nonexistent", "-o", "json")
    doc = check_json("info /dev/nonexistent -o json", out)
    check("info /dev/nonexistent JSON error.kind not_found",
          (doc.get("error") or {}).get("kind") == "not_found", out)

    with tempfile.TemporaryDirectory() as tmp:
        regular = os.path.join(tmp, "disk.img")
        with open(regular, "wb") as f:
            f.write(b"\0" * 4096)
        for sub in ("info", "health"):
            rc, out, err = run(sub, regular)
            check(f"{sub} on a regular file exits 1", rc == 1, f"rc={rc}")
            check(f"{sub} on a regular file says it is not an NVMe device",
                  "is not an NVMe device (it is a regular file)" in err, repr(err))
        rc, out, err = run("info", regular, "-o", "json")
        doc = check_json("info regular file -o json", out)
        check("info regular file JSON: ok false", doc.get("ok") is False, out)
        check("info regular file JSON: error.kind not_nvme",
              (doc.get("error") or {}).get("kind") == "not_nvme", out)
        rc, out, err = run("info", tmp)
        check("info on a directory exits 1", rc == 1 and "a directory" in err, f"rc={rc} {err!r}")

    rc, out, err = run("info", "/dev/null")
    check("info /dev/null exits 1", rc == 1, f"rc={rc}")
    check("info /dev/null says it is not an NVMe device", "is not an NVMe device" in err, repr(err))
    rc, out, err = run("health", "/dev/null", "-o", "json")
    doc = check_json("health /dev/null -o json", out)
    check("health /dev/null JSON: command health", doc.get("command") == "health", out)
    check("health /dev/null exits 1", rc == 1, f"rc={rc}")


def can_drop_privileges():
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def root_only_nvme_nodes():
    nodes = []
    for name in sorted(os.listdir("/dev")):
        if not (name.startswith("ng") or name.startswith("nvme")):
            continue
        path = os.path.join("/dev", name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and st.st_uid == 0 \
                and not st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
            nodes.append(path)
    return nodes


def test_permission():
    if not can_drop_privileges():
        print("SKIPPED: permission test needs root and setpriv to run as an unprivileged user")
        return 77

    # The path cannot even be looked up by the unprivileged user: exit 3 too.
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        hidden = os.path.join(tmp, "device")
        open(hidden, "w").close()
        rc, out, err = run("info", hidden, prefix=NOBODY)
        check("info on a path nobody may look up exits 3", rc == 3, f"rc={rc} {err!r}")
        check("... and says to run as root", "run as root" in err, repr(err))
        rc, out, err = run("info", hidden, "-o", "json", prefix=NOBODY)
        doc = check_json("permission error -o json", out)
        check("permission JSON: error.kind permission_denied",
              (doc.get("error") or {}).get("kind") == "permission_denied", out)

    nodes = [n for n in root_only_nvme_nodes() if os.path.basename(n)[-1].isdigit()]
    if not nodes:
        print("SKIPPED: no root-only NVMe device node on this host (the QEMU guest test "
              "tests/nvme/guest.d/20-nvme-probe.sh covers it)")
        return 1 if failures else 77
    for node in nodes[:2]:
        rc, out, err = run("info", node, prefix=NOBODY)
        check(f"info {node} as nobody exits 3", rc == 3, f"rc={rc} {err!r}")
        check(f"info {node} as nobody says to run as root", "run as root" in err, repr(err))
    return 0


def main():
    if not os.access(PROBE, os.X_OK):
        print(f"FAIL: {PROBE} is not an executable")
        return 1
    if MODE == "cli":
        test_cli()
        rc = 0
    elif MODE == "permission":
        rc = test_permission()
    else:
        print(f"unknown mode {MODE}")
        return 2
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    if failures:
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
