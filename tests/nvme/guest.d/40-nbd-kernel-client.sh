#!/bin/bash
# The Linux kernel's own NBD client (nbd.ko + Debian's nbd-client) against
# blockserve, run by scripts/nvme-qemu-test.sh in the QEMU guest. blockserve
# exports ns1 (/dev/ng0n1, 512-byte LBAs), ns2 (/dev/ng0n2, 4096-byte LBAs) and
# a file on the guest's tmpfs (no O_DIRECT on 6.1: served through the
# --cache=auto fallback, which must say so once in the log). nbd-client asks for
# no block sizes and sends 512-byte-aligned requests, so on ns2 every partial
# block is a read-modify-write in the server.
#   1. ns2: fio --direct=1 --verify=crc32c with 512 B..64 KiB blocks through
#      /dev/nbd0; write zeroes (blkdiscard -z) of an unaligned range reads back
#      as zeroes with the neighbours intact;
#   2. ns1 and the tmpfs file: blkdiscard of a written range reads back zeroes;
#   3. on each of ns1, ns2 and the tmpfs file: mkfs.ext4, mount, write files,
#      unmount, disconnect, reconnect with the other connection count (default
#      options one time, -C 2 the other), fsck.ext4 -fn, mount read-only and
#      compare checksums.
# The file systems overwrite the namespaces: the ranges that earlier guest
# scripts registered in $RINGLINE_RESULTS_DIR/expect are saved first and
# written back at the end, so the host-side checks still hold.
set -euo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
fail() {
  echo "FAIL: $*"
  if [[ -n "${bs_log:-}" && -f "$bs_log" ]]; then
    echo "--- blockserve log (last 40 lines):"
    tail -n 40 "$bs_log"
  fi
  echo "--- kernel log (last 20 lines):"
  dmesg 2>/dev/null | tail -n 20 || true
  exit 1
}
step() { echo "--- [${SECONDS}s] $*"; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
: "${RINGLINE_BUILD_DIR:?}" "${RINGLINE_RESULTS_DIR:?}" "${RINGLINE_NVME_NS1:?}" "${RINGLINE_NVME_NS2:?}"
: "${RINGLINE_NVME_NS1_BLOCK:?}" "${RINGLINE_NVME_NS2_BLOCK:?}"

bs="$RINGLINE_BUILD_DIR/bin/blockserve"
[[ -x "$bs" ]] || fail "$bs is not built (ninja -C $RINGLINE_BUILD_DIR blockserve)"
for tool in nbd-client mkfs.ext4 fsck.ext4 mount umount blkdiscard fio sha256sum dd cmp python3; do
  command -v "$tool" >/dev/null || skip "$tool is not installed on the host root (scripts/setup.sh installs it)"
done
[[ -b /dev/nbd0 ]] || skip "no /dev/nbd0: the guest kernel has no nbd module loaded (scripts/nvme-qemu-test.sh loads nbd)"
grep -qw ext4 /proc/filesystems || skip "the guest kernel has no ext4 (scripts/nvme-qemu-test.sh loads ext4)"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
if ! ip -o link show lo 2>/dev/null | grep -q "UP"; then
  ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null || true
fi

work=$(mktemp -d /tmp/nbd-kernel.XXXXXX)
mnt="$work/mnt"
mkdir -p "$mnt" "$work/saved"
bs_log="$RINGLINE_RESULTS_DIR/blockserve-nbd-kernel.log"
port=10810
dev=/dev/nbd0
bs_pid=""
FILE_BYTES=$((96 * 1024 * 1024))
file_img="$work/file.img"

# ---- the expectations of earlier scripts: save, restore at the end
saved=()
save_expectations() {
  [[ -f "$RINGLINE_RESULTS_DIR/expect" ]] || return 0
  local kind nsid off len _seed i=0 blk a e
  while read -r kind nsid off len _seed; do
    [[ "$kind" == pattern ]] || continue
    case "$nsid" in 1) blk=$RINGLINE_NVME_NS1_BLOCK ;; 2) blk=$RINGLINE_NVME_NS2_BLOCK ;; *) continue ;; esac
    # O_DIRECT, a 4 KiB-aligned superset: the passthrough writes of earlier
    # scripts bypassed the block device's page cache.
    a=$(((off / 4096) * 4096))
    e=$((((off + len + 4095) / 4096) * 4096))
    python3 - "$blk" "$a" "$((e - a))" "$work/saved/$i" <<'EOF' || fail "could not save an expected range"
import mmap, os, sys
blk, off, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fd = os.open(blk, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, n)
got = os.preadv(fd, [buf], off)
os.close(fd)
if got != n:
    sys.exit(f"short read of {blk} at {off}")
