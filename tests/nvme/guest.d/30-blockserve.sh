#!/bin/bash
# Guest test of blockserve's NVMe backend, run by scripts/nvme-qemu-test.sh in
# the QEMU guest: blockserve exports /dev/ng0n1 (read-write, 512-byte LBAs) and
# /dev/ng0n2 (read-only, 4096-byte LBAs) on 127.0.0.1, and real clients in the
# guest check it:
#   1. nbdinfo: sizes, flags and the minimum block size = the LBA size;
#   2. qemu-io: write -P / read -P patterns (also one larger than MDTS), FUA,
#      flush, write -z, discard, and a refused write on the read-only export;
#   3. the nbd Python module: an 8 MiB random write read back, and the
#      host-checked pattern `pattern 1 234881024 1048576 29` written with FUA
#      (appended to $RINGLINE_RESULTS_DIR/expect);
#   4. nbdcopy of the whole ns2 export (64 MiB) to stdout against an O_DIRECT
#      read of /dev/nvme0n2 (sha256);
#   5. SIGTERM: blockserve exits 0; the pattern is then read from the block
#      device directly.
# Only ns1 bytes 128 MiB..256 MiB are written (earlier scripts register
# expectations below 4 MiB on ns1 and on ns2).
set -euo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
fail() {
  echo "FAIL: $*"
  if [[ -n "${bs_log:-}" && -f "$bs_log" ]]; then
    echo "--- blockserve log (last 40 lines):"
    tail -n 40 "$bs_log"
  fi
  exit 1
}
step() { echo "--- [${SECONDS}s] $*"; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
: "${RINGLINE_BUILD_DIR:?}" "${RINGLINE_RESULTS_DIR:?}" "${RINGLINE_NVME_NS1:?}" "${RINGLINE_NVME_NS2:?}"
: "${RINGLINE_NVME_NS1_BYTES:?}" "${RINGLINE_NVME_NS1_LBA:?}" "${RINGLINE_NVME_NS2_BYTES:?}"
: "${RINGLINE_NVME_NS2_LBA:?}" "${RINGLINE_NVME_NS1_BLOCK:?}" "${RINGLINE_NVME_NS2_BLOCK:?}"

bs="$RINGLINE_BUILD_DIR/bin/blockserve"
[[ -x "$bs" ]] || fail "$bs is not built (ninja -C $RINGLINE_BUILD_DIR blockserve)"
for tool in nbdinfo nbdcopy qemu-io python3 sha256sum dd; do
  command -v "$tool" >/dev/null || skip "$tool is not installed on the host root"
done
python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd (the nbd module) is not installed"

# The worker's fixed-file table needs a raised RLIMIT_NOFILE (see 10-block.sh).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
# The guest's init does not configure networking: bring up loopback.
if ! ip -o link show lo 2>/dev/null | grep -q "UP"; then
  ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null || true
fi

work=$(mktemp -d /tmp/blockserve-guest.XXXXXX)
bs_log="$RINGLINE_RESULTS_DIR/blockserve-guest.log"
port=10809
bs_pid=""
cleanup() {
  if [[ -n "$bs_pid" ]] && kill -0 "$bs_pid" 2>/dev/null; then
    kill -TERM "$bs_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$bs_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$bs_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "start blockserve: ns1=$RINGLINE_NVME_NS1, ns2=$RINGLINE_NVME_NS2 (ro) on 127.0.0.1:$port"
"$bs" --listen 127.0.0.1 --port "$port" --workers 1 \
  --export "ns1=$RINGLINE_NVME_NS1" --export "ns2=$RINGLINE_NVME_NS2,ro" \
  --data-dir "$work/data" --log-level info >"$bs_log" 2>&1 &
bs_pid=$!
ready=0
for _ in $(seq 1 120); do
  kill -0 "$bs_pid" 2>/dev/null || fail "blockserve exited during start-up"
  if timeout 10 nbdinfo --size "nbd://127.0.0.1:$port/ns1" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
((ready)) || fail "blockserve did not serve nbd://127.0.0.1:$port/ns1 within 60 s"
uri1="nbd://127.0.0.1:$port/ns1"
uri2="nbd://127.0.0.1:$port/ns2"

step "nbdinfo --json"
timeout 60 nbdinfo --json --no-content "$uri1" >"$work/ns1.json" || fail "nbdinfo ns1 failed"
timeout 60 nbdinfo --json --no-content "$uri2" >"$work/ns2.json" || fail "nbdinfo ns2 failed"
python3 - "$work/ns1.json" "$work/ns2.json" "$RINGLINE_NVME_NS1_BYTES" "$RINGLINE_NVME_NS1_LBA" \
  "$RINGLINE_NVME_NS2_BYTES" "$RINGLINE_NVME_NS2_LBA" <<'EOF' || fail "nbdinfo shows the wrong export facts"
import json, sys
bad = []
for path, size, lba, ro in ((sys.argv[1], int(sys.argv[3]), int(sys.argv[4]), False),
                            (sys.argv[2], int(sys.argv[5]), int(sys.argv[6]), True)):
    e = json.load(open(path))["exports"][0]
    print(f"  {e['export-name']}: size {e['export-size']} ro {e['is_read_only']} "
          f"min {e.get('block_size_minimum')} pref {e.get('block_size_preferred')} "
          f"max {e.get('block_size_maximum')} flush {e.get('can_flush')} fua {e.get('can_fua')} "
          f"trim {e.get('can_trim')} zero {e.get('can_zero')} multi-conn {e.get('can_multi_conn')}")
    if e["export-size"] != size:
        bad.append(f"{e['export-name']}: size {e['export-size']} != {size}")
    if e.get("block_size_minimum") != lba:
        bad.append(f"{e['export-name']}: minimum block size {e.get('block_size_minimum')} != LBA {lba}")
    if e["is_read_only"] != ro:
        bad.append(f"{e['export-name']}: is_read_only {e['is_read_only']}")
    if not ro:
        for k in ("can_flush", "can_fua", "can_trim", "can_zero"):
            if e.get(k) is not True:
                bad.append(f"{e['export-name']}: {k} is {e.get(k)}")
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
EOF

qio() { # qemu-io against ns1 with the given -c commands; fails on any error
  local out rc=0
  local args=()
  for c in "$@"; do args+=(-c "$c"); done
  out=$(timeout 180 qemu-io -f raw "${args[@]}" "$uri1" 2>&1) || rc=$?
  echo "$out" | grep -v "^[0-9.]* [KMG]\?i\?B, " | sed 's/^/    /' | head -n 40
  if ((rc != 0)) || grep -qiE "fail|error|invalid" <<<"$out"; then
    fail "qemu-io ${*} (exit $rc)"
  fi
}
M=$((1024 * 1024))
step "qemu-io: patterns at 128 MiB+ (one 2 MiB request, above the 512 KiB MDTS)"
qio "write -P 0xa1 $((128 * M)) 4k" "write -P 0xb2 $((129 * M)) 64k" \
  "write -P 0xc3 $((130 * M)) 2M" "write -P 0xd4 $((133 * M + 512)) 512" \
  "read -P 0xa1 $((128 * M)) 4k" "read -P 0xb2 $((129 * M)) 64k" \
  "read -P 0xc3 $((130 * M)) 2M" "read -P 0xd4 $((133 * M + 512)) 512" \
  "read -P 0 $((133 * M)) 512"
step "qemu-io: a new connection reads the same data"
qio "read -P 0xa1 $((128 * M)) 4k" "read -P 0xc3 $((130 * M)) 2M"
step "qemu-io: FUA write, flush, write zeroes, discard"
qio "write -f -P 0xe5 $((134 * M)) 128k" "flush" "read -P 0xe5 $((134 * M)) 128k" \
  "write -P 0x66 $((136 * M)) 1M" "write -z $((136 * M)) 256k" \
  "read -P 0 $((136 * M)) 256k" "read -P 0x66 $((136 * M + 256 * 1024)) 768k" \
  "write -P 0x77 $((138 * M)) 1M" "discard $((138 * M)) 512k" \
  "read -P 0x77 $((138 * M + 512 * 1024)) 512k"

step "qemu-io: a write to the read-only export is refused"
ro_out=$(timeout 60 qemu-io -f raw -c "write -P 0x11 0 4k" "$uri2" 2>&1) && ro_rc=0 || ro_rc=$?
echo "    $ro_out" | head -n 3
if ((ro_rc == 0)) && ! grep -qiE "fail|error|read-only|denied|not permitted" <<<"$ro_out"; then
  fail "a write to the read-only ns2 export succeeded"
fi

step "nbd module: 8 MiB random write read back; host-checked pattern with FUA"
python3 - "$port" "$RINGLINE_NVME_NS1_BLOCK" <<'EOF' || fail "nbd module checks failed"
import os, sys, nbd
port = sys.argv[1]
h = nbd.NBD()
h.set_export_name("ns1")
h.connect_tcp("127.0.0.1", port)
M = 1 << 20
data = os.urandom(8 * M)
for i in range(0, len(data), 4 * M):
    h.pwrite(data[i:i + 4 * M], 160 * M + i)
h.flush()
back = b"".join(h.pread(4 * M, 160 * M + i) for i in range(0, len(data), 4 * M))
if back != data:
    sys.exit("FAIL: 8 MiB random write read back differently")
print("  8 MiB random write at 160 MiB read back intact")
# Out of range: the spec's errors, the connection stays usable.
size = h.get_size()
h.set_strict_mode(0)
for what, fn, want in (("read", lambda: h.pread(4096, size), 22),
                       ("write", lambda: h.pwrite(b"x" * 4096, size), 28)):
    try:
        fn()
        sys.exit(f"FAIL: {what} past the end succeeded")
    except nbd.Error as e:
        if e.errnum != want:
            sys.exit(f"FAIL: {what} past the end: errno {e.errnum}, want {want}")
        print(f"  {what} past the end -> {e.errno}")
h.pread(4096, 0)
off, length, seed = 224 * M, 1 * M, 29
period = bytes((seed + i * 131) % 251 for i in range(251))  # the pattern repeats every 251 bytes
pat = (period * (length // 251 + 1))[:length]
h.pwrite(pat, off, nbd.CMD_FLAG_FUA)
if h.pread(length, off) != pat:
    sys.exit("FAIL: the pattern read back differently")
h.flush()
h.shutdown()
print(f"  pattern 1 {off} {length} {seed} written with FUA")
EOF
echo "pattern 1 $((224 * M)) $((1 * M)) 29" >>"$RINGLINE_RESULTS_DIR/expect"
echo "  registered: pattern 1 $((224 * M)) $((1 * M)) 29"

step "nbdcopy ns2 (read-only, 4096-byte LBAs) -> stdout vs O_DIRECT read of $RINGLINE_NVME_NS2_BLOCK"
via_nbd=$(timeout 120 nbdcopy "$uri2" - | sha256sum | cut -d' ' -f1) || fail "nbdcopy failed"
direct=$(dd if="$RINGLINE_NVME_NS2_BLOCK" iflag=direct bs=1M status=none | sha256sum | cut -d' ' -f1)
echo "    nbdcopy $via_nbd"
echo "    direct  $direct"
[[ "$via_nbd" == "$direct" ]] || fail "the NBD export and the block device differ"

step "SIGTERM: blockserve exits 0"
kill -TERM "$bs_pid"
rc=0
for _ in $(seq 1 600); do kill -0 "$bs_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$bs_pid" 2>/dev/null; then fail "blockserve did not exit within 60 s of SIGTERM"; fi
wait "$bs_pid" || rc=$?
bs_pid=""
((rc == 0)) || fail "blockserve exited $rc after SIGTERM"
tail -n 5 "$bs_log" | sed 's/^/    /'

step "the pattern is on the device (O_DIRECT read of $RINGLINE_NVME_NS1_BLOCK)"
python3 - "$RINGLINE_NVME_NS1_BLOCK" <<'EOF' || fail "the pattern is not on the device"
import mmap, os, sys
off, length, seed = 224 << 20, 1 << 20, 29
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, length)
n = os.preadv(fd, [buf], off)
os.close(fd)
period = bytes((seed + i * 131) % 251 for i in range(251))
want = (period * (length // 251 + 1))[:length]
if n != length or buf[:] != want:
    sys.exit("FAIL: device bytes differ from the pattern")
print("  1 MiB pattern at 224 MiB read from the device")
EOF
echo "blockserve guest test passed"
