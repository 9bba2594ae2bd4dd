#!/usr/bin/env bash
# Sparse copy side by side: a 1 GiB sparse file holding 16 MiB of data (1 MiB
# every 64 MiB) served by blockserve, nbdkit (file plugin) and qemu-nbd
# (--cache=none --aio=io_uring), copied to a local file by nbdcopy (and/or
# qemu-img convert). For every copy: wall time, bytes the server process read
# from the device (/proc/PID/io read_bytes: storage reads of all its threads,
# io_uring and io-wq included; the source's page cache is dropped first), and
# for blockserve the NBD read payload it served (its /metrics). Every copy is
# checked: identical to the source (sha256) and sparse (allocated bytes).
#
#   scripts/bench-sparse-copy.sh     (settings through the environment)
#
#   BUILD_DIR=build     build tree (blockserve is built with Ninja if needed)
#   REPS=3              copies per server and copier (the table shows the median time)
#   SERVERS="blockserve nbdkit qemu-nbd"   COPIERS="nbdcopy qemu-img"
#   DISK_DIR=/var/tmp   source and destination files (a disk file system)
#   SIZE_MIB=1024 DATA_CHUNKS=16           the source: DATA_CHUNKS x 1 MiB of data
#   SERVER_CPU=0 CLIENT_CPU=1              taskset placement of server and copier
#   PORT=20909
#   OUT_DIR=...         results.tsv, table.md, server logs
#                       (default $BUILD_DIR/bench-sparse-copy/<UTC time>)
#
# Placement: servers under `taskset -c SERVER_CPU` (blockserve --workers 1),
# copiers under `taskset -c CLIENT_CPU`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
REPS=${REPS:-3}
SERVERS=${SERVERS:-blockserve nbdkit qemu-nbd}
COPIERS=${COPIERS:-nbdcopy qemu-img}
DISK_DIR=${DISK_DIR:-/var/tmp}
SIZE_MIB=${SIZE_MIB:-1024}
DATA_CHUNKS=${DATA_CHUNKS:-16}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-20909}
OUT_DIR=${OUT_DIR:-$BUILD_DIR/bench-sparse-copy/$(date -u +%Y%m%dT%H%M%SZ)}
EXPORT=sparse

die() { echo "bench-sparse-copy: $*" >&2; exit 1; }
log() { echo "bench-sparse-copy: $*" >&2; }

for t in nbdkit qemu-nbd nbdcopy qemu-img taskset curl sha256sum python3; do
  command -v "$t" >/dev/null || die "$t is not installed (scripts/setup.sh)"
done
((DATA_CHUNKS * 64 <= SIZE_MIB)) || die "DATA_CHUNKS=$DATA_CHUNKS does not fit in SIZE_MIB=$SIZE_MIB (one chunk per 64 MiB)"
if [[ ! -x "$BUILD_DIR/bin/blockserve" ]]; then
  [[ -f "$BUILD_DIR/build.ninja" ]] || die "$BUILD_DIR is not a configured build tree"
  cmake --build "$BUILD_DIR" --target blockserve >&2
fi
BLOCKSERVE=$(realpath "$BUILD_DIR/bin/blockserve")
mkdir -p "$OUT_DIR"
OUT_DIR=$(realpath "$OUT_DIR")
WORK=$(mktemp -d "$DISK_DIR/bench-sparse-copy.XXXXXX")
SRC=$WORK/source.img
DST=$WORK/copy.img
SRV_PID=""
cleanup() {
  [[ -n "$SRV_PID" ]] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the source --------------------------------------------------------------
truncate -s "${SIZE_MIB}M" "$SRC"
for ((i = 0; i < DATA_CHUNKS; i++)); do
  dd if=/dev/urandom of="$SRC" bs=1M count=1 seek=$((i * 64 + 3)) conv=notrunc status=none
done
sync "$SRC"
SRC_SHA=$(sha256sum "$SRC" | cut -d' ' -f1)
SRC_ALLOC=$(($(stat -c %b "$SRC") * $(stat -c %B "$SRC")))
log "source: ${SIZE_MIB} MiB, $DATA_CHUNKS MiB of data, $SRC_ALLOC bytes allocated"

drop_cache() { # write back and drop the file's pages
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"
}
io_field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/io"; }

start_server() { # NAME LOG
  case "$1" in
    blockserve)
      taskset -c "$SERVER_CPU" "$BLOCKSERVE" --listen 127.0.0.1 --port "$PORT" --workers 1 \
        --metrics-port $((PORT + 1)) --export "$EXPORT=$SRC,ro" --log-level warn >"$2" 2>&1 & ;;
    nbdkit)
      taskset -c "$SERVER_CPU" nbdkit -f -r -p "$PORT" -i 127.0.0.1 --exportname="$EXPORT" \
        file "$SRC" >"$2" 2>&1 & ;;
    qemu-nbd)
      taskset -c "$SERVER_CPU" qemu-nbd -f raw -r -b 127.0.0.1 -p "$PORT" -x "$EXPORT" -t \
        --cache=none --aio=io_uring "$SRC" >"$2" 2>&1 & ;;
    *) die "unknown server $1" ;;
  esac
  SRV_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$SRV_PID" 2>/dev/null || die "$1 exited at start-up (log $2)"
    nbdinfo --size "nbd://127.0.0.1:$PORT/$EXPORT" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$1 did not serve within 10 s (log $2)"
}
stop_server() {
  kill "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
}
served_read_bytes() { # blockserve's NBD read payload so far
  curl -s "http://127.0.0.1:$((PORT + 1))/metrics" \
    | awk -v e="$EXPORT" '$1 == "blockserve_request_bytes_total{export=\"" e "\",command=\"read\"}" { print $2 }'
}

