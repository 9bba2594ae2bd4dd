#!/bin/bash
# Guest test of completion-aware placement (ringline/block/placement.h), run by
# scripts/nvme-qemu-test.sh inside the QEMU guest (2 vCPUs):
#   - the CPUs on which nvme0n1's completions arrive, worked out here from
#     sysfs and procfs (blk-mq cpu_list, the nvme0qN interrupts' effective
#     affinity), match what `nvme-probe info` and `nvme-probe check` report;
#   - `nvme-probe check`, ringline-blockbench (no --cpus) and blockserve
#     (--workers 1) run their worker on one of those CPUs, and say so;
#   - with --cpus on another CPU, blockbench warns once, naming the IRQ and
#     the fix.
# With one I/O queue per CPU (QEMU's default max_ioqpairs) every CPU is local:
# nothing to fix, which the test checks too. With fewer queues than vCPUs
# (RINGLINE_QEMU_NVME_IOQPAIRS=2: one interrupt queue and one poll queue) only
# the CPU the queue's interrupt targets is local: the case placement fixes.
set -euo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "--- $*"; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
: "${RINGLINE_BUILD_DIR:?}" "${RINGLINE_NVME_NS1:?}" "${RINGLINE_NVME_NS1_BLOCK:?}"
bin=$RINGLINE_BUILD_DIR/bin
for b in nvme-probe ringline-blockbench blockserve; do
  [[ -x "$bin/$b" ]] || fail "$bin/$b is not built"
done
command -v python3 >/dev/null || skip "python3 is not installed on the host"

ns1=$RINGLINE_NVME_NS1
disk=$(basename "$RINGLINE_NVME_NS1_BLOCK")
ctrl=$(basename "$(readlink -f "/sys/class/block/$disk/device")")
work=$(mktemp -d)
nproc_all=$(nproc)

