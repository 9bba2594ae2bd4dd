#!/bin/bash
# Runs inside the QEMU guest, chrooted into the host's root (see init.sh), with
# cwd = the repo root. /run/ringline/run.env (written by scripts/nvme-qemu-test.sh)
# holds the run's settings and the guest scripts to run. Each script runs with a
# clean environment (the RINGLINE_* contract variables, PATH, HOME, TMPDIR),
# stdin from /dev/null, and its output on the console and in
# $RINGLINE_RESULTS_DIR/logs/<script>.log. Exit 0 = pass, 77 = skipped (the
# script must print SKIPPED and the reason), anything else = fail.
# Exits 0 when every script passed or skipped, 1 otherwise.
set -u

# shellcheck source=/dev/null
. /run/ringline/run.env

results=/run/ringline-results
mkdir -p "$results/logs" /tmp/ringline-home

guest_env=(
  RINGLINE_IN_QEMU=1
  "RINGLINE_BUILD_DIR=$RINGLINE_BUILD_DIR"
  "RINGLINE_RESULTS_DIR=$results"
  RINGLINE_NVME_CTRL=/dev/nvme0
  RINGLINE_NVME_NS1=/dev/ng0n1
  RINGLINE_NVME_NS2=/dev/ng0n2
  RINGLINE_NVME_NS1_BLOCK=/dev/nvme0n1
  RINGLINE_NVME_NS2_BLOCK=/dev/nvme0n2
  "RINGLINE_NVME_NS1_BYTES=$RINGLINE_NVME_NS1_BYTES"
  "RINGLINE_NVME_NS1_LBA=$RINGLINE_NVME_NS1_LBA"
  "RINGLINE_NVME_NS2_BYTES=$RINGLINE_NVME_NS2_BYTES"
  "RINGLINE_NVME_NS2_LBA=$RINGLINE_NVME_NS2_LBA"
  "RINGLINE_NVME_SERIAL=$RINGLINE_NVME_SERIAL"
  "RINGLINE_NVME_POLL_QUEUES=$RINGLINE_NVME_POLL_QUEUES"
  "RINGLINE_REPO=$RINGLINE_REPO"
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  HOME=/tmp/ringline-home
  TMPDIR=/tmp
  TERM=dumb
  LANG=C.UTF-8
)

# scripts/nvme-qemu-test.sh --power-cut: which boot this is (K/N).
power_cut=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^ringline\.power_cut=//p')
[[ -n "$power_cut" ]] && guest_env+=("RINGLINE_POWER_CUT=$power_cut")

echo "ringline-guest: $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024) " MiB"}' /proc/meminfo)"
echo "ringline-guest: environment of the guest scripts:"
printf '    %s\n' "${guest_env[@]}"

declare -a summary=()
npass=0 nskip=0 nfail=0
if ((${#RINGLINE_GUEST_SCRIPTS[@]} == 0)); then
  echo "ringline-guest: no guest scripts to run"
  nfail=1
fi

for script in "${RINGLINE_GUEST_SCRIPTS[@]}"; do
  name=$(basename "$script")
  log="$results/logs/$name.log"
  echo "=== RUN $script"
  if [[ -x "$script" ]]; then cmd=("$script"); else cmd=(/bin/bash "$script"); fi
  start=$EPOCHREALTIME
  env -i "${guest_env[@]}" "${cmd[@]}" </dev/null 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if ((rc == 0)); then
    status=PASS detail=""
    npass=$((npass + 1))
  elif ((rc == 77)); then
    reason=$(grep -a 'SKIPPED' "$log" | tail -n 1 | tr -d '\r')
    if [[ -n "$reason" ]]; then
      status=SKIP detail=": $reason"
      nskip=$((nskip + 1))
    else
      status=FAIL detail=": exited 77 (skip) without printing SKIPPED and a reason"
      nfail=$((nfail + 1))
    fi
  else
    status=FAIL detail=": exit status $rc"
    nfail=$((nfail + 1))
  fi
  line="$status $name (${secs}s)$detail"
  echo "=== $line"
  summary+=("$line")
done

{
  printf '%s\n' "${summary[@]}"
} >"$results/summary"

echo "=== SUMMARY ($npass passed, $nskip skipped, $nfail failed)"
printf '    %s\n' "${summary[@]}"
if ((nfail == 0)); then verdict=pass; else verdict=fail; fi
echo "$verdict" >"$results/guest-status"
sync
echo "RINGLINE-GUEST-RESULT: $verdict ($npass passed, $nskip skipped, $nfail failed)"
[[ $verdict == pass ]]
