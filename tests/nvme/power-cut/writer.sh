#!/bin/bash
# Guest side of the power-cut test: scripts/nvme-qemu-test.sh --power-cut N
# boots the guest N times and SIGKILLs QEMU (and the volatile caches under its
# drives) in the middle of each run; see scripts/qemu/power-cut.sh for the host
# side and docs/RELIABILITY.md ("Power loss") for what it proves.
#
# blockserve serves three exports on 127.0.0.1, each on a device whose volatile
# write cache is on:
#   nv = /dev/ng0n1  NVMe passthrough (QEMU NVMe namespace, VWC = 1)
#   vd = /dev/vda    virtio-blk, O_DIRECT (--cache direct)
#   wb = /dev/vdb    virtio-blk, page cache (--cache writeback, a second blockserve)
# and tests/nvme/power-cut/writer.py writes a known pattern with FUA and FLUSH
# to all three until the guest is killed, logging each acknowledgment to
# $RINGLINE_RESULTS_DIR/power-cut-K.acks (K = this boot's cut number). The
# host checks the images against that log after the cut.
# Outside --power-cut mode (no RINGLINE_POWER_CUT) it prints SKIPPED.
set -euo pipefail

skip() { echo "SKIPPED: power cut: $*"; exit 77; }
fail() {
  echo "FAIL: power cut: $*"
  for l in "$RINGLINE_RESULTS_DIR"/blockserve-power-cut-*.log; do
    [[ -f "$l" ]] && { echo "--- $l (last 20 lines):"; tail -n 20 "$l"; }
  done
  exit 1
}

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh --power-cut N)"
[[ "${RINGLINE_POWER_CUT:-}" =~ ^([0-9]+)/([0-9]+)$ ]] || skip "not a --power-cut boot (RINGLINE_POWER_CUT is '${RINGLINE_POWER_CUT:-}')"
cut=${BASH_REMATCH[1]}
: "${RINGLINE_BUILD_DIR:?}" "${RINGLINE_RESULTS_DIR:?}" "${RINGLINE_NVME_NS1:?}" "${RINGLINE_NVME_NS1_BYTES:?}"
bs="$RINGLINE_BUILD_DIR/bin/blockserve"
[[ -x "$bs" ]] || fail "$bs is not built"
python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd (the nbd module) is not installed"
for d in /dev/vda /dev/vdb; do
  for _ in $(seq 1 100); do [[ -b "$d" ]] && break; sleep 0.1; done
  [[ -b "$d" ]] || fail "$d did not appear (virtio_blk loaded? the host adds two virtio-blk drives in --power-cut mode)"
done

up() { cut -d' ' -f1 /proc/uptime; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null || true

# The point of the test: every device reports a volatile write cache.
for d in nvme0n1 vda vdb; do
  wc=$(cat "/sys/block/$d/queue/write_cache")
  echo "power cut $RINGLINE_POWER_CUT: [$(up)s] $d write cache: $wc"
  [[ "$wc" == "write back" ]] || fail "$d reports '$wc', not a volatile write cache ('write back')"
done
"$bs" --listen 127.0.0.1 --port 10850 --workers 1 --cache direct \
  --export "nv=$RINGLINE_NVME_NS1" --export "vd=/dev/vda" --data-dir /tmp/bs-direct --log-level info \
  >"$RINGLINE_RESULTS_DIR/blockserve-power-cut-$cut-direct.log" 2>&1 &
"$bs" --listen 127.0.0.1 --port 10851 --workers 1 --cache writeback \
  --export "wb=/dev/vdb" --data-dir /tmp/bs-writeback --log-level info \
  >"$RINGLINE_RESULTS_DIR/blockserve-power-cut-$cut-writeback.log" 2>&1 &
for uri in nbd://127.0.0.1:10850/nv nbd://127.0.0.1:10851/wb; do
  ok=0
  for _ in $(seq 1 120); do
    if timeout 10 nbdinfo --size "$uri" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  ((ok)) || fail "blockserve did not serve $uri within 60 s"
done

echo "power cut $RINGLINE_POWER_CUT: [$(up)s] blockserve serves nv, vd and wb; starting the writer"
vd_bytes=$(blockdev --getsize64 /dev/vda)
wb_bytes=$(blockdev --getsize64 /dev/vdb)
exec python3 "$RINGLINE_REPO/tests/nvme/power-cut/writer.py" \
  --log "$RINGLINE_RESULTS_DIR/power-cut-$cut.acks" --region "$RINGLINE_POWER_CUT" --seed "$((cut * 7919))" \
  "nv=nbd://127.0.0.1:10850/nv:$RINGLINE_NVME_NS1_BYTES" \
  "vd=nbd://127.0.0.1:10850/vd:$vd_bytes" \
  "wb=nbd://127.0.0.1:10851/wb:$wb_bytes"
