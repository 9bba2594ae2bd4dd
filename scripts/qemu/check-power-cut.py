#!/usr/bin/python3
"""Check the images after a power cut against the writer's acknowledgment log.

Usage: check-power-cut.py [--fua-unchecked NAME]... ACKS NAME=IMAGE...

ACKS is the log tests/nvme/power-cut/writer.py appended to in the guest:
    W NAME OFFSET LENGTH SEED FUA   a write was acknowledged (FUA: 1 or 0)
    F NAME                          a FLUSH of NAME was acknowledged
The writer sends one request at a time per export, so a FLUSH line covers
every W line of that export above it. Each extent is written once, over
zeroes. Every extent falls into one class:
    flushed     acknowledged before an acknowledged FLUSH: must hold its pattern
    fua         written with FUA, no FLUSH after it: must hold its pattern,
                unless NAME is given with --fua-unchecked (then counted only)
    unflushed   plain write, no FLUSH after it: may hold its pattern or not
                (counted: a lost one shows the cache was really volatile)
A promised extent that does not hold its pattern fails the check. A torn
extent (neither its pattern nor all zeroes) is reported for every class, and
fails the check for the promised ones.

Prints one summary line per export and one line per failure; exits 0 when
every promised extent holds, 1 otherwise. --json FILE writes the counts.
"""
import argparse
import importlib.util
import json
import os
import sys

_spec = importlib.util.spec_from_file_location(
    "check_expect", os.path.join(os.path.dirname(os.path.abspath(__file__)), "check-expect.py"))
check_expect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_expect)

CLASSES = ("flushed", "fua", "unflushed")


def classify(acks_path):
    """Return {name: [(class, offset, length, seed)]} from the log, in order."""
    pending = {}   # name -> [(offset, length, seed, fua)] since the last FLUSH
    extents = {}
    with open(acks_path, encoding="ascii", errors="replace") as f:
        lines = f.read().split("\n")
    # The last line may be cut short by the kill: use complete lines only.
    for lineno, line in enumerate(lines[:-1], 1):
        fields = line.split()
        if not fields:
            continue
        name = fields[1] if len(fields) > 1 else ""
        if fields[0] == "W" and len(fields) == 6:
            off, length, seed, fua = (int(x) for x in fields[2:])
            pending.setdefault(name, []).append((off, length, seed, fua))
            extents.setdefault(name, [])
        elif fields[0] == "F" and len(fields) == 2:
            for off, length, seed, _fua in pending.pop(name, []):
                extents.setdefault(name, []).append(("flushed", off, length, seed))
        else:
            raise SystemExit(f"{acks_path}:{lineno}: cannot parse {line!r}")
    for name, writes in pending.items():
        for off, length, seed, fua in writes:
            extents[name].append(("fua" if fua else "unflushed", off, length, seed))
    return extents


def is_zero(image, offset, length):
    with open(image, "rb") as f:
        f.seek(offset)
        return f.read(length) == bytes(length)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fua-unchecked", action="append", default=[], metavar="NAME")
    ap.add_argument("--json")
    ap.add_argument("acks")
    ap.add_argument("images", nargs="+", metavar="NAME=IMAGE")
    args = ap.parse_args()
    images = dict(spec.split("=", 1) for spec in args.images)

    extents = classify(args.acks)
    failures = []
    summary = {}
    for name in sorted(extents):
        if name not in images:
            failures.append(f"{name}: no image given for this export")
            continue
        counts = {c: {"held": 0, "lost": 0, "torn": 0, "bytes": 0} for c in CLASSES}
        for cls, off, length, seed in extents[name]:
            mismatch = check_expect.check(images[name], off, length, seed)
            c = counts[cls]
            c["bytes"] += length
            if mismatch is None:
                c["held"] += 1
                continue
            torn = not is_zero(images[name], off, length)
            c["torn" if torn else "lost"] += 1
            promised = cls == "flushed" or (cls == "fua" and name not in args.fua_unchecked)
            if promised:
                failures.append(f"{name}: {cls} extent {off}+{length} (seed {seed}) "
                                f"{'torn' if torn else 'lost (reads as zeroes)'}: {mismatch}")
        summary[name] = counts
        parts = []
        for cls in CLASSES:
            c = counts[cls]
            note = " (not promised by the device)" if cls == "fua" and name in args.fua_unchecked else ""
            parts.append(f"{cls} {c['held']} held / {c['lost']} lost / {c['torn']} torn{note}")
        print(f"{name}: " + "; ".join(parts))
    if not extents:
        failures.append("the acknowledgment log holds no write: nothing was checked")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
    for line in failures:
        print(f"FAIL: {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
