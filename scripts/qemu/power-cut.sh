# shellcheck shell=bash disable=SC2154 # devices, TMP, RESULTS, ...: set by scripts/nvme-qemu-test.sh
# The --power-cut mode of scripts/nvme-qemu-test.sh, sourced by it after the
# initramfs and the base QEMU command line (QEMU_ARGS) are built; uses its
# variables (TMP, RESULTS, REPO, QEMU, QEMU_ARGS, APPEND, POWER_CUTS, TIMEOUT,
# START, ...) and helpers (say, skip, fail_early, clean_console).
#
# A power cut that really loses data: each drive the writer uses sits on an
# nbdkit process (file plugin over the image, cache filter in writeback mode)
# that QEMU reaches over a Unix socket. The cache filter keeps written blocks
# in an unlinked temporary file and writes them to the image only on a FLUSH
# that it receives. QEMU's drives keep their default
# cache=writeback, so the guest sees a volatile write cache (NVMe VWC = 1,
# virtio-blk "write back"). The cut is SIGKILL of the nbdkit processes and then
# of QEMU: whatever had not been flushed to the images is gone, as it would be
# from a drive's volatile cache.
#
#   ns1 (NVMe, 256 MiB, 512-byte LBAs) -> nbdkit -> $TMP/ns1.img
#   vda (virtio-blk, 64 MiB)           -> nbdkit -> $TMP/vda.img
#   vdb (virtio-blk, 64 MiB)           -> nbdkit -> $TMP/vdb.img
#
# Boot K of N (kernel argument ringline.power_cut=K/N) runs
# tests/nvme/power-cut/writer.sh, which writes region K of N of each export.
# The host waits for RINGLINE-POWER-CUT-ARMED on the console, waits a delay
# that grows with K, cuts, and checks the images against the writer's
# acknowledgment log with scripts/qemu/check-power-cut.py. After the last cut
# every earlier cut's log is checked again (a later boot must not have lost
# what an earlier one made durable).

POWER_CUT_VD_BYTES=$((64 * 1024 * 1024))
# The first cut comes soon after the writer's first flushes, the later ones
# after longer runs.
power_cut_delay() { awk -v k="$1" 'BEGIN { printf "%.1f", 0.3 + 1.2 * (k - 1) }'; }

# QEMU's NVMe emulation (hw/nvme/ctrl.c, 7.2) issues every Write to its block
# backend without BDRV_REQ_FUA: the FUA bit of an NVMe Write is dropped, so on
# this emulated controller a FUA write is durable only after a later Flush.
# The nv export's FUA-only extents are counted, not asserted (docs/RELIABILITY.md).
POWER_CUT_FUA_UNCHECKED=(--fua-unchecked nv)

