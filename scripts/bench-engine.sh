#!/usr/bin/env bash
# Engine micro-benchmarks beside bare liburing, pinned to one CPU.
# Timing: Google Benchmark's medians of the task, timer and nested-await
# benchmarks (5 repetitions of >=0.5 s), then the NOP benchmarks in 5 rounds
# that alternate engine and bare liburing (each run >=0.5 s), so that a burst of
# load on the machine lands on one round rather than on every engine run or
# every bare one; per batch (1 and 32) it prints each round's times and ratio,
# the median ratio and the range of the ratios.
# Then the instructions per NOP (engine and bare liburing, batch 1 and 32), a
# measure that does not depend on the machine's load: user and kernel
# instructions from `perf stat` where the CPU exposes its counters, else
# user-space instructions from valgrind's callgrind (virtual machines without a
# PMU). Each count is the difference between two runs of engine_nop_count
# (64k and 128k NOPs), which cancels start-up.
# Usage: scripts/bench-engine.sh [BUILD_DIR]     (COUNT_ONLY=1: skip the timing;
#        ROUNDS=n: NOP timing rounds, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [[ ! -x $build/bin/engine_bench || ! -x $build/bin/engine_nop_count ]]; then
  [[ -f $build/build.ninja ]] || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target engine_bench engine_nop_count
fi
out=$(mktemp)
trap 'rm -f "$out" "$out".*' EXIT

if [[ ${COUNT_ONLY:-0} != 1 ]]; then
  bench() { # filter min_time repetitions -> JSON on stdout
    taskset -c 0 "$build/bin/engine_bench" --benchmark_filter="$1" --benchmark_min_time="$2" \
      --benchmark_repetitions="$3" --benchmark_report_aggregates_only=true \
      --benchmark_format=json
  }
  bench 'BM_(TaskSpawnComplete|AwaitNestedTask|TimerArmFire)' 0.5 5 >"$out.other"
  rounds=${ROUNDS:-5}
  for ((r = 1; r <= rounds; r++)); do
    bench 'BM_EngineNop/' 0.5 1 >"$out.engine.$r"
    bench 'BM_BareLiburingNop/' 0.5 1 >"$out.bare.$r"
  done
  python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def ns_per_item(path):
    # Without repetitions Google Benchmark reports the one run (no aggregates).
    data = json.load(open(path))
    runs = [b for b in data["benchmarks"] if b.get("aggregate_name", "median") == "median"]
    return {b["run_name"]: 1e9 / b["items_per_second"] for b in runs if b.get("items_per_second")}
print(f"{'benchmark':32} {'ns/item':>10}")
for name, ns in ns_per_item(out + ".other").items():
    print(f"{name:32} {ns:10.1f}")
engine = [ns_per_item(f"{out}.engine.{r}") for r in range(1, rounds + 1)]
bare = [ns_per_item(f"{out}.bare.{r}") for r in range(1, rounds + 1)]
for batch in (1, 32):
    e = [x[f"BM_EngineNop/{batch}"] for x in engine]
    b = [x[f"BM_BareLiburingNop/{batch}"] for x in bare]
    ratios = [ei / bi for ei, bi in zip(e, b)]
    rows = ", ".join(f"{ei:.1f}/{bi:.1f}={q:.2f}x" for ei, bi, q in zip(e, b, ratios))
    print(f"NOP batch {batch}, {rounds} alternating rounds (engine ns/bare ns): {rows}")
    print(f"NOP batch {batch}: median ratio {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}x); median engine "
          f"{statistics.median(e):.1f} ns, bare liburing {statistics.median(b):.1f} ns")
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
  trap 'kill -9 $pid 2>/dev/null; rm -rf "$dir" "$out" "$out".*' EXIT
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