open(out, "wb").write(buf[:])
EOF
    off=$a
    len=$((e - a))
    saved+=("$blk $((off)) $((len)) $work/saved/$i")
    i=$((i + 1))
  done <"$RINGLINE_RESULTS_DIR/expect"
}
restore_expectations() {
  local blk off len file
  for s in "${saved[@]}"; do
    read -r blk off len file <<<"$s"
    python3 - "$blk" "$off" "$file" <<'EOF' || return 1
import mmap, os, sys
blk, off, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(path, "rb").read()
buf = mmap.mmap(-1, len(data))
buf[:] = data
fd = os.open(blk, os.O_RDWR | os.O_DIRECT)
try:
    os.pwritev(fd, [buf], off)
    os.fsync(fd)
    back = mmap.mmap(-1, len(data))
    os.preadv(fd, [back], off)
finally:
    os.close(fd)
if back[:] != data:
    sys.exit(f"{blk} at {off}: the restored range reads back differently")
EOF
    echo "    restored $len bytes at $off of $blk"
  done
}

detach() {
  nbd-client -d "$dev" >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do
    [[ "$(cat /sys/block/nbd0/size 2>/dev/null || echo 0)" == 0 ]] && return 0
    sleep 0.1
  done
  return 1
}
cleanup() {
  mountpoint -q "$mnt" 2>/dev/null && umount "$mnt" 2>/dev/null
  detach || true
  if [[ -n "$bs_pid" ]] && kill -0 "$bs_pid" 2>/dev/null; then
    kill -TERM "$bs_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$bs_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$bs_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# attach NAME [nbd-client options]: /dev/nbd0 for export NAME, size checked.
attach() {
  local name=$1 want_bytes=$2
  shift 2
  timeout 60 nbd-client 127.0.0.1 "$port" "$dev" -N "$name" "$@" >"$work/nbd-client.out" 2>&1 \
    || { cat "$work/nbd-client.out"; fail "nbd-client 127.0.0.1 $port $dev -N $name $* failed"; }
  local bytes
  bytes=$(blockdev --getsize64 "$dev")
  [[ "$bytes" == "$want_bytes" ]] || fail "$dev for $name is $bytes bytes, the export is $want_bytes"
  echo "    $dev: $name, $bytes bytes, logical block $(blockdev --getss "$dev"), connections: ${*:-default}"
}

step "save the ranges earlier scripts registered"
save_expectations
echo "    ${#saved[@]} ranges saved"

step "start blockserve: ns1, ns2 and $file_img (tmpfs, --cache=auto) on 127.0.0.1:$port"
truncate -s "$FILE_BYTES" "$file_img"
"$bs" --listen 127.0.0.1 --port "$port" --workers 2 --cache auto \
  --export "ns1=$RINGLINE_NVME_NS1" --export "ns2=$RINGLINE_NVME_NS2" --export "file=$file_img" \
  --data-dir "$work/data" --log-level info >"$bs_log" 2>&1 &
bs_pid=$!
ready=0
for _ in $(seq 1 120); do
  kill -0 "$bs_pid" 2>/dev/null || fail "blockserve exited during start-up"
  if timeout 10 nbdinfo --size "nbd://127.0.0.1:$port/ns1" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
((ready)) || fail "blockserve did not serve nbd://127.0.0.1:$port/ns1 within 60 s"
# One warning that names the reason (issue 12: "otherwise buffered I/O, with
# one warning that names the reason"), however many workers open the file.
warnings=$(grep -F "$file_img" "$bs_log" | grep -ciE "O_DIRECT" || true)
grep -F "$file_img" "$bs_log" | grep -iE "O_DIRECT" | sed 's/^/    log: /' || true
((warnings == 1)) || fail "blockserve logged $warnings warnings naming the O_DIRECT fallback for the tmpfs file ($(uname -r) has no O_DIRECT there), want exactly one"

M=$((1024 * 1024))

step "ns2 (4096-byte LBAs), default options: fio --direct=1 --verify=crc32c, 512 B..64 KiB blocks"
attach ns2 "$RINGLINE_NVME_NS2_BYTES"
timeout 300 fio --name=verify --filename="$dev" --direct=1 --ioengine=libaio --iodepth=8 \
  --rw=randwrite --bsrange=512-64k --size=24M --offset=8M --verify=crc32c --verify_fatal=1 \
  --do_verify=1 --randrepeat=0 --output="$work/fio.out" >/dev/null 2>&1 \
  || { tail -n 30 "$work/fio.out" 2>/dev/null; fail "fio verify through $dev (ns2) failed"; }
grep -E "WRITE:|READ:|verify" "$work/fio.out" | sed 's/^/    /' | head -n 4 || true

step "ns2: write zeroes of an unaligned range (blkdiscard -z -o 512 -l 7168) keeps the neighbours"
python3 - "$dev" <<'EOF' || fail "write zeroes of a partial 4 KiB block on ns2"
import os, subprocess, sys
dev = sys.argv[1]
base = 40 << 20
before = os.urandom(16384)
fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 16384)
buf[:] = before
os.pwritev(fd, [buf], base)
subprocess.run(["blkdiscard", "-z", "-o", str(base + 512), "-l", "7168", dev], check=True)
back = mmap.mmap(-1, 16384)
os.preadv(fd, [back], base)
os.close(fd)
want = before[:512] + bytes(7168) + before[7680:]
if back[:] != want:
    bad = next(i for i in range(16384) if back[i] != want[i])
    sys.exit(f"byte {bad} of the range reads {back[bad]}, want {want[bad]}")
