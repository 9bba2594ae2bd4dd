#!/usr/bin/python3
"""Checks scripts/qemu/check-power-cut.py on made-up images: that it passes when
every promised extent holds, and fails for each kind of loss the power-cut test
must catch (a flushed or FUA extent lost or torn) while an unflushed extent
lost or torn is only counted. Runs on the host in well under a second.
Prints PASS/FAIL per case; exits 0 when all pass."""
import importlib.util
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKER = os.path.join(REPO, "scripts", "qemu", "check-power-cut.py")
_spec = importlib.util.spec_from_file_location(
    "check_expect", os.path.join(REPO, "scripts", "qemu", "check-expect.py"))
check_expect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_expect)

SIZE = 1 << 20
# (line, offset, length, seed) of the writes in the log; F lines flush "d".
LOG = [
    "W d 0 8192 11 0",      # flushed by the F below
    "W d 65536 4096 12 1",  # FUA, then flushed
    "F d",
    "W d 131072 4096 13 1",  # FUA, no flush after it
    "W d 196608 12288 14 0",  # unflushed
    "W d 262144 4096 15 0",  # unflushed
]


def pattern(length, seed):
    period = check_expect.pattern_period(seed)
    return (period * (length // 251 + 1))[:length]


def write_image(path, skip=(), tear=None):
    """All logged extents written except the offsets in skip; tear one offset."""
    data = bytearray(SIZE)
    for line in LOG:
        f = line.split()
        if f[0] != "W":
            continue
        off, length, seed = int(f[2]), int(f[3]), int(f[4])
        if off in skip:
            continue
        chunk = pattern(length, seed)
        if off == tear:
            chunk = chunk[: length // 2] + bytes(length - length // 2)
        data[off:off + length] = chunk
    with open(path, "wb") as out:
        out.write(data)


def run(tmp, extra=(), **image):
    acks = os.path.join(tmp, "acks")
    with open(acks, "w") as f:
        f.write("\n".join(LOG) + "\n")
    img = os.path.join(tmp, "d.img")
    write_image(img, **image)
    p = subprocess.run([sys.executable, CHECKER, *extra, acks, f"d={img}"],
                       capture_output=True, text=True)
    return p.returncode, p.stdout


def main():
    cases = [
        # name, image args, extra args, want exit status, text the output must hold
        ("everything written", {}, (), 0, "flushed 2 held / 0 lost"),
        ("unflushed extents lost: counted only", {"skip": (196608, 262144)}, (), 0,
         "unflushed 0 held / 2 lost"),
        ("flushed extent lost", {"skip": (0,)}, (), 1, "FAIL: d: flushed extent 0+8192"),
        ("flushed FUA extent lost", {"skip": (65536,)}, (), 1, "FAIL: d: flushed extent 65536+4096"),
        ("FUA extent lost", {"skip": (131072,)}, (), 1, "FAIL: d: fua extent 131072+4096"),
        ("FUA extent lost, --fua-unchecked", {"skip": (131072,)}, ("--fua-unchecked", "d"), 0,
         "fua 0 held / 1 lost / 0 torn (not promised by the device)"),
        ("unflushed extent torn: counted only", {"tear": 196608}, (), 0,
         "unflushed 1 held / 0 lost / 1 torn"),
        ("flushed extent torn", {"tear": 0}, (), 1, "FAIL: d: flushed extent 0+8192 (seed 11) torn"),
    ]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, image, extra, want, text in cases:
            rc, out = run(tmp, extra, **image)
            ok = rc == want and text in out
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'}: {name} (exit {rc}, want {want})")
            if not ok:
                print("    output:\n" + "".join(f"      {line}\n" for line in out.splitlines()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