NBDKIT_PIDS=()
power_cut_stop_nbdkit() {
  ((${#NBDKIT_PIDS[@]})) || return 0
  kill -KILL "${NBDKIT_PIDS[@]}" 2>/dev/null
  wait "${NBDKIT_PIDS[@]}" 2>/dev/null
  NBDKIT_PIDS=()
}

# power_cut_start_nbdkit NAME: serve $TMP/NAME.img on $TMP/NAME.sock.
power_cut_start_nbdkit() {
  local name=$1 sock="$TMP/$1.sock"
  rm -f "$sock"
  mkdir -p "$TMP/nbdkit-cache"
  # TMPDIR: where the cache filter keeps its (unlinked) cache file.
  TMPDIR="$TMP/nbdkit-cache" nbdkit -f --exit-with-parent -U "$sock" --filter=cache \
    file file="$TMP/$name.img" cache=writeback >>"$RESULTS/nbdkit-$name.log" 2>&1 &
  NBDKIT_PIDS+=($!)
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -S "$sock" ]] && return 0
    sleep 0.1
  done
  fail_early "nbdkit for $name did not create $sock (see $RESULTS/nbdkit-$name.log)"
}

# power_cut_boot K: one boot, cut once armed. Sets CUT_RESULT (cut | a reason).
power_cut_boot() {
  local k=$1 console="$RESULTS/console-cut-$1" args=() a prev="" delay replaced=0
  delay=$(power_cut_delay "$k")
  for a in "${QEMU_ARGS[@]}"; do
    case "$prev|$a" in
      "-append|"*) a="$APPEND ringline.power_cut=$k/$POWER_CUTS"; replaced=$((replaced + 1)) ;;
      "-drive|file=$TMP/ns1.img,"*)
        a="if=none,id=ns1,format=raw,discard=unmap,file.driver=nbd,file.server.type=unix,file.server.path=$TMP/ns1.sock"
        replaced=$((replaced + 1)) ;;
    esac
    args+=("$a")
    prev=$a
  done
  # Both must be found: a namespace left on its raw image would not lose
  # unflushed data, and the cut would prove nothing for it.
  ((replaced == 2)) || fail_early "power cut: did not find '-append' and the ns1 '-drive file=$TMP/ns1.img,...' in QEMU_ARGS (changed in nvme-qemu-test.sh?)"
  for a in vda vdb; do
    args+=(-drive "if=none,id=$a,format=raw,file.driver=nbd,file.server.type=unix,file.server.path=$TMP/$a.sock"
           -device "virtio-blk-pci,drive=$a")
  done
  printf '%q ' "$QEMU" "${args[@]}" >"$RESULTS/qemu-cmdline-cut-$k"

  for a in ns1 vda vdb; do power_cut_start_nbdkit "$a"; done
  say "cut $k/$POWER_CUTS: booting; the cut comes ${delay}s after the writer is armed"
  : >"$console.raw"
  rm -f "$TMP/qemu.pid"
  # timeout bounds QEMU even if this script dies without its EXIT trap; the
  # cut itself goes to QEMU's own pid (-pidfile), not to timeout.
  timeout -k 5 $((BOOT_BUDGET + 30)) "$QEMU" "${args[@]}" -pidfile "$TMP/qemu.pid" \
    </dev/null >"$console.raw" 2>&1 &
  QEMU_PID=$!  # nvme-qemu-test.sh's cleanup stops it on exit
  local deadline=$((SECONDS + BOOT_BUDGET)) qemu_pid
  CUT_RESULT=""
  while :; do
    if ! kill -0 "$QEMU_PID" 2>/dev/null; then
      wait "$QEMU_PID"
      CUT_RESULT="QEMU exited with status $? before the cut (the guest stopped by itself: see $console.log)"
      break
    fi
    if grep -q RINGLINE-POWER-CUT-ARMED "$console.raw" && qemu_pid=$(cat "$TMP/qemu.pid" 2>/dev/null) \
       && [[ -n "$qemu_pid" ]]; then
      sleep "$delay"
      # The caches first, then QEMU: nothing can write back in between.
      kill -KILL "${NBDKIT_PIDS[@]}" "$qemu_pid"
      wait "$QEMU_PID" 2>/dev/null
      CUT_RESULT="cut"
      break
    fi
    if ((SECONDS >= deadline)); then
      kill -TERM "$QEMU_PID"
      wait "$QEMU_PID" 2>/dev/null
      CUT_RESULT="the writer was not armed within ${BOOT_BUDGET}s of the boot"
      break
    fi
    sleep 0.1
  done
  QEMU_PID=""
  power_cut_stop_nbdkit
  clean_console <"$console.raw" >"$console.log" && rm -f "$console.raw"
  [[ "$CUT_RESULT" == cut ]] || { tail -n 30 "$console.log" | sed 's/^/  | /'; return 1; }
  grep -q "FAIL" "$console.log" && { say "cut $k: the guest printed FAIL before the cut:"; grep FAIL "$console.log" | sed 's/^/  | /'; }
  return 0
}

