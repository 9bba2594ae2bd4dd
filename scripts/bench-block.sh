#!/usr/bin/env bash
# Side-by-side O_DIRECT benchmark: ringline-blockbench against fio's io_uring
# engine on the same file, block size, queue depth and duration, alternating
# the two tools in one invocation.
#
#   scripts/bench-block.sh [--build DIR] [--runtime SECONDS] [--cpus LIST]
#                          [--disk-dir DIR] [--size SIZE] [--reps N]
#                          [--workloads "RW:BS:QD ..."] [--targets "disk shm"]
#                          [--ours-args "ARGS"] [--shm-offload PERCENT]
#                          [--shm-offload-min-bs SIZE]
#
# Workloads: 4k randread QD1 and QD32, 4k randwrite QD32, 128k sequential read
# QD8; targets: a file on the local disk and a file in /dev/shm (tmpfs takes
# O_DIRECT on this kernel and shows the CPU-bound ceiling of the submission
# path). Both tools submit each request as it is issued (fio's default
# iodepth_batch_submit=1; blockbench's --iodepth_batch_submit=1, its default).
# By default neither tool is pinned: fio runs where the scheduler puts it, and
# ringline-blockbench puts its worker where the engine chooses
# (block::PlaceWorkers: a CPU on which the target's completions arrive). With
# --cpus LIST both run under `taskset -c LIST` (ringline-blockbench also pins
# its worker with --cpus), so the tool, its io_uring and io-wq threads share
# the same CPU set. CPU time is the whole process's user+system time as
# reported by /usr/bin/time (set-up included, for both tools alike).
# --ours-args adds options to every ringline-blockbench run (for A/B tests,
# e.g. --iodepth_batch_submit=0); the header prints them.
# --shm-offload PERCENT (default 75; 0: off): on the tmpfs rows whose block
# size is at least --shm-offload-min-bs (default 64k), ringline-blockbench
# hands PERCENT of the queue depth (rounded down) to io_uring's io-wq threads
# with --offload (TargetOptions::max_offloaded_copies) and copies the rest on
# its worker. fio's one job does the same thing by itself: io_uring punts every
# tmpfs read and write to io-wq, whose thread copies on the other CPU. Either
# way one thread submits, at the same iodepth; the "ours flags" column shows
# the --offload each row used. Smaller blocks get none: at 4k an offloaded
# request cost the worker about as much as copying it, and two CPUs gave no
# more IOPS than one (BENCHMARKS.md, session 7).
# Each row runs the two tools --reps times (default 5), alternating which one
# goes first; the device's speed drifts over minutes on a shared VM, so the
# ratio column is the median of the per-repetition ratios (each taken from
# two adjacent runs), next to each tool's median IOPS and range.
# Prints the placement the engine chose for each target, then a Markdown
# table: IOPS, p50/p99 completion latency, CPU seconds per million I/Os, the
# ratios ours/fio, the mean request size the disk saw (/sys/block/DEV/stat,
# other I/O on the disk included), where each tool's threads ran (every thread
# with at least 10% of the tool's CPU time, with the share of 0.1 s samples
# from /proc on each CPU; iou-wrk are io_uring's io-wq threads) and the
# 1-minute load average when the row started.
set -euo pipefail

BUILD=build
RUNTIME=5
CPUS=
DISK_DIR=/var/tmp
SIZE=1g
REPS=5
WORKLOADS="randread:4k:1 randread:4k:32 randwrite:4k:32 read:128k:8"
TARGETS="disk shm"
OURS_ARGS=()
SHM_OFFLOAD=75
SHM_OFFLOAD_MIN_BS=64k
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    --disk-dir) DISK_DIR=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    --ours-args) read -r -a OURS_ARGS <<<"$2"; shift 2 ;;
    --shm-offload) SHM_OFFLOAD=$2; shift 2 ;;
    --shm-offload-min-bs) SHM_OFFLOAD_MIN_BS=$2; shift 2 ;;
    -h|--help) sed -n '2,46p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if ! [[ $SHM_OFFLOAD =~ ^[0-9]+$ ]] || ((SHM_OFFLOAD > 100)); then
  echo "--shm-offload must be a percentage of the queue depth, 0 to 100 (got '$SHM_OFFLOAD')" >&2
  exit 2