step "sysfs and procfs of $disk ($ctrl), $nproc_all CPUs"
for q in /sys/class/block/"$disk"/mq/*; do echo "$q: cpu_list $(cat "$q/cpu_list")"; done
grep -E " ${ctrl}q[0-9]+\$" /proc/interrupts || true
# Expected local CPUs: for each interrupt queue nvmeCqN (N >= 1: hctx N-1),
# the CPUs of its cpu_list that its interrupt's effective affinity contains.
python3 - "$disk" "$ctrl" >"$work/expected.json" <<'EOF'
import json, os, re, sys
disk, ctrl = sys.argv[1], sys.argv[2]
def cpus(text):
    out = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
irqs = {}
for line in open("/proc/interrupts"):
    m = re.match(r"\s*(\d+):.*\s(" + re.escape(ctrl) + r"q(\d+))\s*$", line)
    if m and int(m.group(3)) >= 1:
        irqs[int(m.group(3)) - 1] = (int(m.group(1)), m.group(2))
local, queue_cpus, queues = set(), set(), []
for hctx, (irq, name) in sorted(irqs.items()):
    c = cpus(open(f"/sys/class/block/{disk}/mq/{hctx}/cpu_list").read())
    a = cpus(open(f"/proc/irq/{irq}/effective_affinity_list").read())
    local |= c & a
    queue_cpus |= c
    queues.append({"index": hctx, "irq": irq, "irq_name": name, "cpus": sorted(c), "irq_cpus": sorted(a)})
print(json.dumps({"local_cpus": sorted(local), "has_preference": queue_cpus != local,
                  "queues": queues}))
EOF
cat "$work/expected.json"

step "nvme-probe info and check"
"$bin/nvme-probe" info "$ns1" -o json >"$work/info.json"
"$bin/nvme-probe" info "$ns1" | grep "Completions"
"$bin/nvme-probe" check "$ns1" --seconds 0.3 -o json >"$work/check.json"
"$bin/nvme-probe" check "$ns1" --seconds 0.3 | grep -E "Completions|Measured on"

step "ringline-blockbench, placement chosen"
"$bin/ringline-blockbench" --filename="$ns1" --rw=randread --bs=4k --iodepth=1 --runtime=0.3 \
  --time_based --output-format=json --output="$work/bench.json" 2>"$work/bench.err"
cat "$work/bench.err"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["placement"]["summary"])' "$work/bench.json"

step "blockserve --workers 1"
"$bin/blockserve" -p 10899 -w 1 -e "ns1=$ns1,ro" >"$work/blockserve.log" 2>&1 &
bs_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/blockserve.log" && break; sleep 0.1; done
kill -TERM "$bs_pid"
wait "$bs_pid" || fail "blockserve exited $?: $(cat "$work/blockserve.log")"
grep -E "placement|completions|cross-CPU" "$work/blockserve.log" || true

step "ringline-blockbench on a CPU where completions do not arrive"
nonlocal=$(python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
print(next((c for c in range(int(sys.argv[2])) if c not in e["local_cpus"]), ""))' \
  "$work/expected.json" "$nproc_all")
if [[ -n "$nonlocal" ]]; then
  "$bin/ringline-blockbench" --filename="$ns1" --rw=randread --bs=4k --iodepth=1 --runtime=0.2 \
    --time_based --cpus="$nonlocal" --output-format=json --output="$work/remote.json" \
    2>"$work/remote.err"
  cat "$work/remote.err"
else
  echo "every CPU is local: no remote CPU to try"
fi

step "compare"
python3 - "$work" "$nonlocal" <<'EOF'
import json, os, re, sys
work, nonlocal_cpu = sys.argv[1], sys.argv[2]
failures = []
def load(name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)
def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(what)

exp = load("expected.json")
check("the controller has interrupt-driven queues", len(exp["queues"]) > 0, exp)
info = load("info.json")["namespaces"][0]["completion_placement"]
check("info: kind found", info["kind"] == "found", info)
check("info: local CPUs as sysfs/procfs say", info["local_cpus"] == exp["local_cpus"],
      (info["local_cpus"], exp["local_cpus"]))
check("info: has_preference", info["has_preference"] == exp["has_preference"], info)
check("info: queues and IRQs",
      [(q["index"], q["irq"], q["irq_name"], q["cpus"], q["irq_cpus"]) for q in info["queues"]] ==
      [(q["index"], q["irq"], q["irq_name"], q["cpus"], q["irq_cpus"]) for q in exp["queues"]],
      (info["queues"], exp["queues"]))

chk = load("check.json")
cp = chk["completion_placement"]
check("check: same placement as info", cp["local_cpus"] == exp["local_cpus"], cp)
check("check: ran on a local CPU", cp["cpu"] in exp["local_cpus"], cp)
check("check: no warnings", chk["warnings"] == [], chk["warnings"])

bench = load("bench.json")
job = bench["jobs"][0]
check("blockbench: job on a local CPU", job["cpu"] in exp["local_cpus"], bench["placement"])
check("blockbench: Geometry::completion_cpus",
      job["completion_cpus"] == (exp["local_cpus"] if exp["has_preference"] else []), job)
check("blockbench: no placement warning", bench["placement"]["warnings"] == [], bench["placement"])
check("blockbench: nothing on stderr", open(os.path.join(work, "bench.err")).read() == "")

log = open(os.path.join(work, "blockserve.log")).read()
m = re.search(r"placement: worker 0 on CPU (\d+)", log)
check("blockserve: logs its placement", m is not None, log)
if m:
    check("blockserve: worker 0 on a local CPU", int(m.group(1)) in exp["local_cpus"], log)
check("blockserve: no cross-CPU warning with one worker", "cross-CPU" not in log, log)

if exp["has_preference"]:
    print(f"fewer interrupt queues than CPUs: completions local only on {exp['local_cpus']}")
    err = open(os.path.join(work, "remote.err")).read()
    remote = load("remote.json")
    check("blockbench --cpus on a remote CPU: kept", remote["jobs"][0]["cpu"] == int(nonlocal_cpu),
          remote["jobs"])
    check("blockbench --cpus on a remote CPU: one warning",
          err.count("warning:") == 1 and "cross-CPU wake-up" in err, err)
    irq = exp["queues"][0]["irq"]
    check("the warning names the IRQ and the fixes",
          f"IRQ {irq}" in err and "--cpus=" in err and "smp_affinity_list" in err, err)
else:
    print("one interrupt queue per CPU: every CPU is local, nothing to fix")
    check("every CPU is local", exp["local_cpus"] == sorted(
        {c for q in exp["queues"] for c in q["cpus"]}), exp)

if failures:
    print(f"FAIL: {len(failures)} check(s) failed")
    sys.exit(1)
print("PASS: placement")
EOF
