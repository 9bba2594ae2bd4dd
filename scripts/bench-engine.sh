#!/usr/bin/env bash
# Engine micro-benchmarks beside bare liburing, in one run, pinned to one CPU.
# Prints Google Benchmark's medians and the engine/bare time-per-NOP ratios at
# batch 1 and 32, then the instructions per NOP (engine and bare liburing, batch
# 1 and 32), a measure that does not depend on the machine's load: user and
# kernel instructions from `perf stat` where the CPU exposes its counters, else
# user-space instructions from valgrind's callgrind (virtual machines without a
# PMU). Each count is the difference between two runs of engine_nop_count
# (64k and 128k NOPs), which cancels start-up.
# Usage: scripts/bench-engine.sh [BUILD_DIR]     (COUNT_ONLY=1: skip the timing)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [[ ! -x $build/bin/engine_bench || ! -x $build/bin/engine_nop_count ]]; then
  [[ -f $build/build.ninja ]] || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target engine_bench engine_nop_count
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT

if [[ ${COUNT_ONLY:-0} != 1 ]]; then
  taskset -c 0 "$build/bin/engine_bench" --benchmark_min_time=0.5 --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_format=json >"$out"
  python3 - "$out" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
med = {b["run_name"]: b for b in data["benchmarks"] if b.get("aggregate_name") == "median"}
print(f"{'benchmark':32} {'ns/item':>10} {'items/s':>14}")
for name, b in med.items():
    ips = b.get("items_per_second", 0)
    print(f"{name:32} {1e9/ips if ips else 0:10.1f} {ips:14,.0f}")
for batch in (1, 32):
    e, r = med.get(f"BM_EngineNop/{batch}"), med.get(f"BM_BareLiburingNop/{batch}")
    if e and r:
        print(f"NOP batch {batch}: engine {1e9/e['items_per_second']:.1f} ns, bare liburing "
              f"{1e9/r['items_per_second']:.1f} ns, ratio {r['items_per_second']/e['items_per_second']:.2f}x")
PY
fi

# Instructions per NOP.
nop=$build/bin/engine_nop_count
small=65536
large=131072
if perf stat -x, -e instructions:u true 2>&1 >/dev/null | grep -q '^[0-9]'; then
  method="perf stat (user + kernel)"
  count() { # mode batch nops -> "user kernel"
    perf stat -x, -e instructions:u,instructions:k taskset -c 0 "$nop" "$1" "$2" $(($3 / $2)) \
      2>&1 >/dev/null | awk -F, '/instructions/ {printf "%s ", $1}'
  }
elif command -v valgrind >/dev/null; then
  method="callgrind (user space only: this CPU exposes no performance counters)"
  count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$nop" "$1" "$2" $(($3 / $2)) 2>&1 |
      awk '/refs:/ {gsub(",", "", $4); printf "%s -1 ", $4}'
  }
else
  echo "instructions per NOP: SKIPPED (neither perf counters nor valgrind)"
  exit 0
fi
echo "instructions per NOP, $method:"
declare -A per
for mode in engine bare; do
  for batch in 1 32; do
    read -r u1 k1 <<<"$(count $mode $batch $small)"
    read -r u2 k2 <<<"$(count $mode $batch $large)"
    user=$(((u2 - u1) / (large - small)))
    kern=n/a
    ((k1 < 0)) || kern=$(((k2 - k1) / (large - small)))
    per[$mode$batch]=$user
    echo "  $mode batch $batch: user $user, kernel $kern"
  done
done
for batch in 1 32; do
  echo "  user instructions per NOP, batch $batch: engine/bare $(python3 -c \
    "print(f'{${per[engine$batch]}/${per[bare$batch]}:.2f}x')") (engine ${per[engine$batch]} - bare ${per[bare$batch]} = $((per[engine$batch] - per[bare$batch])) of the engine's own)"
done

# NBD_WRITES=1: user-space instructions per 4 KiB NBD write in blockserve (one
# worker, a tmpfs file, fio's nbd engine, randwrite QD32, one connection), from
# callgrind: counters zeroed before and dumped after a fio run of 4,000 and of
# 12,000 writes (callgrind_control), the difference divided by 8,000 (the
# connection's handshake and close cancel out).
if [[ ${NBD_WRITES:-0} == 1 ]]; then
  command -v valgrind >/dev/null || { echo "NBD writes: SKIPPED (no valgrind)"; exit 0; }
  fio --enghelp 2>/dev/null | grep -qw nbd || { echo "NBD writes: SKIPPED (fio has no nbd engine)"; exit 0; }
  [[ -x $build/bin/blockserve ]] || cmake --build "$build" --target blockserve
  dir=$(mktemp -d /dev/shm/bench-engine.XXXXXX)
  truncate -s 64M "$dir/disk.img"
  port=$((20000 + RANDOM % 10000))
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$build/bin/blockserve" \
    --listen 127.0.0.1 --port "$port" --export "disk=$dir/disk.img" --workers 1 \
    --log-level warn >"$dir/server.log" 2>&1 &
  pid=$!
  # SIGKILL: a worker blocked in io_uring_enter does not see SIGTERM under valgrind.
  trap 'kill -9 $pid 2>/dev/null; rm -rf "$dir" "$out"' EXIT
  for _ in $(seq 300); do
    nbdinfo --size "nbd://127.0.0.1:$port/disk" >/dev/null 2>&1 && break
    sleep 0.2
  done
  writes() { # n -> instructions of the server while fio wrote n blocks
    callgrind_control -z "$pid" >/dev/null 2>&1
    fio --name=w --ioengine=nbd --uri="nbd://127.0.0.1:$port/disk" --rw=randwrite --bs=4k \
      --iodepth=32 --number_ios="$1" --size=64m --norandommap --randrepeat=0 >/dev/null
    rm -f "$dir"/cg.out.*
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 0.5
    awk '/^summary:/ {print $2}' "$dir"/cg.out.*
  }
  i1=$(writes 4000)
  i2=$(writes 12000)
  echo "blockserve user instructions per 4 KiB NBD write (randwrite QD32, tmpfs): $(((i2 - i1) / 8000))"
fi
