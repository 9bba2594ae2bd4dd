#!/usr/bin/env bash
# NBD servers side by side: blockserve against nbdkit (file plugin), qemu-nbd
# (--cache=none --aio=io_uring) and nbd-server, each serving the same file and
# driven by fio's nbd engine, one server at a time, alternating the servers
# within every configuration. A local fio run (io_uring, O_DIRECT, same file,
# same job, no NBD) joins the rotation as the baseline for the disk goal.
# The floor (bench/nbdfloor's nbd-floor, tmpfs only) is the least server work per
# NBD request: one read() of every queued byte, write payloads memcpy'd into a
# shared mapping of the file, one write() of all replies; it is a yardstick, not
# a peer, and the summary gives blockserve's IOPS per server CPU-second against it.
#
#   scripts/bench-nbd.sh            (settings through the environment)
#
#   BUILD_DIR=build    build tree (configured and built with Ninja if needed)
#   RUNTIME=5          seconds per point      SIZE=1g      file size
#   REPS=1             rounds per configuration (the table shows the median-IOPS round;
#                      with REPS>1 a second table gives blockserve's ratio to the best
#                      peer of each round, and on tmpfs to the floor of that round:
#                      median, range and every round's figure)
#   DISK_DIR=/var/tmp  the local-disk file    (the tmpfs file is in /dev/shm)
#   TARGETS="disk shm" CONNS="1 4"   SERVERS="blockserve nbdkit qemu-nbd nbd-server floor"
#                      (floor runs on the shm target with CONNS 1 only: it serves one
#                      connection at a time, and has no idle-connection RSS figure)
#   WORKLOADS="randread:4k:1 randread:4k:32 randwrite:4k:1 randwrite:4k:32 read:128k:8"
#   SERVER_PLACEMENT=taskset  every server under taskset -c 0 (below); or engine:
#                      no taskset on any server: blockserve (--workers 1) places its
#                      worker itself (block::PlaceWorkers: where the file's
#                      completions arrive), the peers go where the scheduler puts them
#   CLIENT_CPU=1       fio runs under taskset -c CLIENT_CPU; none: no taskset (the
#                      default with SERVER_PLACEMENT=engine, which may choose CPU 1)
#   IDLE_CONNS=1000    idle connections for the RSS measurement (0 skips it)
#   PORT_BASE=20809    ports PORT_BASE..PORT_BASE+5
#   OUT_DIR=...        fio JSON, server logs, thread placement snapshots
#                      (<point>.threads), placement.md, results.tsv, table.md
#                      (default $BUILD_DIR/bench-nbd/<UTC time>)
#   SKIP_INSTALL=1     do not apt-get missing peers
#
# Placement (SERVER_PLACEMENT=taskset, the default): every server runs under
# `taskset -c 0` (all its threads, forked children and io-wq workers inherit
# it); blockserve runs with --workers 1 and pins its one worker to CPU 0 itself
# (the only CPU it may use). fio runs under `taskset -c 1`: server and client
# each own one of the 2 vCPUs. With SERVER_PLACEMENT=engine no server is under
# taskset: blockserve chooses its worker's CPU (its log's `placement:` line),
# the others are placed by the scheduler. Either way, halfway through every
# point each thread of the server (and of fio when CLIENT_CPU=none) is recorded
# with the CPUs it may use, the CPU it last ran on and its CPU time so far;
# placement.md (appended to table.md) lists the busiest threads of each point.
# Latency: fio's lat percentiles (submission to completion, --lat_percentiles=1).
# Server CPU: utime+stime (+cutime+cstime of reaped children, for nbd-server's
# per-connection processes) of the server process from /proc/PID/stat, all
# threads included, sampled right before fio starts and after it exits.
# On the disk target the file's page cache is written back and dropped
# (posix_fadvise DONTNEED via dd iflag=nocache) before every point.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
RUNTIME=${RUNTIME:-5}
REPS=${REPS:-1}
SIZE=${SIZE:-1g}
DISK_DIR=${DISK_DIR:-/var/tmp}
TARGETS=${TARGETS:-disk shm}
CONNS=${CONNS:-1 4}
SERVERS=${SERVERS:-blockserve nbdkit qemu-nbd nbd-server floor}
WORKLOADS=${WORKLOADS:-randread:4k:1 randread:4k:32 randwrite:4k:1 randwrite:4k:32 read:128k:8}
SERVER_PLACEMENT=${SERVER_PLACEMENT:-taskset}
SERVER_CPU=0 # SERVER_PLACEMENT=taskset: every server under taskset -c 0
if [[ ${SERVER_PLACEMENT} == engine ]]; then CLIENT_CPU=${CLIENT_CPU:-none}; else CLIENT_CPU=${CLIENT_CPU:-1}; fi
case $SERVER_PLACEMENT in
  taskset) SERVER_PIN=(taskset -c "$SERVER_CPU") ;;
  engine) SERVER_PIN=() ;;
  *) echo "bench-nbd: SERVER_PLACEMENT=$SERVER_PLACEMENT: use taskset or engine" >&2; exit 1 ;;
