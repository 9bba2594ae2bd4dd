#!/bin/bash
# Guest test of polled NVMe completions (TargetOptions::polled, the worker's
# IOPOLL ring), run by scripts/nvme-qemu-test.sh inside the QEMU guest with
# nvme.poll_queues set: nvme_iopoll_guest_test (data read back, flush, zeroes,
# timers and messages not starved, shutdown with polled commands in flight),
# then ringline-blockbench --hipri reports polled jobs without errors.
# Correctness only: TCG timing says nothing about speed.
set -euo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
: "${RINGLINE_BUILD_DIR:?}" "${RINGLINE_NVME_NS1:?}" "${RINGLINE_NVME_NS1_BLOCK:?}"
[[ "$(cat "/sys/class/block/$(basename "$RINGLINE_NVME_NS1_BLOCK")/queue/io_poll")" == 1 ]] ||
  skip "the namespace has no poll queues (RINGLINE_QEMU_NVME_POLL_QUEUES=0?)"
test_bin=$RINGLINE_BUILD_DIR/bin/nvme_iopoll_guest_test
bench=$RINGLINE_BUILD_DIR/bin/ringline-blockbench
for b in "$test_bin" "$bench"; do [[ -x "$b" ]] || fail "$b is not built"; done

"$test_bin"

# Interrupts of the controller's I/O queues (nvmeCqN, N >= 1): polled
# commands raise none, so the count must not grow by anything like the I/O
# count (6.1 would complete silently by interrupt without poll queues).
ctrl=$(basename "$(readlink -f "/sys/class/block/$(basename "$RINGLINE_NVME_NS1_BLOCK")/device")")
io_irqs() {
  awk -v c="$ctrl" '$NF ~ "^" c "q[1-9][0-9]*$" { for (i = 2; i <= NF - 3; ++i) n += $i } END { print n + 0 }' /proc/interrupts
}
out=$(mktemp)
irq_before=$(io_irqs)
"$bench" --filename="$RINGLINE_NVME_NS1" --rw=randread --bs=4k --iodepth=8 --runtime=1 \
  --time_based --hipri --output-format=json --output="$out" 2>"$out.err"
irq_after=$(io_irqs)
cat "$out.err"
python3 - "$out" "$irq_before" "$irq_after" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
job = d["jobs"][0]
irqs = int(sys.argv[3]) - int(sys.argv[2])
print(f"blockbench --hipri: {d['read']['ios']} reads, polled={job['polled']}, "
      f"errors={d['errors']}, I/O queue interrupts meanwhile: {irqs}")
ok = job["polled"] is True and d["errors"] == 0 and d["read"]["ios"] > 0
# Set-up (identify) and the other CPU's noise may raise a few; every read
# completing by interrupt would raise one each.
ok = ok and irqs < d["read"]["ios"] / 10
sys.exit(0 if ok else 1)
PY
[[ ! -s "$out.err" ]] || fail "blockbench --hipri warned: $(cat "$out.err")"
rm -f "$out" "$out.err"
echo "PASS: polled completions"
