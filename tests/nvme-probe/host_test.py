#!/usr/bin/python3
"""Host tests of the nvme-probe CLI: what it says without (or with) NVMe devices.

Usage: host_test.py NVME_PROBE cli|permission|uring|check

  cli         exit codes and messages of list / info / usage errors / --help,
              and that every -o json output is one valid JSON document.
  permission  exit code 3 for an unprivileged user: against a root-only NVMe
              device node when the host has one, else SKIPPED (exit 77). Also
              checks exit 3 when the path itself cannot be looked up, `check`
              on a root-only file, and `uring` without CAP_IPC_LOCK.
  uring       the verdict for this kernel (ringline runs here: exit 0,
              DEFER_TASKRUN supported) and the documented JSON keys.
  check       `check` on a 64 MiB file under /var/tmp (read measurement,
              --write verify checked against the file's bytes, --offset/--size),
              the --write refusals on a device, error paths and usage errors,
              and the progress bar only on a terminal.

The real devices are tested in the QEMU guest (tests/nvme/guest.d/20-nvme-probe.sh).
"""

import json
import os
import pty
import select
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
                       timeout=120, stdin=subprocess.DEVNULL)
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
    for sub in ("list", "info", "health", "uring", "check"):
        check(f"--help lists {sub}", sub in out, out)
    rc, out, err = run("info", "--help")
    check("info --help exits 0", rc == 0 and "DEVICE" in out, f"rc={rc} {out!r}")
    rc, out, err = run("--version")
    check("--version exits 0", rc == 0 and "nvme-probe" in out, f"rc={rc} {out!r}")

    # Usage errors exit 2.
    for args in ((), ("bogus",), ("info",), ("list", "-o", "xml"), ("list", "--no-such-flag"),
                 ("health",), ("list", "extra"), ("uring", "extra"), ("uring", "-o", "xml"),
                 ("uring", "--buffers", "0"), ("uring", "--buffers", "lots"), ("check",)):
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

    # check on a file only root may open (the directory is searchable): the
    # open itself fails, as it would on a root-only device.
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        private = os.path.join(tmp, "disk.img")
        with open(private, "wb") as f:
            f.truncate(1 << 20)
        os.chmod(private, 0o600)
        rc, out, err = run("check", private, "--seconds", "0.2", prefix=NOBODY)
        check("check on a root-only file as nobody exits 3", rc == 3, f"rc={rc} {err!r}")
        check("... and says to run as root", "run as root" in err, repr(err))
        rc, out, err = run("check", private, "--seconds", "0.2", "-o", "json", prefix=NOBODY)
        doc = check_json("check permission error -o json", out)
        check("check permission JSON: error.kind permission_denied",
              (doc.get("error") or {}).get("kind") == "permission_denied", out)

    # uring without CAP_IPC_LOCK: buffers beyond RLIMIT_MEMLOCK are a warning,
    # not a failure (the engine falls back to unregistered buffers).
    rc, out, err = run("uring", "--buffers", "1GiB", "-o", "json", prefix=NOBODY)
    doc = check_json("uring as nobody -o json", out)
    memlock = doc.get("memlock") or {}
    check("uring as nobody: no CAP_IPC_LOCK", memlock.get("cap_ipc_lock") is False, out)
    if memlock.get("soft_bytes") is not None and memlock["soft_bytes"] < 1 << 30:
        check("uring as nobody: 1 GiB of buffers do not fit", memlock.get("buffers_fit") is False,
              out)
        check("uring as nobody: ... a warning naming RLIMIT_MEMLOCK",
              any("RLIMIT_MEMLOCK" in w for w in doc.get("warnings", [])), out)
        check("uring as nobody: ... but still exit 0 / ok", rc == 0 and doc.get("ok") is True,
              f"rc={rc}")
    rc, out, err = run("uring", "--buffers", "1GiB", prefix=NOBODY)
    check("uring text as nobody: verdict line", "Verdict: ringline can run here" in out, out)

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


URING_KEYS = ["schema_version", "command", "ok", "kernel", "io_uring_disabled", "setup",
              "setup_flags", "opcodes", "memlock", "verdict", "problems", "warnings"]
CHECK_KEYS = ["schema_version", "command", "ok", "target", "device", "kind", "access", "nsid",
              "size_bytes", "alignment", "geometry", "registered_buffers", "io_size", "region",
              "reads", "verify", "completion_placement", "warnings"]