esac
CLIENT_PIN=(taskset -c "$CLIENT_CPU")
[[ $CLIENT_CPU == none ]] && CLIENT_PIN=()
IDLE_CONNS=${IDLE_CONNS:-1000}
PORT_BASE=${PORT_BASE:-20809}
OUT_DIR=${OUT_DIR:-$BUILD_DIR/bench-nbd/$(date -u +%Y%m%dT%H%M%SZ)}
HELPER=$ROOT/scripts/bench_nbd_report.py
PY=/usr/bin/python3
EXPORT=bench

die() { echo "bench-nbd: $*" >&2; exit 1; }
log() { echo "bench-nbd: $*" >&2; }

# --- peers and tools ---------------------------------------------------------
need_pkgs=()
for pair in nbdkit:nbdkit qemu-nbd:qemu-utils nbd-server:nbd-server fio:fio jq:jq \
            nbdinfo:libnbd-bin ss:iproute2 taskset:util-linux cmake:cmake ninja:ninja-build; do
  command -v "${pair%%:*}" >/dev/null || need_pkgs+=("${pair#*:}")
done
[[ -x $PY ]] || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
  [[ -n ${SKIP_INSTALL:-} ]] && die "missing: ${need_pkgs[*]}"
  log "installing ${need_pkgs[*]}"
  SUDO=; ((EUID == 0)) || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi
# The nbd engine needs a fio built with libnbd (Debian's is).
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"