fi
# bytes SIZE: "128k" -> 131072 (1024 base, like fio and blockbench).
bytes() { numfmt --from=iec "${1^^}"; }
if ! SHM_OFFLOAD_MIN_BYTES=$(bytes "$SHM_OFFLOAD_MIN_BS" 2>/dev/null); then
  echo "--shm-offload-min-bs must be a size such as 64k (got '$SHM_OFFLOAD_MIN_BS')" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
BENCH=$BUILD/bin/ringline-blockbench
for tool in "$BENCH" fio jq /usr/bin/time taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
if [[ "$(stat -f -c %T "$DISK_DIR")" == tmpfs ]]; then
  echo "$DISK_DIR is tmpfs; pass --disk-dir on a disk filesystem" >&2
  exit 1
fi

# The disk under --disk-dir, for its request counters.
DISK_DEV=$(basename "$(findmnt -no SOURCE --target "$DISK_DIR")")
DISK_STAT=/sys/class/block/$DISK_DEV/stat
[[ -r $DISK_STAT ]] || DISK_STAT=

WORK=$(mktemp -d /tmp/bench-block.XXXXXX)
DISK_FILE=$DISK_DIR/ringline-bench-block.img
SHM_FILE=/dev/shm/ringline-bench-block.img
cleanup() { rm -rf "$WORK" "$SHM_FILE"; }
trap cleanup EXIT

# Lay the files out once with real data (reads must not hit holes); both tools
# then use the same files.
PIN=()
CPU_OPT=()
if [[ -n "$CPUS" ]]; then
  PIN=(taskset -c "$CPUS")
  CPU_OPT=(--cpus="$CPUS")
fi
for f in "$DISK_FILE" "$SHM_FILE"; do
  "${PIN[@]}" "$BENCH" --filename="$f" --size="$SIZE" --rw=read --bs=1m --iodepth=4 \
    --runtime=0.1 --time_based "${CPU_OPT[@]}" >/dev/null
done

# where PID OUT: until PID exits, samples every 0.1 s the CPU each thread of
# PID and its descendants last ran on; then writes one word to OUT naming the
# threads that used at least 10% of the tool's CPU time, busiest first, with
# the share of samples of the CPUs each was seen on:
# "fio@cpu1:100%+iou-wrk@cpu0:60%,cpu1:40%" (io-wq threads are iou-wrk).
where() {
  python3 - "$1" "$2" <<'PY'
import os, re, sys, time, collections
root, out = int(sys.argv[1]), sys.argv[2]
seen = collections.defaultdict(collections.Counter)  # tid -> cpu -> samples
busy = {}                                             # tid -> utime + stime
name = {}                                             # tid -> comm
def tasks(pid):
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        yield tid
        try:
            for child in open(f"/proc/{pid}/task/{tid}/children").read().split():
                yield from tasks(int(child))
        except OSError:
            pass
while os.path.exists(f"/proc/{root}"):
    for tid in set(tasks(root)):
        try:
            head, f = open(f"/proc/{tid}/stat").read().rsplit(")", 1)
        except OSError:
            continue
        f = f.split()
        name[tid] = re.sub(r"-[0-9]+$", "", head.split("(", 1)[1]).replace(" ", "_")
        seen[tid][int(f[36])] += 1   # field 39: processor
        busy[tid] = int(f[11]) + int(f[12])  # fields 14, 15: utime, stime
    time.sleep(0.1)
total = sum(busy.values())
words = []
for tid in sorted(busy, key=busy.get, reverse=True)[:3]:
    if words and busy[tid] * 10 < total:
        break
    c = seen[tid]
    n = sum(c.values())
    words.append(name[tid] + "@" + ",".join(f"cpu{cpu}:{100 * k // n}%" for cpu, k in c.most_common(2)))
with open(out, "w") as o:
    o.write(("+".join(words) or "?") + "\n")
PY
}

# devstat: "requests sectors" completed by the disk so far (reads + writes).
devstat() {
  if [[ -n $DISK_STAT ]]; then awk '{ printf "%.0f %.0f\n", $1 + $5, $3 + $7 }' "$DISK_STAT"; else echo "0 0"; fi
}

# ours_flags TARGET QD BS: the options ringline-blockbench gets for the row
# besides --ours-args (--offload on tmpfs, for blocks of at least
# --shm-offload-min-bs).
ours_flags() {
  local off=0
  [[ $1 == shm ]] && (($(bytes "$3") >= SHM_OFFLOAD_MIN_BYTES)) && off=$(($2 * SHM_OFFLOAD / 100))
  ((off > 0)) && echo "--offload=$off"
  return 0
}