def test_uring():
    rc, out, err = run("uring")
    check("uring exits 0 on this kernel", rc == 0, f"rc={rc} {out!r} {err!r}")
    lines = out.strip().splitlines()
    check("uring text ends in the verdict", lines and lines[-1] == "Verdict: ringline can run here",
          repr(out[-300:]))
    check("uring text shows DEFER_TASKRUN",
          any(l.split()[:2] == ["DEFER_TASKRUN", "yes"] for l in lines), out)
    check("uring text: no colour when not a terminal", "\033" not in out, repr(out))

    for fmt in ("-o", "--output-format"):
        rc, out, err = run("uring", fmt, "json")
        check(f"uring {fmt} json exits 0", rc == 0, f"rc={rc}")
        doc = check_json(f"uring {fmt} json", out)
    check("uring JSON: keys in the documented order", list(doc) == URING_KEYS, list(doc))
    check("uring JSON: command", doc.get("command") == "uring", out)
    check("uring JSON: ok", doc.get("ok") is True, out)
    check("uring JSON: verdict", doc.get("verdict") == {"can_run": True,
                                                       "message": "ringline can run here"}, out)
    check("uring JSON: no problems", doc.get("problems") == [], out)
    check("uring JSON: no error object", "error" not in doc, out)
    kernel = doc.get("kernel", {})
    check("uring JSON: kernel keys", list(kernel) == ["release", "major", "minor", "patch",
                                                      "minimum", "supported"], kernel)
    check("uring JSON: kernel release is uname -r", kernel.get("release") == os.uname().release,
          kernel)
    check("uring JSON: kernel supported, minimum 6.1",
          kernel.get("supported") is True and kernel.get("minimum") == "6.1", kernel)
    check("uring JSON: io_uring_disabled is a number",
          isinstance(doc.get("io_uring_disabled"), int), out)
    check("uring JSON: setup permitted", doc.get("setup") == {"permitted": True, "error": None},
          doc.get("setup"))
    flags = {f["name"]: f for f in doc.get("setup_flags", [])}
    check("uring JSON: setup flags", sorted(flags) == sorted(
        ["SQE128|CQE32", "SINGLE_ISSUER", "DEFER_TASKRUN", "SQPOLL", "IOPOLL"]), list(flags))
    check("uring JSON: flag keys", all(list(f) == ["name", "supported", "required", "since"]
                                        for f in flags.values()), flags)
    check("uring JSON: DEFER_TASKRUN supported and required",
          flags.get("DEFER_TASKRUN", {}).get("supported") is True
          and flags["DEFER_TASKRUN"]["required"] is True, flags.get("DEFER_TASKRUN"))
    check("uring JSON: SQPOLL and IOPOLL optional",
          flags.get("SQPOLL", {}).get("required") is False
          and flags.get("IOPOLL", {}).get("required") is False, flags)
    check("uring JSON: every required flag supported",
          all(f["supported"] for f in flags.values() if f["required"]), flags)
    ops = {o["name"]: o for o in doc.get("opcodes", [])}
    for name in ("READ_FIXED", "WRITE_FIXED", "SEND_ZC", "SENDMSG_ZC", "URING_CMD"):
        check(f"uring JSON: opcode {name} listed and supported",
              ops.get(name, {}).get("supported") is True, ops.get(name))
    check("uring JSON: opcode keys", all(list(o) == ["name", "opcode", "supported", "required",
                                                     "since"] for o in ops.values()), ops)
    check("uring JSON: every required opcode supported",
          all(o["supported"] for o in ops.values() if o["required"]), ops)
    memlock = doc.get("memlock", {})
    check("uring JSON: memlock keys", list(memlock) == ["soft_bytes", "hard_bytes", "cap_ipc_lock",
                                                        "buffers_bytes", "buffers_fit", "detail"],
          memlock)
    check("uring JSON: default --buffers is 64 MiB", memlock.get("buffers_bytes") == 64 << 20,
          memlock)
    check("uring JSON: warnings is a list", isinstance(doc.get("warnings"), list), out)

    rc, out, err = run("uring", "--buffers", "4KiB", "-o", "json")
    doc = check_json("uring --buffers 4KiB", out)
    check("uring --buffers 4KiB: 4096 bytes fit",
          doc.get("memlock", {}).get("buffers_bytes") == 4096
          and doc["memlock"]["buffers_fit"] is True and doc.get("warnings") == [], out)