# --- build --------------------------------------------------------------------
if [[ ! -f $BUILD_DIR/build.ninja ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
BIN_DIR=$ROOT/$BUILD_DIR/bin
[[ $BUILD_DIR == /* ]] && BIN_DIR=$BUILD_DIR/bin
build_targets=(blockserve)
[[ " $SERVERS " == *" floor "* ]] && build_targets+=(nbd-floor)
cmake --build "$BUILD_DIR" --target "${build_targets[@]}" >&2 ||
  die "building ${build_targets[*]} failed (nbd-floor needs a tree configured with RINGLINE_BUILD_BENCH=ON)"
BLOCKSERVE=$BIN_DIR/blockserve
NBD_FLOOR=$BIN_DIR/nbd-floor
[[ -x $BLOCKSERVE ]] || die "no $BLOCKSERVE after the build"

[[ "$(stat -f -c %T "$DISK_DIR")" != tmpfs ]] || die "DISK_DIR=$DISK_DIR is tmpfs; use a disk filesystem"
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
RESULTS=$OUT_DIR/results.tsv
: >"$RESULTS"
PLACEMENT_MD=$OUT_DIR/placement.md
{
  echo "| point | blockserve's placement (its log) | busiest server threads halfway: CPU last run on | fio |"
  echo "|---|---|---|---|"
} >"$PLACEMENT_MD"
DISK_FILE=$DISK_DIR/ringline-bench-nbd.img
SHM_FILE=/dev/shm/ringline-bench-nbd.img
TICK=$(getconf CLK_TCK)

# --- server lifecycle -----------------------------------------------------------
SRV_PID= SRV_NAME= SRV_CHILD= HOLDER_PID=
stop_server() {
  [[ -n $SRV_PID ]] || return 0
  local pid=$SRV_PID rc=0 i
  SRV_PID=
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$SRV_NAME (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Our own child (not nbd-server, which daemonizes): collect its exit status.
  if [[ $SRV_CHILD == "$pid" ]]; then
    wait "$pid" 2>/dev/null || rc=$?
    if ((rc != 0)) && [[ $SRV_NAME == blockserve ]]; then
      log "blockserve exited with status $rc after SIGTERM (log: $SRV_LOG)"
      echo "# blockserve exit status $rc after SIGTERM, log $SRV_LOG" >>"$RESULTS"
    fi
  fi
  SRV_CHILD=
}
cleanup() {
  local rc=$?
  [[ -n $HOLDER_PID ]] && kill "$HOLDER_PID" 2>/dev/null
  stop_server
  rm -f "$SHM_FILE" "$DISK_FILE"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening_pid() { # PORT -> pid of the process listening there (empty if none)
  ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1
}

# start_server NAME FILE PORT: sets SRV_PID, SRV_NAME, SRV_LOG; dies if it does not serve a handshake.
start_server() {
  local name=$1 file=$2 port=$3 i pid=
  SRV_NAME=$name
  SRV_LOG=$OUT_DIR/$name.log
  if ss -ltnH "sport = :$port" | grep -q .; then die "port $port is already in use"; fi
  echo "=== $(date -u +%T) $name $file port $port" >>"$SRV_LOG"
  case $name in
    blockserve)
      "${SERVER_PIN[@]}" "$BLOCKSERVE" --listen 127.0.0.1 --port "$port" \
        --export "$EXPORT=$file" --workers 1 --log-level info >>"$SRV_LOG" 2>&1 &
      pid=$! ;;
    floor)
      "${SERVER_PIN[@]}" "$NBD_FLOOR" --listen 127.0.0.1 --port "$port" --export "$EXPORT" \
        "$file" >>"$SRV_LOG" 2>&1 &
      pid=$! ;;
    nbdkit)
      "${SERVER_PIN[@]}" nbdkit -f -p "$port" -i 127.0.0.1 --exportname="$EXPORT" \
        file "$file" >>"$SRV_LOG" 2>&1 &
      pid=$! ;;
    qemu-nbd)
      "${SERVER_PIN[@]}" qemu-nbd -f raw -b 127.0.0.1 -p "$port" -x "$EXPORT" -t \
        -e "$((IDLE_CONNS + 16))" --cache=none --aio=io_uring "$file" >>"$SRV_LOG" 2>&1 &
      pid=$! ;;
    nbd-server)
      cat >"$OUT_DIR/nbd-server.conf" <<EOF
[generic]
listenaddr = 127.0.0.1
port = $port
allowlist = true
[$EXPORT]
exportname = $file
flush = true
fua = true
trim = true
EOF
      # Daemonizes and forks one process per connection.
      "${SERVER_PIN[@]}" nbd-server -C "$OUT_DIR/nbd-server.conf" \
        -p "$OUT_DIR/nbd-server.pid" >>"$SRV_LOG" 2>&1 ||
        die "nbd-server failed to start (log: $SRV_LOG)" ;;
    *) die "unknown server $name" ;;
  esac
  SRV_CHILD=$pid
  SRV_PID=$pid
  for ((i = 0; i < 150; i++)); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$SRV_LOG" >&2
      die "$name exited during start-up (log: $SRV_LOG)"
    fi
    local lp
    lp=$(listening_pid "$port")
    # Ready when it serves a handshake: a server may listen before its
    # export is open (blockserve opens and maps it on its worker), and its
    # CPU is counted from here.
    if [[ -n $lp ]] && timeout 5 nbdinfo --size "nbd://127.0.0.1:$port/$EXPORT" >/dev/null 2>&1; then
      [[ -z $pid ]] && SRV_PID=$lp  # nbd-server: the daemon
      return 0
    fi
    sleep 0.1
  done
  tail -20 "$SRV_LOG" >&2
  die "$name did not serve an NBD handshake on 127.0.0.1:$port within 150 tries (log: $SRV_LOG)"
}

# CPU ticks of PID: utime+stime+cutime+cstime, plus utime+stime of live children.
cpu_ticks() {
  local pid=$1 t c
  t=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 + $14 + $15 }')
  for c in $(pgrep -P "$pid" || true); do
    t=$((t + $(sed 's/^.*) //' "/proc/$c/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0)))
  done
  echo "$t"
}

threads_snapshot() { # PID... : one line per thread of each PID (and of its child processes):
  # "pid tid name allowed_cpus last_cpu cpu_ticks", busiest first
  local pid t
  for pid in "$@" $(for p in "$@"; do pgrep -P "$p"; done || true); do
    for t in /proc/"$pid"/task/*; do
      printf '%s %s %s %s %s\n' "$pid" "${t##*/}" "$(tr ' ' _ <"$t/comm")" \
        "$(awk '/Cpus_allowed_list/ { print $2 }' "$t/status")" \
        "$(sed 's/^.*) //' "$t/stat" | awk '{ print $37, $12 + $13 }')"
    done
  done 2>/dev/null | sort -k6,6nr || true
}
where_threads() { # SNAPSHOT_FILE -> "name on CPU n (CPUs a, t ticks); ..." for the 3 busiest
  awk 'NF == 6 && n < 3 { printf "%s%s on CPU %s (may use %s, %s ticks)", n ? "; " : "", $3, $5, $4, $6; ++n }' "$1"
}

evict() { # write back and drop the file's page cache
  sync "$1"
  dd if="$1" iflag=nocache count=0 status=none
}

# --- one measurement -------------------------------------------------------------
# run_point SERVER TARGET FILE RW BS QD JOBS PORT
run_point() {
  local srv=$1 target=$2 file=$3 rw=$4 bs=$5 qd=$6 jobs=$7 port=$8
  local tag=$target-$rw-$bs-qd$qd-j$jobs-$srv
  local out=$OUT_DIR/$tag.json args=() c0 c1 load cpu_s rc=0 res
  args=(--name=bench --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs="$jobs" --group_reporting
        --runtime="$RUNTIME" --time_based --norandommap --randrepeat=0 --lat_percentiles=1
        --output-format=json --output="$out")
  if [[ $rw == read || $rw == write ]]; then # sequential: one slice of the file per job
    local slice=$(($(stat -c %s "$file") / jobs))
    args+=(--size="$slice" --offset_increment="$slice")
  else
    args+=(--size="$(stat -c %s "$file")")
  fi
  [[ $target == disk ]] && evict "$file"
  load=$(cut -d' ' -f1 /proc/loadavg)
  if [[ $srv == fio-local ]]; then
    "${CLIENT_PIN[@]}" fio "${args[@]}" --filename="$file" --ioengine=io_uring --direct=1 \
      >"$OUT_DIR/$tag.stdout" 2>&1 || rc=$?
    cpu_s=-
  else
    start_server "$srv" "$file" "$port"
    c0=$(cpu_ticks "$SRV_PID")
    "${CLIENT_PIN[@]}" fio "${args[@]}" --ioengine=nbd --uri="nbd://127.0.0.1:$port/$EXPORT" \
      >"$OUT_DIR/$tag.stdout" 2>&1 &
    local fio_pid=$!
    # Halfway through: where each server thread (and fio's, when unpinned) runs.
    sleep "$(awk -v r="$RUNTIME" 'BEGIN { print r / 2 }')"
    threads_snapshot "$SRV_PID" >"$OUT_DIR/$tag.threads"
    [[ $CLIENT_CPU == none ]] && threads_snapshot "$fio_pid" >"$OUT_DIR/$tag.fio-threads"
    wait "$fio_pid" || rc=$?
    local placed where
    where=$(where_threads "$OUT_DIR/$tag.threads")
    placed=
    [[ $srv == blockserve ]] && placed=$(grep 'INFO placement:' "$SRV_LOG" | tail -1 | sed 's/.*INFO placement: //')
    log "$tag: ${placed:+blockserve placement: $placed; }busiest threads: ${where:-none}"
    if [[ $placed =~ worker\ 0\ on\ CPU\ ([0-9]+) && ${BASH_REMATCH[1]} == "$CLIENT_CPU" ]]; then
      log "$tag: note: fio (taskset -c $CLIENT_CPU) shares CPU $CLIENT_CPU with blockserve's worker"
    fi
    printf '| %s | %s | %s | %s |\n' "$tag" "${placed:--}" "${where:-none}" \
      "$( [[ -s $OUT_DIR/$tag.fio-threads ]] && where_threads "$OUT_DIR/$tag.fio-threads" || echo "taskset -c $CLIENT_CPU")" \
      >>"$PLACEMENT_MD"
    # nbd-server: wait for the per-connection processes to exit and be reaped.
    local i
    for ((i = 0; i < 50; i++)); do [[ -z $(pgrep -P "$SRV_PID" || true) ]] && break; sleep 0.1; done
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
      log "$srv DIED during $tag (log: $SRV_LOG)"; tail -20 "$SRV_LOG" >&2
      echo "# FAILED $tag: $srv died; log $SRV_LOG" >>"$RESULTS"
      SRV_PID=; SRV_CHILD=; return 0
    fi
    c1=$(cpu_ticks "$SRV_PID")
    cpu_s=$(awk -v a="$c0" -v b="$c1" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
    stop_server
  fi
  if ((rc != 0)) || ! res=$("$PY" "$HELPER" fio "$out" "$rw" 2>&1); then
    log "fio failed for $tag (rc $rc): $(tail -5 "$OUT_DIR/$tag.stdout" | tr '\n' ' ') $res"
    echo "# FAILED $tag: fio rc $rc; see $OUT_DIR/$tag.stdout" >>"$RESULTS"
    return 0
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "${bs}_${rw}_QD$qd" "$jobs" "$srv" \
    "$(tr ' ' '\t' <<<"$res")" "$cpu_s" "$load" >>"$RESULTS"
  log "$(printf '%-5s %-17s j%s %-10s %s cpu %s s load %s' "$target" "$bs $rw QD$qd" "$jobs" "$srv" "$res" "$cpu_s" "$load")"
}

# --- files ------------------------------------------------------------------------
bytes=$(numfmt --from=iec "${SIZE^^}")
for f in "$DISK_FILE" "$SHM_FILE"; do
  log "writing $bytes random bytes to $f"
  dd if=/dev/urandom of="$f" bs=1M count=$((bytes / 1048576)) conv=fsync status=none
done

START=$(date -u +%FT%TZ)
{
  dirty=$(git status --porcelain -- engine net block tools/blockserve bench/nbdfloor 2>/dev/null | wc -l)
  echo "# bench-nbd $START, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( ((dirty)) && echo " + $dirty uncommitted file(s) under engine/ net/ block/ tools/blockserve/ bench/nbdfloor/"), kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ $SERVER_PLACEMENT == taskset ]]; then
    echo "# servers under taskset -c $SERVER_CPU (blockserve --workers 1, worker pinned to CPU 0), fio under ${CLIENT_PIN[*]:-no taskset}"
  else
    echo "# SERVER_PLACEMENT=engine: no server under taskset (blockserve --workers 1 places its worker itself; the peers where the scheduler puts them), fio under ${CLIENT_PIN[*]:-no taskset}; where each thread ran: placement.md"
  fi
  echo "# ${RUNTIME}s per point, $REPS round(s) per configuration, file $SIZE, disk $DISK_FILE ($(stat -f -c %T "$DISK_DIR")), tmpfs $SHM_FILE"
  echo "# $(fio --version), $(nbdkit --version), $(qemu-nbd --version | head -1), $(nbd-server -V 2>&1 | head -1)"
} | tee -a "$RESULTS" >&2

# --- the matrix: alternate the servers within every configuration ---------------------
if [[ " $SERVERS " == *" floor "* && " $CONNS " != " 1 " ]]; then
  log "floor: one connection at a time (run only where conns = 1)"
fi
rot=0
for target in $TARGETS; do
  file=$DISK_FILE
  [[ $target == shm ]] && file=$SHM_FILE
  [[ $target != shm && " $SERVERS " == *" floor "* ]] && log "floor: tmpfs only (not run on the $target target)"
  for wl in $WORKLOADS; do
    IFS=: read -r rw bs qd <<<"$wl"
    for jobs in $CONNS; do
      servers=()
      for srv in $SERVERS; do
        # The floor maps the file (on a disk file it would measure the page cache)
        # and serves one connection at a time (fio's jobs would run one after another).
        [[ $srv == floor && ($target != shm || $jobs != 1) ]] && continue
        servers+=("$srv")
      done
      servers+=(fio-local)
      n=${#servers[@]}
      for ((rep = 0; rep < REPS; rep++)); do
        for ((k = 0; k < n; k++)); do # rotate the starting server from one round to the next
          idx=$(((k + rot) % n))
          run_point "${servers[idx]}" "$target" "$file" "$rw" "$bs" "$qd" "$jobs" "$((PORT_BASE + idx % 5))"
        done
        rot=$((rot + 1))
      done
    done
  done
done

# --- RSS with idle connections ------------------------------------------------------
RSS_MD=$OUT_DIR/rss.md
: >"$RSS_MD"
rss_of() { # PID -> "VmRSS_KiB threads PSS_KiB_over_the_process_tree processes"
  local pid=$1 pids p pss=0
  pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
  for p in $pids; do
    pss=$((pss + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
  done
  echo "$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status") $(awk '/^Threads/ { print $2 }' "/proc/$pid/status") $pss $(wc -w <<<"$pids")"
}
if ((IDLE_CONNS > 0)); then
  ulimit -n "$(ulimit -Hn)" # the peers take their descriptor limit from us
  {
    echo "| server | VmRSS idle, no clients | VmRSS with $IDLE_CONNS idle connections | per connection | threads | processes | Σ PSS over its processes |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
  } >>"$RSS_MD"
  for srv in $SERVERS; do
    if [[ $srv == floor ]]; then log "floor: one connection at a time, no idle-connection figure"; continue; fi
    port=$((PORT_BASE + 5))
    start_server "$srv" "$SHM_FILE" "$port"
    sleep 0.5
    read -r r0 _ _ _ <<<"$(rss_of "$SRV_PID")"
    coproc HOLDER { exec "$PY" "$HELPER" idle 127.0.0.1 "$port" "$EXPORT" "$IDLE_CONNS"; }
    line=
    read -r -t 180 line <&"${HOLDER[0]}" || true
    if [[ $line != "ready $IDLE_CONNS" ]]; then
      log "$srv: idle connections: ${line:-no answer in 180 s} (log: $SRV_LOG)"
      echo "| $srv | $r0 KiB | failed: ${line:-timeout} | | | | |" >>"$RSS_MD"
    else
      sleep 1
      if kill -0 "$SRV_PID" 2>/dev/null; then
        read -r r1 thr pss procs <<<"$(rss_of "$SRV_PID")"
        awk -v s="$srv" -v a="$r0" -v b="$r1" -v t="$thr" -v p="$pss" -v n="$procs" -v c="$IDLE_CONNS" \
          'BEGIN { printf "| %s | %.1f MiB | %.1f MiB | %.1f KiB | %d | %d | %.1f MiB |\n", s, a / 1024, b / 1024, (b - a) / c, t, n, p / 1024 }' >>"$RSS_MD"
      else
        log "$srv DIED with $IDLE_CONNS idle connections (log: $SRV_LOG)"
        echo "| $srv | $r0 KiB | server died | | | | |" >>"$RSS_MD"
      fi
    fi
    [[ -n ${HOLDER[1]:-} ]] && eval "exec ${HOLDER[1]}>&-" # close the holder's stdin: it closes its sockets and exits
    wait "$HOLDER_PID" 2>/dev/null || true
    HOLDER_PID=
    stop_server
  done
fi

# --- report ------------------------------------------------------------------------
{
  grep '^# ' "$RESULTS" | grep -v FAILED || true
  echo "# finished $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  "$PY" "$HELPER" table "$RESULTS"
  if grep -q '^# FAILED\|exit status' "$RESULTS"; then
    echo
    echo "Failures:"
    grep '^# FAILED\|exit status' "$RESULTS" | sed 's/^# /- /'
  fi
  echo
  echo "Where the threads ran (halfway through each point; SERVER_PLACEMENT=$SERVER_PLACEMENT):"
  echo
  cat "$PLACEMENT_MD"
  if [[ -s $RSS_MD ]]; then
    echo
    echo "Resident memory with $IDLE_CONNS idle connections (each finished NBD_OPT_GO), serving the tmpfs file:"
    echo
    cat "$RSS_MD"
  fi
} | tee "$OUT_DIR/table.md"
echo >&2
log "results in $OUT_DIR"