# run_one TOOL TARGETFILE RW BS QD [OURS_FLAGS...]
#   -> prints "iops p50_us p99_us cpu_s_per_m threads kib_per_device_request"
run_one() {
  local tool=$1 file=$2 rw=$3 bs=$4 qd=$5 out=$WORK/out.json tm=$WORK/time wh=$WORK/where
  shift 5
  local dir=read pid r0 s0 r1 s1
  [[ $rw == randwrite || $rw == write ]] && dir=write
  read -r r0 s0 <<<"$(devstat)"
  if [[ $tool == ours ]]; then
    /usr/bin/time -f "%U %S" -o "$tm" "${PIN[@]}" "$BENCH" --filename="$file" \
      --rw="$rw" --bs="$bs" --iodepth="$qd" --runtime="$RUNTIME" --time_based \
      --size="$SIZE" "${CPU_OPT[@]}" "${OURS_ARGS[@]}" "$@" --output-format=json --output="$out" \
      >/dev/null 2>"$WORK/err" &
  else
    /usr/bin/time -f "%U %S" -o "$tm" "${PIN[@]}" fio --name=bench --filename="$file" \
      --direct=1 --ioengine=io_uring --rw="$rw" --bs="$bs" --iodepth="$qd" \
      --runtime="$RUNTIME" --time_based --size="$SIZE" --norandommap --randrepeat=0 \
      --lat_percentiles=1 --output-format=json --output="$out" >/dev/null &
  fi
  pid=$!
  where "$pid" "$wh"
  wait "$pid"
  read -r r1 s1 <<<"$(devstat)"
  local kib=-
  [[ $file == "$DISK_FILE" && $r1 -gt $r0 ]] && kib=$(( (s1 - s0) / 2 / (r1 - r0) ))
  if [[ $tool == ours ]]; then
    jq -r --arg d "$dir" '"\(.[$d].iops) \(.[$d].lat_ns.p50 / 1000) \(.[$d].lat_ns.p99 / 1000) \(.ios)"' "$out"
  else
    jq -r --arg d "$dir" '.jobs[0] | "\(.[$d].iops) \(.[$d].lat_ns.percentile["50.000000"] / 1000) \(.[$d].lat_ns.percentile["99.000000"] / 1000) \(.[$d].total_ios)"' "$out"
  fi | { read -r iops p50 p99 ios; read -r u s < "$tm"; read -r w < "$wh"
         awk -v i="$iops" -v a="$p50" -v b="$p99" -v n="$ios" -v u="$u" -v s="$s" -v w="$w" -v k="$kib" \
           'BEGIN { printf "%.0f %.1f %.1f %.3f %s %s\n", i, a, b, (u + s) / n * 1e6, w, k }'; }
}

echo "# bench-block: $(date -u +%FT%TZ), kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n "$CPUS" ]]; then
  echo "# both tools under taskset -c $CPUS (blockbench worker pinned with --cpus=$CPUS); ${RUNTIME}s per run, $REPS rep(s), file size $SIZE"
else
  echo "# no taskset: fio unpinned, blockbench's worker placed by the engine; ${RUNTIME}s per run, $REPS rep(s), file size $SIZE"
fi
for f in "$DISK_FILE" "$SHM_FILE"; do
  "${PIN[@]}" "$BENCH" --filename="$f" --size="$SIZE" --rw=randread --bs=4k --runtime=0.05 \
    --time_based "${CPU_OPT[@]}" --output-format=json --output="$WORK/probe.json" 2>/dev/null
  echo "# $f: $(jq -r '.placement.device' "$WORK/probe.json")"
  echo "#   blockbench placement: $(jq -r '.placement.summary' "$WORK/probe.json")"
  if [[ $f == "$DISK_FILE" ]]; then
    "${PIN[@]}" "$BENCH" --filename="$f" --size="$SIZE" --rw=randwrite --bs=4k --runtime=0.05 \
      --time_based "${CPU_OPT[@]}" --output-format=json --output="$WORK/probe.json" 2>/dev/null
    echo "#   blockbench placement for write-only jobs: $(jq -r '.placement.summary' "$WORK/probe.json")"
  fi
