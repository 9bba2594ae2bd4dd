#!/bin/bash
# Guest test of `nvme-probe uring` and `nvme-probe check` (tools/nvme-probe),
# run by scripts/nvme-qemu-test.sh inside the QEMU guest:
#   - uring: the Debian 12 kernel can run ringline (URING_CMD, DEFER_TASKRUN);
#   - check /dev/ng0n1, /dev/ng0n2 (NVMe passthrough) and /dev/nvme0n1
#     (O_DIRECT on the block device): kind, size and LBA size as the harness
#     promises, IOPS > 0 at QD1 and QD32, no warnings, nothing on stderr;
#   - --write refused (exit 2) on a device without the confirmation, and with
#     it a write/flush/read-back pass on ns2 bytes 48 MiB..52 MiB, registered
#     as a `pattern` expectation so the host checks the image (nothing else
#     registers anything there; nvme_guest_test only scratches ns2);
#   - exit 3 as an unprivileged user, exit 1 for the controller.
set -euo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "--- $*"; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
: "${RINGLINE_BUILD_DIR:?}" "${RINGLINE_RESULTS_DIR:?}" "${RINGLINE_NVME_NS1:?}"
probe="$RINGLINE_BUILD_DIR/bin/nvme-probe"
[[ -x "$probe" ]] || fail "$probe is not built (cmake --build ... --target nvme-probe)"
for tool in python3 setpriv; do
  command -v "$tool" >/dev/null || skip "$tool is not installed on the host (the guest runs it from the host's root)"
done

ctrl=$RINGLINE_NVME_CTRL ns1=$RINGLINE_NVME_NS1 ns2=$RINGLINE_NVME_NS2
ns1_block=$RINGLINE_NVME_NS1_BLOCK
work=$(mktemp -d)

# run EXPECTED_RC OUTFILE CMD...: stdout to OUTFILE, stderr to OUTFILE.err
# (shown); fails unless CMD exits with EXPECTED_RC.
run() {
  local want=$1 out=$2 rc=0
  shift 2
  echo "\$ $*"
  "$@" >"$out" 2>"$out.err" || rc=$?
  cat "$out.err" >&2
  [[ $rc == "$want" ]] || { cat "$out"; fail "'$*' exited $rc, expected $want"; }
}

step "uring"
run 0 "$work/uring.json" "$probe" uring -o json
run 0 "$work/uring.txt" "$probe" uring
tail -n 1 "$work/uring.txt" | grep -qx "Verdict: ringline can run here" ||
  fail "uring text does not end in 'Verdict: ringline can run here'"

step "check (read-only)"
run 0 "$work/ns1.json" "$probe" check "$ns1" --seconds 1 -o json
run 0 "$work/ns2.json" "$probe" check "$ns2" --seconds 1 -o json
run 0 "$work/ns1-block.json" "$probe" check "$ns1_block" --seconds 1 -o json
run 0 "$work/ns1.txt" "$probe" check "$ns1" --seconds 0.5
cat "$work/ns1.txt"
grep -q "NVMe namespace, passthrough" "$work/ns1.txt" || fail "check text lacks the kind"
grep -q "Check passed" "$work/ns1.txt" || fail "check text lacks 'Check passed'"
for f in "$work"/ns1.json.err "$work"/ns2.json.err "$work"/ns1-block.json.err "$work"/ns1.txt.err; do
  [[ ! -s "$f" ]] || fail "check wrote to stderr (not a terminal: no progress bar expected): $(cat "$f")"
done

step "check --write"
run 2 "$work/refused.txt" "$probe" check "$ns2" --write --seconds 0.2
grep -q -- "--i-know-this-destroys-data=$ns2" "$work/refused.txt.err" ||
  fail "the refusal does not name the confirmation flag"
run 2 "$work/refused2.txt" "$probe" check "$ns2" --write --i-know-this-destroys-data="$ns1" --seconds 0.2
verify_offset=$((48 << 20)) verify_bytes=$((4 << 20))
run 0 "$work/write.json" "$probe" check "$ns2" --write --i-know-this-destroys-data="$ns2" \
  --offset "$verify_offset" --size "$verify_bytes" --seconds 0.5 -o json

step "errors"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
run 3 "$work/nobody.json" as_nobody "$probe" check "$ns1" --seconds 0.2 -o json
run 3 "$work/nobody.txt" as_nobody "$probe" check "$ns1" --seconds 0.2
grep -q "run as root" "$work/nobody.txt.err" || fail "the permission error lacks the root/disk-group hint"
run 1 "$work/ctrl.json" "$probe" check "$ctrl" --seconds 0.2 -o json
run 1 "$work/missing.json" "$probe" check /dev/ng0n99 --seconds 0.2 -o json

step "compare"
python3 - "$work" "$verify_offset" "$verify_bytes" <<'EOF'
import json, os, sys

