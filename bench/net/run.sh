#!/usr/bin/env bash
# Echo benchmark matrix: connections x message size x zero-copy, one short run
# each. The server is pinned to CPU 0, the client to CPU 1; both single-worker.
# Prints one JSON line per run and a markdown table.
# Usage: bench/net/run.sh [BUILD_DIR] [DURATION_S] [DEPTH]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
duration=${2:-2}
depth=${3:-4}
if [[ ! -x $build/bin/net_echo_server || ! -x $build/bin/net_load_client ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target net_echo_server net_load_client
fi
out=$(mktemp)
port=$((20000 + RANDOM % 20000))
for zc in off on; do
  "$build/bin/net_echo_server" --listen "127.0.0.1:$port" --workers 1 --cpus 0 --zero-copy "$zc" \
    >/dev/null 2>&1 &
  server=$!
  trap 'kill -INT $server 2>/dev/null || true' EXIT
  sleep 0.3
  for conns in 1 16 256; do
    for size in 64 4096 65536; do
      "$build/bin/net_load_client" --connect "127.0.0.1:$port" --connections "$conns" \
        --size "$size" --depth "$depth" --duration "$duration" --workers 1 --cpus 1 \
        --server-pid "$server" --zero-copy "$zc" | tee -a "$out"
    done
  done
  kill -INT "$server"
  wait "$server" || true
  trap - EXIT
  port=$((port + 1))
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print()
print("| zero-copy | conns | size | msgs/s | MiB/s | p50 us | p99 us | p99.9 us | server CPU ns/msg | client CPU ns/msg |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['zero_copy']} | {r['connections']} | {r['size']} | {r['msgs_per_s']:,.0f} | "
          f"{r['mib_per_s']:,.1f} | {r['p50_us']:,.0f} | {r['p99_us']:,.0f} | {r['p999_us']:,.0f} | "
          f"{r['server_cpu_ns_per_msg']:,.0f} | {r['client_cpu_ns_per_msg']:,.0f} |")
PY
rm -f "$out"
