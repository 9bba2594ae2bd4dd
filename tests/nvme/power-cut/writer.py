#!/usr/bin/python3
"""The client of the power-cut test (scripts/nvme-qemu-test.sh --power-cut).

Usage: writer.py --log PATH --region K/N --seed S NAME=URI:BYTES...

Writes a known pattern to each export through libnbd until it is killed: one
synchronous request at a time per export, the exports in turn. Each write
covers a fresh extent of 4-64 KiB in region K of N of the export (no extent is
written twice, so what an extent holds after the cut is either its pattern or
the zeroes it had before); one write in three carries FUA, and each export gets
a FLUSH after every 6 to 20 of its writes (long enough that FUA writes with no
FLUSH after them are common at the cut).

Every acknowledgment is appended to the log *after* the server's reply
arrived, one line per reply:
    W NAME OFFSET LENGTH SEED FUA   (FUA is 1 or 0)
    F NAME                          (a FLUSH of NAME was acknowledged)
The log lives on the guest's results share (9p, cache=none): each os.write is
a synchronous 9p write that returns once QEMU has written the line into the
host's file, so the host keeps every line whose write returned when QEMU is
killed. A line that was not written only means one extent fewer is checked.

Byte i of an extent with seed S is (S + i*131) % 251: the pattern that
scripts/qemu/check-expect.py checks (its pattern_period is reused here).

Once every export has had one FLUSH acknowledged, the line
RINGLINE-POWER-CUT-ARMED is printed on stdout (the console): the host starts
its countdown to the cut from there.
"""
import argparse
import importlib.util
import os
import random
import sys
import time

import nbd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_spec = importlib.util.spec_from_file_location(
    "check_expect", os.path.join(REPO, "scripts", "qemu", "check-expect.py"))
check_expect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_expect)

SLOT = 64 * 1024  # each extent lives in its own 64 KiB slot
BLOCK = 4096      # extents are 4 KiB-aligned multiples of 4 KiB (every backend's block size)
ARMED = "RINGLINE-POWER-CUT-ARMED"


class Export:
    """One export: its libnbd handle and the slots of its region not yet written."""

    def __init__(self, name, uri, size, region, regions, rng):
        self.name = name
        self.handle = nbd.NBD()
        self.handle.connect_uri(uri)
        if self.handle.get_size() != size:
            raise SystemExit(f"{name}: the export has {self.handle.get_size()} bytes, want {size}")
        if not self.handle.can_fua() or not self.handle.can_flush():
            raise SystemExit(f"{name}: the server does not offer FUA and FLUSH")
        span = size // regions // SLOT * SLOT
        start = (region - 1) * span
        self.slots = [start + i * SLOT for i in range(span // SLOT)]
        rng.shuffle(self.slots)
        self.until_flush = rng.randint(6, 20)
        self.flushed = False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--region", required=True, help="K/N: write in region K of N")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--limit-seconds", type=float, default=300.0)
    ap.add_argument("exports", nargs="+", help="NAME=URI:BYTES")
    args = ap.parse_args()
    region, regions = (int(x) for x in args.region.split("/"))
    if not 1 <= region <= regions:
        raise SystemExit(f"--region {args.region}: K must be in 1..N")
    rng = random.Random(args.seed)

    exports = []
    for spec in args.exports:
        name, _, rest = spec.partition("=")
        uri, _, size = rest.rpartition(":")
        exports.append(Export(name, uri, int(size), region, regions, rng))

    log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(line):
        data = (line + "\n").encode()
        if os.write(log, data) != len(data):
            raise SystemExit(f"short write to {args.log}")

    periods = {}
    writes = flushes = 0
    armed = False
    deadline = time.monotonic() + args.limit_seconds
    while time.monotonic() < deadline and any(e.slots for e in exports):
        for e in exports:
            if not e.slots:
                continue
            offset = e.slots.pop()
            length = rng.randint(1, SLOT // BLOCK) * BLOCK
            seed = rng.randint(0, 250)
            fua = rng.random() < 1 / 3
            if seed not in periods:
                periods[seed] = check_expect.pattern_period(seed)
            data = (periods[seed] * (length // 251 + 1))[:length]
            e.handle.pwrite(data, offset, nbd.CMD_FLAG_FUA if fua else 0)
            record(f"W {e.name} {offset} {length} {seed} {int(fua)}")
            writes += 1
            e.until_flush -= 1
            if e.until_flush == 0:
                e.handle.flush()
                record(f"F {e.name}")
                flushes += 1
                e.flushed = True
                e.until_flush = rng.randint(6, 20)
        if not armed and all(e.flushed for e in exports):
            armed = True
            print(f"{ARMED} after {writes} writes and {flushes} flushes", flush=True)
    # Not cut yet (every slot written, or the time limit): say so and wait for
    # the cut, so the host still kills a running guest.
    print(f"writer: {writes} writes and {flushes} flushes acknowledged; waiting for the power cut", flush=True)
    time.sleep(args.limit_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