print("    bytes 512..7680 of two 4 KiB blocks zeroed, the rest intact")
EOF
detach || fail "nbd-client -d $dev did not detach"

# discard_zero NAME BYTES [opts]: a discarded, written range reads back zeroes.
discard_zero() {
  local name=$1 bytes=$2
  shift 2
  attach "$name" "$bytes" "$@"
  local off=$((bytes - 8 * M))
  dd if=/dev/urandom of="$dev" bs=1M count=4 seek=$((off / M)) oflag=direct status=none \
    || fail "dd to $dev ($name)"
  blkdiscard -o "$off" -l $((4 * M)) "$dev" || fail "blkdiscard on $dev ($name)"
  # (no process substitution: the guest has no /dev/fd)
  dd if="$dev" of="$work/back.bin" bs=1M count=4 skip=$((off / M)) iflag=direct status=none \
    || fail "dd from $dev ($name)"
  cmp -n $((4 * M)) "$work/back.bin" /dev/zero \
    || fail "$name: a discarded 4 MiB range does not read back as zeroes"
  rm -f "$work/back.bin"
  echo "    $name: 4 MiB written, discarded, read back as zeroes"
  detach || fail "nbd-client -d $dev did not detach"
}
step "blkdiscard reads back zeroes: ns1 with -C 2, the tmpfs file with default options"
discard_zero ns1 "$RINGLINE_NVME_NS1_BYTES" -C 2
discard_zero file "$FILE_BYTES"

# fs_cycle NAME BYTES "FIRST OPTS" "SECOND OPTS"
fs_cycle() {
  local name=$1 bytes=$2 first=$3 second=$4
  step "$name: mkfs.ext4, mount, write files ($dev, connections: ${first:-default})"
  # shellcheck disable=SC2086 # option words
  attach "$name" "$bytes" $first
  # Under TCG every block costs: no journal or inode table zeroing up front,
  # and no ext4lazyinit thread zeroing the inode tables after the mount.
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$dev" >"$work/mkfs.out" 2>&1 \
    || { cat "$work/mkfs.out"; fail "mkfs.ext4 on $name"; }
  mount -t ext4 -o noinit_itable "$dev" "$mnt" || fail "mount $name"
  head -c $((3 * M)) /dev/urandom >"$mnt/big.bin"
  head -c 12345 /dev/urandom >"$mnt/odd.bin"
  mkdir "$mnt/many"
  for i in $(seq 1 60); do head -c $((i * 97)) /dev/urandom >"$mnt/many/f$i"; done
  echo "    [${SECONDS}s] files written"
  (cd "$mnt" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$work/sums.$name"
  umount "$mnt" || fail "umount $name"
  echo "    [${SECONDS}s] unmounted"
  detach || fail "nbd-client -d $dev did not detach ($name)"
  step "$name: reconnect (connections: ${second:-default}), fsck.ext4 -fn, checksums"
  # shellcheck disable=SC2086
  attach "$name" "$bytes" $second
  fsck.ext4 -fn "$dev" >"$work/fsck.out" 2>&1 || { cat "$work/fsck.out"; fail "fsck.ext4 -fn $name found errors"; }
  tail -n 1 "$work/fsck.out" | sed 's/^/    /'
  mount -t ext4 -o ro "$dev" "$mnt" || fail "mount -o ro $name"
  (cd "$mnt" && sha256sum --quiet -c "$work/sums.$name") || fail "$name: checksums differ after reconnecting"
  echo "    $(wc -l <"$work/sums.$name") files, checksums equal"
  umount "$mnt" || fail "umount $name"
  detach || fail "nbd-client -d $dev did not detach ($name)"
}
fs_cycle ns2 "$RINGLINE_NVME_NS2_BYTES" "" "-C 2"
fs_cycle ns1 "$RINGLINE_NVME_NS1_BYTES" "" "-C 2"
fs_cycle file "$FILE_BYTES" "-C 2" ""

step "SIGTERM: blockserve exits 0"
kill -TERM "$bs_pid"
for _ in $(seq 1 600); do kill -0 "$bs_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$bs_pid" 2>/dev/null && fail "blockserve did not exit within 60 s of SIGTERM"
rc=0
wait "$bs_pid" || rc=$?
bs_pid=""
((rc == 0)) || fail "blockserve exited $rc after SIGTERM"

step "write back the ranges earlier scripts registered"
restore_expectations || fail "could not restore the expected ranges"
echo "kernel NBD client guest test passed"
