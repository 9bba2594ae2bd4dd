"""docs/guide.md cannot drift from code that compiles.

Every ```cpp and ```cmake block in the guide must be preceded by a line

    <!-- snippet: PATH -->            the whole file PATH (relative to the repo)
    <!-- snippet: PATH#NAME -->       the lines between "[snippet:NAME]" and
                                      "[/snippet:NAME]" markers in PATH

and equal that text exactly. The files are sources the build compiles (the
examples, examples/guide/) or builds (the out-of-tree project that
tests/install builds against the installed package), so every snippet
compiles. Relative links in the guide must name files that exist. With
--hello, the guide's first program is run: each worker prints its line, and
SIGTERM stops it with status 0.

    check_guide.py --root SRC [--hello BIN]   check (ctest example_guide)
    check_guide.py --root SRC --fix           rewrite the guide's blocks from the sources
"""

import argparse
import os
import re
import signal
import subprocess
import sys

SNIPPET = re.compile(r"^<!--\s*snippet:\s*(\S+?)(?:#(\S+))?\s*-->\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")
CHECKED = {"cpp", "c++", "cmake"}


def extract(root, path, name):
    with open(os.path.join(root, path)) as f:
        lines = f.read().split("\n")
    if name is None:
        return "\n".join(lines).rstrip("\n")
    begin = [i for i, l in enumerate(lines) if "[snippet:%s]" % name in l]
    end = [i for i, l in enumerate(lines) if "[/snippet:%s]" % name in l]
    if len(begin) != 1 or len(end) != 1 or end[0] < begin[0]:
        raise ValueError("%s: snippet markers for '%s' missing or repeated" % (path, name))
    return "\n".join(lines[begin[0] + 1:end[0]])


def check_blocks(root, guide_path, fix):
    with open(guide_path) as f:
        lines = f.read().split("\n")
    errors = []
    out = []
    i = 0
    blocks = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            out.append(lines[i])
            i += 1
            continue
        lang = m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        body = "\n".join(lines[i + 1:j])
        prev = next((l for l in reversed(out) if l.strip()), "")
        source = SNIPPET.match(prev)
        if lang in CHECKED:
            blocks += 1
            if not source:
                errors.append("guide.md:%d: a ```%s block without a <!-- snippet: ... --> source"
                              % (i + 1, lang))
            else:
                try:
                    want = extract(root, source.group(1), source.group(2))
                except (OSError, ValueError) as e:
                    errors.append("guide.md:%d: %s" % (i + 1, e))
                    want = body
                if want != body and not fix:
                    errors.append("guide.md:%d: differs from %s (run check_guide.py --fix)"
                                  % (i + 1, prev.strip()))
                body = want
        out.append(lines[i])
        out.extend(body.split("\n") if body else [])
        out.append(lines[j] if j < len(lines) else "```")
        i = j + 1
    if fix:
        with open(guide_path, "w") as f:
            f.write("\n".join(out))
    return blocks, errors


def check_links(root, guide_path):
    errors = []
    with open(guide_path) as f:
        text = f.read()
    base = os.path.dirname(guide_path)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(base, target.split("#")[0]))
        if not os.path.exists(path):
            errors.append("guide.md links to %s, which does not exist" % target)
    return errors


def run_hello(binary):
    """Every worker prints "worker I of N: 42" once; SIGTERM stops it with 0."""
    p = subprocess.Popen([binary], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline().strip()
    m = re.match(r"^worker \d+ of (\d+): 42$", first)
    n = int(m.group(1)) if m else 1
    lines = sorted([first] + [p.stdout.readline().strip() for _ in range(n - 1)])
    p.send_signal(signal.SIGTERM)
    status = p.wait(timeout=10)
    want = sorted("worker %d of %d: 42" % (i, n) for i in range(n))
    if not m or lines != want or status != 0:
        return ["hello printed %r and exited %s; expected %r and 0" % (lines, status, want)]
    return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--hello")
    ap.add_argument("--fix", action="store_true")
    args = ap.parse_args()
    guide = os.path.join(args.root, "docs", "guide.md")
    blocks, errors = check_blocks(args.root, guide, args.fix)
    print("%s %d code blocks match their sources" % ("FAIL" if errors else "PASS", blocks))
    link_errors = check_links(args.root, guide)
    print("%s every relative link of the guide exists" % ("FAIL" if link_errors else "PASS"))
    errors += link_errors
    if args.hello:
        hello_errors = run_hello(args.hello)
        print("%s the guide's first program runs and stops on SIGTERM" %
              ("FAIL" if hello_errors else "PASS"))
        errors += hello_errors
    for e in errors:
        print("  " + e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