# power_cut_check K: check cut K's acknowledgment log against the images.
power_cut_check() {
  local acks="$RESULTS/power-cut-$1.acks"
  [[ -s "$acks" ]] || { say "cut $1: no acknowledgment log $acks"; return 1; }
  python3 "$REPO/scripts/qemu/check-power-cut.py" "${POWER_CUT_FUA_UNCHECKED[@]}" --json "$RESULTS/power-cut-$1.json" \
    "$acks" nv="$TMP/ns1.img" vd="$TMP/vda.img" wb="$TMP/vdb.img" | sed "s/^/    cut $1: /"
  return "${PIPESTATUS[0]}"
}

power_cut_main() {
  command -v nbdkit >/dev/null || skip "--power-cut needs nbdkit (scripts/setup.sh installs it)"
  nbdkit --dump-config >/dev/null 2>&1 && nbdkit --filter=cache file --dump-plugin >/dev/null 2>&1 \
    || skip "--power-cut needs nbdkit's file plugin and cache filter"
  grep -q 'name "virtio-blk-pci"' <<<"$devices" || skip "$QEMU lacks the virtio-blk-pci device"
  truncate -s "$POWER_CUT_VD_BYTES" "$TMP/vda.img" && truncate -s "$POWER_CUT_VD_BYTES" "$TMP/vdb.img" \
    || fail_early "cannot create the virtio-blk images in $TMP"
  trap 'power_cut_stop_nbdkit; cleanup' EXIT

  local k reasons=() left
  for ((k = 1; k <= POWER_CUTS; k++)); do
    left=$((TIMEOUT - (SECONDS - START) - 10))
    BOOT_BUDGET=$((left / (POWER_CUTS - k + 1)))
    ((BOOT_BUDGET >= 30)) || { reasons+=("no time left for cut $k of --timeout $TIMEOUT"); break; }
    if ! power_cut_boot "$k"; then reasons+=("cut $k: $CUT_RESULT"); continue; fi
    power_cut_check "$k" || reasons+=("cut $k: an extent acknowledged by FLUSH or written with FUA is missing")
  done
  if ((${#reasons[@]} == 0)) && ((POWER_CUTS > 1)); then
    say "every cut's log again, against the final images:"
    for ((k = 1; k <= POWER_CUTS; k++)); do
      power_cut_check "$k" >/dev/null || reasons+=("cut $k's durable extents did not survive the later boots")
    done
    ((${#reasons[@]})) || say "    all hold"
  fi
  if ((${#reasons[@]} == 0)); then
    # The control: a run in which no acknowledged but unflushed write was lost
    # did not cut a volatile cache, and would pass whatever FLUSH did.
    local totals
    totals=$(python3 - "$RESULTS"/power-cut-*.json <<'PY'
import json, sys
t = {"flushed": 0, "fua": 0, "unflushed": 0, "unflushed_lost": 0, "bytes": 0}
for path in sys.argv[1:]:
    for counts in json.load(open(path)).values():
        for cls in ("flushed", "fua", "unflushed"):
            t[cls] += sum(counts[cls][k] for k in ("held", "lost", "torn"))
            t["bytes"] += counts[cls]["bytes"]
        t["unflushed_lost"] += counts["unflushed"]["lost"]
print(" ".join(f"{k}={v}" for k, v in t.items()))
PY
)
    say "extents checked over $POWER_CUTS cuts: $totals"
    [[ "$totals" =~ unflushed_lost=([0-9]+) ]] && ((BASH_REMATCH[1] > 0)) \
      || reasons+=("no acknowledged but unflushed write was lost in any cut: the caches under the drives were not volatile, so the run proves nothing about FLUSH and FUA")
  fi

  TOTAL_SECS=$((SECONDS - START))
  if ((${#reasons[@]} == 0)); then
    say "PASS: $POWER_CUTS power cuts in ${TOTAL_SECS}s; every extent acknowledged by FLUSH (and by FUA where the device honours it) was in the images; results: $RESULTS"
    return 0
  fi
  say "FAIL after ${TOTAL_SECS}s:"
  printf '    %s\n' "${reasons[@]}"
  say "results: $RESULTS"
  return 1
}