def fill_expected(seed, offset, length):
    """The verify pattern: byte x of the target is (seed + x * 131) % 251."""
    period = bytes((seed + i * 131) % 251 for i in range(251))
    start = offset % 251
    reps = (start + length) // 251 + 1
    return (period * reps)[start:start + length]


def pattern_blocks(path, seed, io_size=4096):
    """(offsets of blocks holding the pattern, offsets of blocks that are neither
    the pattern nor zero)."""
    zero = bytes(io_size)
    patterned, other = [], []
    with open(path, "rb") as f:
        offset = 0
        while True:
            block = f.read(io_size)
            if len(block) < io_size:
                break
            if block == fill_expected(seed, offset, io_size):
                patterned.append(offset)
            elif block != zero:
                other.append(offset)
            offset += io_size
    return patterned, other


def check_doc_ok(what, doc, path, size):
    check(f"{what}: keys in the documented order", list(doc) == CHECK_KEYS, list(doc))
    check(f"{what}: ok", doc.get("ok") is True, doc.get("error"))
    check(f"{what}: command check", doc.get("command") == "check", doc.get("command"))
    check(f"{what}: target and device", doc.get("target") == path and doc.get("device") == path,
          (doc.get("target"), doc.get("device")))
    check(f"{what}: kind file, O_DIRECT",
          doc.get("kind") == "file" and doc.get("access") == "o_direct" and doc.get("nsid") is None,
          (doc.get("kind"), doc.get("access")))
    check(f"{what}: size_bytes", doc.get("size_bytes") == size, doc.get("size_bytes"))
    alignment = doc.get("alignment", {})
    check(f"{what}: alignment keys", list(alignment) == ["logical_block_size",
                                                        "physical_block_size", "memory_alignment"],
          alignment)
    check(f"{what}: alignment values are powers of two",
          all(isinstance(v, int) and v > 0 and v & (v - 1) == 0 for v in alignment.values()),
          alignment)
    check(f"{what}: geometry keys", list(doc.get("geometry", {})) == [
        "max_transfer_bytes", "read_only", "volatile_write_cache", "supports_fua",
        "supports_discard", "supports_write_zeroes", "discard_zeroes_data", "rotational"],
          doc.get("geometry"))
    check(f"{what}: io_size 4096", doc.get("io_size") == 4096, doc.get("io_size"))
    check(f"{what}: registered buffers (root)", doc.get("registered_buffers") is True
          or os.geteuid() != 0, doc.get("registered_buffers"))
    reads = doc.get("reads", [])
    check(f"{what}: reads at QD1 and QD32", [r.get("queue_depth") for r in reads] == [1, 32],
          reads)
    for r in reads:
        qd = r.get("queue_depth")
        check(f"{what}: QD{qd} keys", list(r) == ["queue_depth", "ios", "seconds", "iops",
                                                  "mib_per_second", "latency_ns"], list(r))
        check(f"{what}: QD{qd} iops > 0", r.get("iops", 0) > 0 and r.get("ios", 0) > 0, r)
        lat = r.get("latency_ns", {})
        check(f"{what}: QD{qd} latency p50 <= p99",
              list(lat) == ["p50", "p99", "mean"] and 0 < lat["p50"] <= lat["p99"], lat)
    check(f"{what}: warnings is a list", isinstance(doc.get("warnings"), list), doc)