copy() { # COPIER URI DST
  case "$1" in
    nbdcopy) taskset -c "$CLIENT_CPU" nbdcopy "$2" "$3" ;;
    qemu-img) taskset -c "$CLIENT_CPU" qemu-img convert -f raw -O raw "$2" "$3" ;;
    *) die "unknown copier $1" ;;
  esac
}

RESULTS=$OUT_DIR/results.tsv
{
  echo "# $(date -u +%FT%TZ) $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) source ${SIZE_MIB} MiB with $DATA_CHUNKS MiB of data in $DISK_DIR"
  echo "# blockserve: $BLOCKSERVE, built $(date -u -r "$BLOCKSERVE" +%FT%TZ)$(src=$(git -C "$(dirname "$BLOCKSERVE")/../.." rev-parse --short HEAD 2>/dev/null) && echo " in a tree at $src")"
  echo "# $(nproc) CPUs; servers under taskset -c $SERVER_CPU (blockserve --workers 1), copiers under taskset -c $CLIENT_CPU"
  echo "# $(nbdkit --version), $(qemu-nbd --version | head -1), $(nbdcopy --version | head -1), $(qemu-img --version | head -1)"
  printf 'server\tcopier\trep\tseconds\tdevice_read_bytes\tnbd_read_bytes\tcopy_allocated_bytes\n'
} >"$RESULTS"

for copier in $COPIERS; do
  for ((rep = 1; rep <= REPS; rep++)); do
    for server in $SERVERS; do  # servers alternate within every round
      rm -f "$DST"
      drop_cache "$SRC"
      start_server "$server" "$OUT_DIR/$server.log"
      before=$(io_field "$SRV_PID" read_bytes)
      nbd_before=0
      [[ $server == blockserve ]] && nbd_before=$(served_read_bytes)
      t0=$(date +%s.%N)
      copy "$copier" "nbd://127.0.0.1:$PORT/$EXPORT" "$DST" >"$OUT_DIR/copy.out" 2>&1 \
        || { cat "$OUT_DIR/copy.out" >&2; die "$copier from $server failed"; }
      t1=$(date +%s.%N)
      after=$(io_field "$SRV_PID" read_bytes)
      nbd_bytes=NA
      [[ $server == blockserve ]] && nbd_bytes=$(($(served_read_bytes) - nbd_before))
      stop_server
      sha=$(sha256sum "$DST" | cut -d' ' -f1)
      [[ $sha == "$SRC_SHA" ]] || die "$copier from $server: the copy differs from the source"
      alloc=$(($(stat -c %b "$DST") * $(stat -c %B "$DST")))
      secs=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
      printf '%s\t%s\t%d\t%s\t%d\t%s\t%d\n' "$server" "$copier" "$rep" "$secs" \
        $((after - before)) "$nbd_bytes" "$alloc" >>"$RESULTS"
      log "$copier from $server (round $rep): ${secs}s, device read $((after - before)) bytes, NBD read $nbd_bytes, copy allocates $alloc"
    done
  done
done

python3 - "$RESULTS" >"$OUT_DIR/table.md" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if not l.startswith(("#", "server"))]
groups = {}
for server, copier, rep, secs, dev, nbd, alloc in rows:
    groups.setdefault((copier, server), []).append((float(secs), int(dev), nbd, int(alloc)))
print("| copier | server | copies | median time (s) | device read (MiB, at the median) | NBD read payload (MiB) | copy allocated (MiB) |")
print("|---|---|---|---|---|---|---|")
for (copier, server), runs in groups.items():
    runs.sort()
    secs, dev, nbd, alloc = runs[len(runs) // 2]
    nbd = "-" if nbd == "NA" else "%.1f" % (int(nbd) / 2**20)
    print(f"| {copier} | {server} | {len(runs)} | {secs:.2f} | {dev / 2**20:.1f} | {nbd} | {alloc / 2**20:.1f} |")
EOF
cat "$OUT_DIR/table.md"
log "results: $RESULTS"
