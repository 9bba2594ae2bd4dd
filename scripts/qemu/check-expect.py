#!/usr/bin/python3
"""Check the host-side expectations a QEMU guest run left behind.

Usage: check-expect.py [--require] EXPECT_FILE NSID=IMAGE...

Each non-empty line of EXPECT_FILE not starting with '#' must read
    pattern NSID BYTE_OFFSET LENGTH SEED
and means: in namespace NSID's image file, byte BYTE_OFFSET+i equals
(SEED + i*131) % 251 for every 0 <= i < LENGTH. Numbers are decimal (or 0x hex).
Prints one line per expectation; exits 0 when all hold (and, with --require,
at least one exists), 1 otherwise.
"""
import os
import sys

CHUNK = 251 * 4096  # a multiple of the pattern's period (251)


def pattern_period(seed):
    return bytes((seed + i * 131) % 251 for i in range(251))


def check(image, offset, length, seed):
    """Return None if the range matches, else a description of the mismatch."""
    size = os.path.getsize(image)
    if offset + length > size:
        return f"range ends at {offset + length}, past the image size {size}"
    period = pattern_period(seed)
    with open(image, "rb") as f:
        f.seek(offset)
        done = 0
        while done < length:
            n = min(CHUNK, length - done)
            data = f.read(n)
            if len(data) != n:
                return f"short read at byte {offset + done}"
            # Expected bytes for i in [done, done+n): the period rotated by done % 251.
            phase = done % 251
            want = (period[phase:] + period[:phase]) * (n // 251 + 2)
            want = want[:n]
            if data != want:
                bad = [j for j in range(n) if data[j] != want[j]]
                first = bad[0]
                return (f"{len(bad)} of {n} bytes differ in the chunk at byte {offset + done}; "
                        f"first at byte {offset + done + first} (i={done + first}): "
                        f"got 0x{data[first]:02x}, want 0x{want[first]:02x}")
            done += n
    return None


def main(argv):
    require = False
    if argv and argv[0] == "--require":
        require = True
        argv = argv[1:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 1
    expect_file = argv[0]
    images = {}
    for spec in argv[1:]:
        nsid, _, path = spec.partition("=")
        images[int(nsid)] = path

    lines = []
    if os.path.exists(expect_file):
        with open(expect_file, encoding="utf-8", errors="replace") as f:
            lines = [(n, l.strip()) for n, l in enumerate(f, 1)]
    lines = [(n, l) for n, l in lines if l and not l.startswith("#")]

    failures = 0
    checked = 0
    for lineno, line in lines:
        fields = line.split()
        where = f"{os.path.basename(expect_file)}:{lineno}"
        try:
            if len(fields) != 5 or fields[0] != "pattern":
                raise ValueError("expected: pattern NSID BYTE_OFFSET LENGTH SEED")
            nsid, offset, length, seed = (int(x, 0) for x in fields[1:])
            if nsid not in images:
                raise ValueError(f"no namespace {nsid} (have {sorted(images)})")
            if offset < 0 or length <= 0 or seed < 0:
                raise ValueError("offset and seed must be >= 0 and length > 0")
        except ValueError as e:
            print(f"expect {where}: FAIL malformed line {line!r}: {e}")
            failures += 1
            continue
        what = f"ns{nsid} bytes [{offset}, {offset + length}) seed {seed}"
        problem = check(images[nsid], offset, length, seed)
        checked += 1
        if problem:
            print(f"expect {where}: FAIL {what}: {problem}")
            failures += 1
        else:
            print(f"expect {where}: OK   {what} ({length} bytes match in {os.path.basename(images[nsid])})")

    if require and not lines:
        print(f"expect: FAIL no expectations in {expect_file}: the default guest scripts must "
              "register at least one 'pattern' line to prove passthrough reached the device")
        return 1
    print(f"expect: {checked} checked, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
