#!/usr/bin/python3
"""Print the load order of kernel modules and their dependencies.

Usage: kmod-order.py MODULES_DIR NAME...

MODULES_DIR is an unpacked lib/modules/<version> tree (no modules.dep needed:
the dependencies are read from each module's .modinfo `depends=` entry, as
modinfo does). Prints one line per module, dependencies first:
    <name>\t<path relative to MODULES_DIR>
Names are matched with '-' and '_' treated alike. Exits 1 if a module (or one
of its dependencies) is missing or only present compressed (busybox insmod
in the initramfs loads plain .ko files only).
"""
import os
import struct
import sys


def norm(name):
    return name.replace("-", "_")


def modinfo(path):
    """Return the .modinfo section of an ELF64 little-endian module as a dict."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not an ELF64 little-endian object")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i):
        base = shoff + i * shentsize
        name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, base)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    info = {}
    for i in range(shnum):
        name, off, size = section(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] != b".modinfo":
            continue
        for entry in data[off:off + size].split(b"\0"):
            key, sep, value = entry.partition(b"=")
            if sep:
                info.setdefault(key.decode(), value.decode(errors="replace"))
    return info


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    root = sys.argv[1]
    plain, compressed = {}, {}
    for dirpath, _dirs, files in os.walk(os.path.join(root, "kernel")):
        for fn in files:
            full = os.path.join(dirpath, fn)
            if fn.endswith(".ko"):
                plain[norm(fn[:-3])] = full
            elif ".ko." in fn:
                compressed[norm(fn.split(".ko.")[0])] = full

    order, state = [], {}

    def visit(name, chain):
        key = norm(name)
        if state.get(key) == "done":
            return
        if state.get(key) == "active":
            raise SystemExit(f"kmod-order: dependency cycle: {' -> '.join(chain + [name])}")
        path = plain.get(key)
        if path is None:
            why = "only compressed (" + compressed[key] + ")" if key in compressed else "not found"
            raise SystemExit(f"kmod-order: module {name} {why} under {root}"
                             + (f" (needed by {chain[-1]})" if chain else ""))
        state[key] = "active"
        deps = modinfo(path).get("depends", "")
        for dep in filter(None, deps.split(",")):
            visit(dep, chain + [name])
        state[key] = "done"
        order.append((os.path.basename(path)[:-3], os.path.relpath(path, root)))

    for name in sys.argv[2:]:
        visit(name, [])
    for name, rel in order:
        print(f"{name}\t{rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
