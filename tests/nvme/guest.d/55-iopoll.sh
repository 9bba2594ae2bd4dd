#!/bin/bash
# Guest test of polled NVMe completions (TargetOptions::polled, the worker's
# IOPOLL ring), run by scripts/nvme-qemu-test.sh inside the QEMU guest. Two
# modes, chosen by whether the namespace has poll queues (queue/io_poll):
#   - with nvme.poll_queues (ctest nvme_qemu): nvme_iopoll_guest_test's
#     NvmeIopollTest (data read back, flush, zeroes, timers and messages not
#     starved, shutdown with polled commands in flight), then
#     ringline-blockbench --hipri reports polled jobs without errors or
#     warnings and the I/O queues raise (almost) no interrupts; last,
#     NvmeIopollResetTest resets the controller without poll queues under a
#     running polled target: every I/O still completes and reads back (6.1 takes
#     the polled commands silently; a kernel that refuses them, EOPNOTSUPP, makes
#     the target switch to interrupts with one warning);
#   - without poll queues (ctest nvme_qemu_no_poll, RINGLINE_QEMU_NVME_POLL_QUEUES=0):
#     the fallback. NvmeIopollFallbackTest (interrupts, data read back, the
#     worker blocks instead of spinning) prints exactly one warning naming the
#     fix (nvme.poll_queues), and so does ringline-blockbench --hipri, whose
#     job reports polled=false, no errors, its reads completed by interrupt.
# Correctness only: TCG timing says nothing about speed.
set -euo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
: "${RINGLINE_BUILD_DIR:?}" "${RINGLINE_NVME_NS1:?}" "${RINGLINE_NVME_NS1_BLOCK:?}"
: "${RINGLINE_NVME_NS2_BLOCK:?}" "${RINGLINE_NVME_POLL_QUEUES:?}"
test_bin=$RINGLINE_BUILD_DIR/bin/nvme_iopoll_guest_test
bench=$RINGLINE_BUILD_DIR/bin/ringline-blockbench
for b in "$test_bin" "$bench"; do [[ -x "$b" ]] || fail "$b is not built"; done

io_poll() { cat "/sys/class/block/$(basename "$1")/queue/io_poll"; }
ns1_poll=$(io_poll "$RINGLINE_NVME_NS1_BLOCK")
ns2_poll=$(io_poll "$RINGLINE_NVME_NS2_BLOCK")
if ((RINGLINE_NVME_POLL_QUEUES > 0)); then
  [[ "$ns1_poll" == 1 && "$ns2_poll" == 1 ]] ||
    fail "nvme.poll_queues=$RINGLINE_NVME_POLL_QUEUES but queue/io_poll is $ns1_poll (ns1), $ns2_poll (ns2)"
  mode=polled
else
  [[ "$ns1_poll" == 0 && "$ns2_poll" == 0 ]] ||
    fail "no nvme.poll_queues but queue/io_poll is $ns1_poll (ns1), $ns2_poll (ns2)"
  mode=fallback
fi
echo "--- mode: $mode (nvme.poll_queues=$RINGLINE_NVME_POLL_QUEUES)"

# The engine's warning that polling was asked for and is not used: exactly one
# per target, naming the module parameter that fixes it.
check_one_warning() {  # FILE WHAT
  local n
  n=$(grep -c "polled completions asked for" "$1" || true)
  [[ "$n" == 1 ]] || fail "$2: expected one 'polled completions asked for' warning, got $n: $(cat "$1")"
  grep -q "queue/io_poll is 0" "$1" || fail "$2: the warning does not say why: $(cat "$1")"
  grep -q "nvme.poll_queues=" "$1" || fail "$2: the warning does not name the fix: $(cat "$1")"
  [[ $(grep -c . "$1") == 1 ]] || fail "$2: more than the one warning on stderr: $(cat "$1")"
}

out=$(mktemp)
if [[ $mode == polled ]]; then
  "$test_bin" --gtest_filter='NvmeIopollTest.*'
else
  "$test_bin" --gtest_filter='NvmeIopollFallbackTest.*' 2>"$out.err"
  cat "$out.err"
  check_one_warning "$out.err" nvme_iopoll_guest_test
fi

# Interrupts of the controller's I/O queues (nvmeCqN, N >= 1).
ctrl=$(basename "$(readlink -f "/sys/class/block/$(basename "$RINGLINE_NVME_NS1_BLOCK")/device")")
io_irqs() {
  awk -v c="$ctrl" '$NF ~ "^" c "q[1-9][0-9]*$" { for (i = 2; i <= NF - 3; ++i) n += $i } END { print n + 0 }' /proc/interrupts
}
irq_before=$(io_irqs)
"$bench" --filename="$RINGLINE_NVME_NS1" --rw=randread --bs=4k --iodepth=8 --runtime=1 \
  --time_based --hipri --output-format=json --output="$out" 2>"$out.err"
irq_after=$(io_irqs)
cat "$out.err"
python3 - "$out" "$irq_before" "$irq_after" "$mode" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
job = d["jobs"][0]
irqs = int(sys.argv[3]) - int(sys.argv[2])
polled_mode = sys.argv[4] == "polled"
ios = d["read"]["ios"]
cpu = d["cpu_user_s"] + d["cpu_sys_s"]
print(f"blockbench --hipri: {ios} reads, polled={job['polled']}, errors={d['errors']}, "
      f"I/O queue interrupts meanwhile: {irqs}, CPU {cpu:.3f} s in {d['elapsed_s']:.3f} s")
ok = d["errors"] == 0 and ios > 0
if polled_mode:
    # Polled commands raise no interrupt. Set-up (identify) and the other
    # CPU's noise may raise a few; every read completing by interrupt would
    # raise one each (6.1 would do that silently without poll queues).
    ok = ok and job["polled"] is True and irqs < ios / 10
else:
    # Interrupts instead: an interrupt reaps the completions waiting (at most
    # the 8 in flight, give or take), so there are at least ios / 16 of them.
    ok = ok and job["polled"] is False and irqs * 16 >= ios
sys.exit(0 if ok else 1)
PY
if [[ $mode == polled ]]; then
  [[ ! -s "$out.err" ]] || fail "blockbench --hipri warned: $(cat "$out.err")"
else
  check_one_warning "$out.err" "ringline-blockbench --hipri"
fi

if [[ $mode == polled ]]; then
  # Last (it resets the controller twice): the poll queues removed under a
  # running polled target. The kernel refuses polled commands from then on
  # (EOPNOTSUPP: one warning, interrupts) or takes them silently (6.1); every
  # I/O must complete either way.
  echo "--- poll queues removed under a running polled target"
  RINGLINE_IOPOLL_RESET=1 "$test_bin" --gtest_filter='NvmeIopollResetTest.*' 2>"$out.err"
  cat "$out.err"
  n=$(grep -c "polled completions off" "$out.err" || true)
  if grep -q "EOPNOTSUPP" "$out.err"; then
    [[ "$n" == 1 ]] || fail "the kernel refused polled commands: expected one 'polled completions off' warning, got $n"
    echo "this kernel refused polled commands after the reset: the target switched to interrupts"
  else
    [[ "$n" == 0 && ! -s "$out.err" ]] || fail "unexpected warnings: $(cat "$out.err")"
    echo "this kernel ($(uname -r)) took polled commands without poll queues (completed by interrupt)"
  fi
fi
rm -f "$out" "$out.err"
echo "PASS: $mode completions"
