#!/usr/bin/env bash
# Engine micro-benchmarks beside bare liburing, in one run, pinned to one CPU.
# Prints Google Benchmark's medians and the engine/bare time-per-NOP ratios.
# Usage: scripts/bench-engine.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [[ ! -x $build/bin/engine_bench ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target engine_bench
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
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