done
echo "# fio $(fio --version) --ioengine=io_uring --direct=1 --norandommap --randrepeat=0 --lat_percentiles=1 (iodepth_batch_submit=1, its default)"
echo "# ringline-blockbench ${OURS_ARGS[*]:-(no extra options)}; --iodepth_batch_submit=1 unless given (its default: each request submitted as it is issued)"
echo "# tmpfs rows with blocks of at least $SHM_OFFLOAD_MIN_BS: ringline-blockbench --offload=<${SHM_OFFLOAD}% of iodepth> (the 'ours flags' column; --shm-offload 0 turns it off): that many of the iodepth requests go to io-wq threads, the rest are copied on the worker; fio's job punts all of them to io-wq"
echo "# latency: submission to completion for both (fio's lat = slat + clat; ours: Target::Read/Write call to result)"
echo "# IOPS: median over $REPS runs per tool (min-max); ours/fio: median of the per-repetition ratios (their range); the other columns are from each tool's median run"
echo
echo "| target | workload | ours flags | fio IOPS (min-max) | ours IOPS (min-max) | IOPS ours/fio (range) | fio p50/p99 µs | ours p50/p99 µs | fio CPU-s/M I/O | ours CPU-s/M I/O | CPU ours/fio | fio KiB/dev req | ours KiB/dev req | fio threads ran on | ours threads ran on | load |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"
# med: the line with the median first field.
med() { printf '%s\n' "$@" | sort -n -k1,1 | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
for target in $TARGETS; do
  file=$DISK_FILE
  [[ $target == shm ]] && file=$SHM_FILE
  for wl in $WORKLOADS; do
    IFS=: read -r rw bs qd <<<"$wl"
    read -r -a flags <<<"$(ours_flags "$target" "$qd" "$bs")"
    load=$(cut -d' ' -f1 /proc/loadavg)
    fio_r=() ours_r=() ratios=()
    for ((rep = 0; rep < REPS; rep++)); do
      # Alternate which tool goes first.
      if ((rep % 2 == 0)); then
        f=$(run_one fio "$file" "$rw" "$bs" "$qd")
        o=$(run_one ours "$file" "$rw" "$bs" "$qd" "${flags[@]}")
      else
        o=$(run_one ours "$file" "$rw" "$bs" "$qd" "${flags[@]}")
        f=$(run_one fio "$file" "$rw" "$bs" "$qd")
      fi
      fio_r+=("$f") ours_r+=("$o")
      ratios+=("$(awk -v o="${o%% *}" -v f="${f%% *}" 'BEGIN { printf "%.4f\n", o / f }')")
    done
    read -r fi fp50 fp99 fcpu fwhere fkib <<<"$(med "${fio_r[@]}")"
    read -r oi op50 op99 ocpu owhere okib <<<"$(med "${ours_r[@]}")"
    range() { printf '%s\n' "$@" | awk '{ v = $1 } NR == 1 || v < lo { lo = v } NR == 1 || v > hi { hi = v } END { printf "%d-%d", lo, hi }'; }
    frange=$(range "${fio_r[@]}")
    orange=$(range "${ours_r[@]}")
    ratio=$(med "${ratios[@]}")
    rrange=$(printf '%s\n' "${ratios[@]}" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }')
    awk -v t="$target" -v w="$bs $rw QD$qd" -v of="${flags[*]:--}" -v fi="$fi" -v oi="$oi" -v fr="$frange" -v or="$orange" \
      -v r="$ratio" -v rr="$rrange" -v fp50="$fp50" -v fp99="$fp99" -v op50="$op50" -v op99="$op99" -v fc="$fcpu" \
      -v oc="$ocpu" -v fk="$fkib" -v ok="$okib" -v fw="$fwhere" -v ow="$owhere" \
      -v l="$load" 'BEGIN {
        gsub(/\+/, "; ", fw); gsub(/\+/, "; ", ow); gsub(/:/, " ", fw); gsub(/:/, " ", ow)
        gsub(/,/, ", ", fw); gsub(/,/, ", ", ow)
        printf "| %s | %s | %s | %d (%s) | %d (%s) | **%.2fx** (%s) | %s / %s | %s / %s | %.2f | %.2f | **%.2fx** | %s | %s | %s | %s | %s |\n",
          t, w, of, fi, fr, oi, or, r, rr, fp50, fp99, op50, op99, fc, oc, oc / fc, fk, ok, fw, ow, l }'
  done
done
echo
echo "# done $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