def test_check():
    size = 64 << 20
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="nvme-probe-check.") as tmp:
        path = os.path.join(tmp, "disk.img")
        with open(path, "wb") as f:
            f.truncate(size)

        # Read-only measurement, JSON.
        rc, out, err = run("check", path, "--seconds", "1", "-o", "json")
        check("check file -o json exits 0", rc == 0, f"rc={rc} {err!r}")
        doc = check_json("check file -o json", out)
        check_doc_ok("check file", doc, path, size)
        check("check file: each QD ran about --seconds",
              all(0.9 <= r.get("seconds", 0) < 5 for r in doc.get("reads", [])), doc.get("reads"))
        check("check file: region is the whole file",
              doc.get("region") == {"offset": 0, "bytes": size}, doc.get("region"))
        check("check file: no verify without --write", doc.get("verify") is None, doc.get("verify"))
        check("check file: nothing on stderr (not a terminal: no progress bar)", err == "",
              repr(err))
        patterned, other = pattern_blocks(path, 0)
        check("check file: read-only (the file is still all zeroes)",
              patterned == [] and other == [], other[:4])

        # Text.
        rc, out, err = run("check", path, "--seconds", "0.3")
        check("check file text exits 0", rc == 0, f"rc={rc} {err!r}")
        check("check file text: kind and result",
              "regular file, O_DIRECT" in out and "Check passed" in out, out)
        check("check file text: QD1 and QD32 rows",
              any(l.split()[:1] == ["1"] for l in out.splitlines())
              and any(l.split()[:1] == ["32"] for l in out.splitlines()), out)
        check("check file text: no carriage returns or colour", "\r" not in out + err
              and "\033" not in out + err, repr(out + err))

        # --write: the verify pass, then the file's bytes checked here.
        rc, out, err = run("check", path, "--seconds", "0.3", "--write", "-o", "json")
        check("check --write on a file exits 0", rc == 0, f"rc={rc} {err!r} {out[-500:]!r}")
        doc = check_json("check --write -o json", out)
        check_doc_ok("check --write", doc, path, size)
        v = doc.get("verify") or {}
        check("check --write: verify keys", list(v) == [
            "passed", "blocks", "bytes", "seed", "pattern", "writes", "flushed", "reads",
            "mismatched_blocks", "first_mismatch"], list(v))
        check("check --write: verify passed", v.get("passed") is True
              and v.get("mismatched_blocks") == 0 and v.get("first_mismatch") is None, v)
        check("check --write: 1024 blocks of 4 KiB, flushed",
              v.get("blocks") == 1024 and v.get("bytes") == 4 << 20 and v.get("flushed") is True, v)
        check("check --write: write and read-back IOPS > 0",
              v.get("writes", {}).get("ios") == 1024 and v["writes"]["iops"] > 0
              and v.get("reads", {}).get("ios") == 1024 and v["reads"]["iops"] > 0, v)
        seed = v.get("seed", 0)
        patterned, other = pattern_blocks(path, seed)
        check("check --write: the file holds the pattern in exactly 1024 blocks",
              len(patterned) == 1024, len(patterned))
        check("check --write: every other block is still zero", other == [], other[:4])
        check("check --write: blocks spread over the file", patterned and
              max(patterned) - min(patterned) > size // 2, (patterned[:1], patterned[-1:]))

        # --offset/--size: a region of exactly 1024 blocks is written whole.
        os.truncate(path, 0)
        os.truncate(path, size)
        rc, out, err = run("check", path, "--seconds", "0.2", "--write", "--offset", "8MiB",
                           "--size", "4MiB", "-o", "json")
        check("check --write --offset 8MiB --size 4MiB exits 0", rc == 0, f"rc={rc} {err!r}")
        doc = check_json("check --offset/--size -o json", out)
        check("check region", doc.get("region") == {"offset": 8 << 20, "bytes": 4 << 20},
              doc.get("region"))
        seed = (doc.get("verify") or {}).get("seed", 0)
        with open(path, "rb") as f:
            data = f.read()
        check("check region: the whole region holds the pattern",
              data[8 << 20:12 << 20] == fill_expected(seed, 8 << 20, 4 << 20))
        check("check region: nothing outside it was written",
              data[:8 << 20] == bytes(8 << 20) and data[12 << 20:] == bytes(size - (12 << 20)))

        # The progress bar: on stderr, only when stderr is a terminal.
        master, slave = pty.openpty()
        env = dict(os.environ, TERM="xterm")
        p = subprocess.Popen([PROBE, "check", path, "--seconds", "0.5", "-o", "json"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                             env=env)
        os.close(slave)
        tty = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            tty += chunk
        out = p.stdout.read().decode()
        p.wait(timeout=30)
        os.close(master)
        check("progress bar on a terminal: exit 0", p.returncode == 0, p.returncode)
        check("progress bar on a terminal: drawn for QD1 and QD32",
              b"read QD1" in tty and b"read QD32" in tty and b"IOPS" in tty, tty[-300:])
        check("progress bar on a terminal: erased at the end", tty.endswith(b"\r\033[K"),
              tty[-40:])
        check_json("progress bar on a terminal: stdout is still one JSON document", out)

        # --write on something that is not a regular file.
        node = os.path.join(tmp, "blockdev")
        fake = False
        try:
            # Major 60 is reserved for local/experimental use and unregistered
            # here: the node is a block device that cannot be opened, so not
            # even a broken refusal could write anywhere.
            with open("/proc/devices") as f:
                registered = any(l.split()[:1] == ["60"] for l in f)
            if not registered:
                os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(60, 0))
                fake = True
        except OSError:
            pass
        if not fake:
            node = next((os.path.join("/dev", n) for n in sorted(os.listdir("/dev"))
                         if stat.S_ISBLK(os.stat(os.path.join("/dev", n)).st_mode)), None)
        if node is None:
            print("SKIPPED: no block device node to test the --write refusal with")
        else:
            rc, out, err = run("check", node, "--write", "--seconds", "0.2")
            check("check --write on a block device without confirmation exits 2", rc == 2,
                  f"rc={rc} {err!r}")
            check("... names the flag to confirm with",
                  f"--i-know-this-destroys-data={node}" in err, repr(err))
            check("... prints nothing on stdout", out == "", repr(out))
            rc, out, err = run("check", node, "--write", "-o", "json",
                               "--i-know-this-destroys-data=/dev/some-other-disk")
            check("check --write with a confirmation naming another device exits 2", rc == 2,
                  f"rc={rc} {err!r}")
            check("... says it does not name the target", "does not name" in err, repr(err))
            rc, out, err = run("check", path, "--write", "--i-know-this-destroys-data=" + node)
            check("check --write on a file with a confirmation naming a device exits 2", rc == 2,
                  f"rc={rc} {err!r}")
            if fake:
                # Confirmed: the refusal is passed and the open fails (ENXIO).
                rc, out, err = run("check", node, "--write", "--i-know-this-destroys-data=" + node,
                                   "-o", "json")
                doc = check_json("check --write confirmed on an unopenable device", out)
                check("... gets past the refusal to the open (exit 1, not_found)",
                      rc == 1 and (doc.get("error") or {}).get("kind") == "not_found",
                      f"rc={rc} {out!r}")

        # Usage errors exit 2.
        for args in (("check", path, "--seconds", "0"), ("check", path, "--seconds", "abc"),
                     ("check", path, "--i-know-this-destroys-data=" + path),
                     ("check", path, "--offset", "100"), ("check", path, "--offset", "64MiB"),
                     ("check", path, "--size", "128MiB"), ("check", path, "--size", "1KiB"),
                     ("check", path, "-o", "xml"), ("check", path, "extra"),
                     ("check", path, "--no-such-flag")):
            rc, out, err = run(*args)
            check(f"usage error {' '.join(args[2:])} exits 2", rc == 2 and err != "",
                  f"rc={rc} stderr={err!r}")

        # Targets that are not there or not usable.
        rc, out, err = run("check", os.path.join(tmp, "missing"), "-o", "json")
        doc = check_json("check missing -o json", out)
        check("check on a missing path exits 1, not_found",
              rc == 1 and (doc.get("error") or {}).get("kind") == "not_found", f"rc={rc} {out!r}")
        rc, out, err = run("check", os.path.join(tmp, "missing"))
        check("check on a missing path says so", rc == 1 and "no such file" in err, repr(err))
        rc, out, err = run("check", tmp, "-o", "json")
        doc = check_json("check directory -o json", out)
        check("check on a directory exits 1, unsupported_target",
              rc == 1 and (doc.get("error") or {}).get("kind") == "unsupported_target", out)
        rc, out, err = run("check", "/dev/null", "-o", "json")
        doc = check_json("check /dev/null -o json", out)
        check("check /dev/null exits 1, unsupported_target",
              rc == 1 and (doc.get("error") or {}).get("kind") == "unsupported_target"
              and doc.get("ok") is False, out)
        tiny = os.path.join(tmp, "tiny.img")
        with open(tiny, "wb") as f:
            f.truncate(512)
        rc, out, err = run("check", tiny)
        check("check on a 512-byte file exits 1 and says it is too small",
              rc == 1 and "too small" in err, f"rc={rc} {err!r}")


def main():
    if not os.access(PROBE, os.X_OK):
        print(f"FAIL: {PROBE} is not an executable")
        return 1
    if MODE == "cli":
        test_cli()
        rc = 0
    elif MODE == "permission":
        rc = test_permission()
    elif MODE == "uring":
        test_uring()
        rc = 0
    elif MODE == "check":
        test_check()
        rc = 0
    else:
        print(f"unknown mode {MODE}")
        return 2
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    if failures:
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