work, verify_offset, verify_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = os.environ
failures = []


def load(name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)


def check(what, got, want):
    if got == want:
        print(f"ok   {what}: {got!r}")
    else:
        print(f"FAIL {what}: nvme-probe says {got!r}, expected {want!r}")
        failures.append(what)


u = load("uring.json")
check("uring: ok", u["ok"], True)
check("uring: verdict", u["verdict"]["can_run"], True)
check("uring: kernel supported", u["kernel"]["supported"], True)
flags = {f["name"]: f["supported"] for f in u["setup_flags"]}
ops = {o["name"]: o["supported"] for o in u["opcodes"]}
check("uring: DEFER_TASKRUN", flags["DEFER_TASKRUN"], True)
check("uring: SQE128|CQE32", flags["SQE128|CQE32"], True)
check("uring: IOPOLL (poll_queues)", flags["IOPOLL"], True)
check("uring: URING_CMD", ops["URING_CMD"], True)

ns = {
    "ns1.json": (env["RINGLINE_NVME_NS1"], "nvme", "nvme_passthrough", 1,
                 int(env["RINGLINE_NVME_NS1_BYTES"]), int(env["RINGLINE_NVME_NS1_LBA"])),
    "ns2.json": (env["RINGLINE_NVME_NS2"], "nvme", "nvme_passthrough", 2,
                 int(env["RINGLINE_NVME_NS2_BYTES"]), int(env["RINGLINE_NVME_NS2_LBA"])),
    "ns1-block.json": (env["RINGLINE_NVME_NS1_BLOCK"], "block_device", "o_direct", None,
                       int(env["RINGLINE_NVME_NS1_BYTES"]), int(env["RINGLINE_NVME_NS1_LBA"])),
}
for name, (dev, kind, access, nsid, size, lba) in ns.items():
    d = load(name)
    p = f"check {dev}"
    check(f"{p}: ok", d["ok"], True)
    check(f"{p}: device", d["device"], dev)
    check(f"{p}: kind", d["kind"], kind)
    check(f"{p}: access", d["access"], access)
    check(f"{p}: nsid", d["nsid"], nsid)
    check(f"{p}: size_bytes", d["size_bytes"], size)
    check(f"{p}: logical_block_size", d["alignment"]["logical_block_size"], lba)
    check(f"{p}: io_size", d["io_size"], max(4096, lba))
    check(f"{p}: registered_buffers", d["registered_buffers"], True)
    check(f"{p}: warnings", d["warnings"], [])
    check(f"{p}: verify", d["verify"], None)
    check(f"{p}: queue depths", [r["queue_depth"] for r in d["reads"]], [1, 32])
    for r in d["reads"]:
        check(f"{p}: QD{r['queue_depth']} iops > 0", r["iops"] > 0 and r["ios"] > 0, True)
        lat = r["latency_ns"]
        check(f"{p}: QD{r['queue_depth']} 0 < p50 <= p99", 0 < lat["p50"] <= lat["p99"], True)

w = load("write.json")
p = "check --write ns2"
check(f"{p}: ok", w["ok"], True)
check(f"{p}: region", w["region"], {"offset": verify_offset, "bytes": verify_bytes})
v = w["verify"]
check(f"{p}: passed", v["passed"], True)
check(f"{p}: blocks (the whole region)", v["blocks"], verify_bytes // 4096)
check(f"{p}: flushed", v["flushed"], True)
check(f"{p}: mismatched_blocks", v["mismatched_blocks"], 0)
check(f"{p}: writes", v["writes"]["ios"], verify_bytes // 4096)
check(f"{p}: read back", v["reads"]["ios"], verify_bytes // 4096)
# Byte x of the device is (seed + x*131) % 251: as a harness expectation the
# region's first byte gives the seed.
harness_seed = (v["seed"] + verify_offset * 131) % 251
with open(os.path.join(env["RINGLINE_RESULTS_DIR"], "expect"), "a") as f:
    f.write(f"pattern 2 {verify_offset} {verify_bytes} {harness_seed}\n")
print(f"  registered: pattern 2 {verify_offset} {verify_bytes} {harness_seed}")

e = load("nobody.json")
check("check as nobody: error.kind", e["error"]["kind"], "permission_denied")
e = load("ctrl.json")
check("check controller: error.kind", e["error"]["kind"], "unsupported_target")
e = load("missing.json")
check("check /dev/ng0n99: error.kind", e["error"]["kind"], "not_found")

if failures:
    sys.exit(f"FAIL: {len(failures)} check(s) failed: {', '.join(failures)}")
print("all nvme-probe check JSON checks passed")
EOF

grep -q $'\033' "$work"/*.txt && fail "colour codes in output that is not a terminal"
echo "nvme-probe check guest checks passed"
