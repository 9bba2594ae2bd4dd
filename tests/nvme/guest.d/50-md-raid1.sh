#!/bin/bash
# Linux md RAID1 over two blockserve nodes, run by scripts/nvme-qemu-test.sh in
# the QEMU guest (docs/scale-out.md, recipe 2). blockserve is one node's storage
# service; the replication is md's. Each node is a blockserve process serving
# one 32 MiB file on the guest's tmpfs; the kernel's NBD client attaches them
# as /dev/nbd2 and /dev/nbd3, and mdadm builds /dev/md0 (RAID1, metadata 1.2,
# internal write-intent bitmap of 1 MiB chunks) with ext4 on it.
#   1. create the array (--assume-clean), mkfs.ext4, write set 1;
#   2. node B fails: SIGKILL of its blockserve 0.2 s into set 2 (O_DIRECT
#      writes, then page-cache files), usually with a request in flight.
#      The array must degrade (nbd3 faulty, md0 degraded = 1), the writes must
#      go on, and after unmounting fsck.ext4 -fn must be clean and every file's
#      checksum must hold;
#   3. set 3 is written while degraded; node B's file must now differ from A's
#      in the data area (a test that cannot see the staleness does not test the
#      resync);
#   4. node B comes back: mdadm --remove, nbd-client -d, blockserve restarted
#      on the same file and port, nbd-client reconnects, mdadm --re-add; the
#      bitmap-driven recovery must finish with both members in sync;
#   5. fsck.ext4 -fn clean, the two members' data areas are byte-identical,
#      and the array assembled read-only from node B alone passes fsck and the
#      checksums (the resync really copied the data).
# Prints PASS/FAIL/SKIPPED; exits 0, 1 or 77.
set -euo pipefail

skip() { echo "SKIPPED: md RAID1: $*"; exit 77; }
fail() {
  echo "FAIL: md RAID1: $*"
  for n in a b; do
    local l="$RINGLINE_RESULTS_DIR/blockserve-md-node-$n.log"
    [[ -f "$l" ]] && { echo "--- node $n blockserve log (last 15 lines):"; tail -n 15 "$l"; }
  done
  echo "--- /proc/mdstat:"
  cat /proc/mdstat 2>/dev/null || true
  echo "--- kernel log (last 25 lines):"
  dmesg 2>/dev/null | tail -n 25 || true
  exit 1
}
step() { echo "--- [${SECONDS}s] $*"; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
: "${RINGLINE_BUILD_DIR:?}" "${RINGLINE_RESULTS_DIR:?}"

bs="$RINGLINE_BUILD_DIR/bin/blockserve"
[[ -x "$bs" ]] || fail "$bs is not built (ninja -C $RINGLINE_BUILD_DIR blockserve)"
for tool in mdadm nbd-client nbdinfo mkfs.ext4 fsck.ext4 mount umount sha256sum dd cmp blockdev; do
  command -v "$tool" >/dev/null || skip "$tool is not installed on the host root (scripts/setup.sh installs it)"
done
[[ -b /dev/nbd3 ]] || skip "no /dev/nbd3: the guest kernel has no nbd module loaded (scripts/nvme-qemu-test.sh loads nbd)"
grep -qw ext4 /proc/filesystems || skip "the guest kernel has no ext4 (scripts/nvme-qemu-test.sh loads ext4)"
[[ -e /proc/mdstat ]] || skip "the guest kernel has no md driver (md-mod.ko was not loaded: it is missing from the guest kernel package)"
grep -qw raid1 /proc/mdstat || skip "the guest kernel has no RAID1 personality (raid1.ko is missing from the guest kernel package)"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
if ! ip -o link show lo 2>/dev/null | grep -q "UP"; then
  ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null || true
fi

M=$((1024 * 1024))
NODE_BYTES=$((32 * M))
md=/dev/md0
work=$(mktemp -d /tmp/md-raid1.XXXXXX)
mnt="$work/mnt"
mkdir -p "$mnt"
# Node n: port, file, nbd device (nbd0 belongs to 40-nbd-kernel-client.sh).
declare -A port=([a]=10830 [b]=10831) dev=([a]=/dev/nbd2 [b]=/dev/nbd3) pid=([a]="" [b]="")
declare -A file=([a]="$work/node-a.img" [b]="$work/node-b.img")

stop_node() {  # stop_node N SIGNAL
  local p=${pid[$1]}
  [[ -n "$p" ]] || return 0
  kill "-$2" "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  pid[$1]=""
}
detach() {  # detach DEV: nbd-client -d, wait until the kernel has let go
  nbd-client -d "$1" >/dev/null 2>&1 || true
  local name=${1#/dev/}
  for _ in $(seq 1 100); do
    [[ "$(cat "/sys/block/$name/size" 2>/dev/null || echo 0)" == 0 ]] && return 0
    sleep 0.1
  done
  return 1
}
cleanup() {
  mountpoint -q "$mnt" 2>/dev/null && umount "$mnt" 2>/dev/null
  mdadm --stop "$md" >/dev/null 2>&1 || true
  for n in a b; do detach "${dev[$n]}" || true; stop_node "$n" TERM; done
  rm -rf "$work"
}
trap cleanup EXIT

start_node() {  # start_node N: blockserve serving export d = the node's file (no wait)
  local n=$1
  "$bs" --listen 127.0.0.1 --port "${port[$n]}" --workers 1 --cache auto \
    --export "d=${file[$n]}" --data-dir "$work/data-$n" --log-level info \
    >>"$RINGLINE_RESULTS_DIR/blockserve-md-node-$n.log" 2>&1 &
  pid[$n]=$!
}
wait_node() {  # wait_node N: until the node serves its export
  local n=$1
  for _ in $(seq 1 120); do
    kill -0 "${pid[$n]}" 2>/dev/null || fail "node $n: blockserve exited during start-up"
    timeout 10 nbdinfo --size "nbd://127.0.0.1:${port[$n]}/d" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  fail "node $n: blockserve did not serve nbd://127.0.0.1:${port[$n]}/d within 60 s"
}
# attach N: the node's export on its nbd device, 4 KiB blocks. -t: without an
# NBD timeout, a request in flight when the node dies waits forever (6.1 fails
# it only from the timeout handler), so md never learns that the member is
# gone; with one, it fails with EIO after NBD_TIMEOUT s. Generous, because a
# request that merely takes that long under TCG would fail a healthy member.
NBD_TIMEOUT=20
attach() {
  local n=$1
  timeout 60 nbd-client 127.0.0.1 "${port[$n]}" "${dev[$n]}" -N d -b 4096 -t "$NBD_TIMEOUT" \
    >"$work/nbd-client.out" 2>&1 \
    || { cat "$work/nbd-client.out"; fail "nbd-client 127.0.0.1 ${port[$n]} ${dev[$n]} -N d -b 4096 -t $NBD_TIMEOUT failed"; }
  [[ "$(blockdev --getsize64 "${dev[$n]}")" == "$NODE_BYTES" ]] || fail "${dev[$n]} has the wrong size"
}
# write_set NAME FILES BYTES: NAME/direct.bin (2 MiB of O_DIRECT 64 KiB writes,
# each one a write to both members; first, so that a node killed early in the
# set dies with a request in flight) and NAME/f000.. (FILES files of BYTES
# random bytes, through the page cache), then sync. Few processes: under TCG
# every exec costs a fraction of a second.
write_set() {
  mkdir -p "$mnt/$1"
  dd if=/dev/urandom of="$mnt/$1/direct.bin" bs=64k count=32 oflag=direct status=none
  head -c $(($2 * $3)) /dev/urandom | split -a 3 -d -b "$3" - "$mnt/$1/f"
  sync
}
record_sums() { (cd "$mnt" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$work/sums"; }
check_sums() {  # check_sums WHAT
  (cd "$mnt" && sha256sum --quiet -c "$work/sums") || fail "$1: file checksums differ"
  echo "    $1: $(wc -l <"$work/sums") files, checksums hold"
}
fsck_clean() {  # fsck_clean WHAT
  fsck.ext4 -fn "$md" >"$work/fsck.out" 2>&1 || { cat "$work/fsck.out"; fail "$1: fsck.ext4 -fn found errors"; }
  echo "    $1: fsck.ext4 -fn clean: $(tail -n 1 "$work/fsck.out")"
}
md_state() { echo "$(cat /sys/block/md0/md/array_state 2>/dev/null), degraded=$(cat /sys/block/md0/md/degraded 2>/dev/null)"; }
member_state() { cat "/sys/block/md0/md/dev-${1#/dev/}/state" 2>/dev/null || echo "not a member"; }
# same_data: the nodes' files are equal over md's data area (superblock and
# bitmap excluded: they differ per member by design).
same_data() {
  cmp -s -i $((DATA_OFFSET * 512)) -n $((DATA_SECTORS * 512)) "${file[a]}" "${file[b]}"
}

step "start nodes a and b (32 MiB tmpfs files, ports ${port[a]} and ${port[b]}) and attach ${dev[a]}, ${dev[b]}"
for n in a b; do truncate -s "$NODE_BYTES" "${file[$n]}"; start_node "$n"; done
for n in a b; do wait_node "$n"; attach "$n"; done

# --assume-clean: both members are fresh zero-filled files, so they are already
# identical; the initial resync would only copy zeroes over zeroes (CI time).
step "mdadm --create $md: RAID1, metadata 1.2, internal bitmap, --assume-clean"
mdadm --create "$md" --run --assume-clean --level=1 --raid-devices=2 --metadata=1.2 --bitmap=internal --bitmap-chunk=1M \
  "${dev[a]}" "${dev[b]}" >"$work/mdadm.out" 2>&1 || { cat "$work/mdadm.out"; fail "mdadm --create"; }
echo "    $(md_state)"
DATA_OFFSET=$(mdadm --examine "${dev[b]}" | awk '/Data Offset/ { print $4 }')
DATA_SECTORS=$(mdadm --examine "${dev[b]}" | awk '/Array Size/ && $5 == "KiB" { print $4 * 2 }')
[[ "$DATA_OFFSET" =~ ^[0-9]+$ && "$DATA_SECTORS" =~ ^[0-9]+$ ]] \
  || { mdadm --examine "${dev[b]}"; fail "could not read Data Offset / Array Size from mdadm --examine"; }
echo "    data area: sectors $DATA_OFFSET..$((DATA_OFFSET + DATA_SECTORS)) of each member"

step "mkfs.ext4 on $md, mount, write set 1"
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$md" >"$work/mkfs.out" 2>&1 \
  || { cat "$work/mkfs.out"; fail "mkfs.ext4 $md"; }
mount -t ext4 -o noinit_itable "$md" "$mnt" || fail "mount $md"
write_set set1 40 13001

step "node b fails: SIGKILL of its blockserve while set 2 is being written"
(write_set set2 60 21011) &
writer=$!
sleep 0.2
stop_node b KILL
wait "$writer" || fail "writing set 2 failed after node b was killed (the array should have kept the writes going)"
echo "    set 2 written; array: $(md_state); ${dev[b]}: $(member_state "${dev[b]}")"
[[ "$(cat /sys/block/md0/md/degraded)" == 1 ]] || fail "the array did not degrade after node b was killed ($(md_state))"
[[ "$(member_state "${dev[b]}")" == *faulty* ]] || fail "${dev[b]} is not marked faulty: $(member_state "${dev[b]}")"
grep -A1 '^md0' /proc/mdstat | sed 's/^/    mdstat: /'
record_sums
umount "$mnt" || fail "umount $md (degraded)"
fsck_clean "degraded"
mount -t ext4 "$md" "$mnt" || fail "mount $md (degraded)"
check_sums "degraded"

step "write set 3 while degraded; node b's data must now be stale"
write_set set3 40 17003
record_sums
umount "$mnt" || fail "umount $md"
same_data && fail "node b's data area equals node a's after writes it missed: the test cannot see a resync"
echo "    node b's data area differs from node a's"

mdadm -X "${dev[a]}" 2>/dev/null | grep -i "bitmap :" | sed 's/^ */    write-intent bitmap of node a: /' || true
step "node b returns: mdadm --remove, restart blockserve, reconnect nbd-client, mdadm --re-add"
mdadm "$md" --remove "${dev[b]}" >"$work/mdadm.out" 2>&1 || { cat "$work/mdadm.out"; fail "mdadm --remove ${dev[b]}"; }
detach "${dev[b]}" || fail "nbd-client -d ${dev[b]} did not detach"
start_node b
wait_node b
attach b
t0=$SECONDS
mdadm "$md" --re-add "${dev[b]}" >"$work/mdadm.out" 2>&1 || { cat "$work/mdadm.out"; fail "mdadm --re-add ${dev[b]}"; }
mdadm --wait "$md" >/dev/null 2>&1 || true
resync_s=$((SECONDS - t0))
echo "    recovery done in ${resync_s} s (bitmap: only the regions written while degraded); array: $(md_state)"
dmesg | grep -E 'md0|md/raid1' | tail -n 4 | sed 's/^/    kernel: /' || true
[[ "$(cat /sys/block/md0/md/degraded)" == 0 ]] || fail "the array is still degraded after --re-add ($(md_state))"
[[ "$(member_state "${dev[b]}")" == in_sync ]] || fail "${dev[b]} is not in_sync after the recovery: $(member_state "${dev[b]}")"

step "fsck, checksums, identical members, and node b alone holds the file system"
fsck_clean "resynced"
# (The checksums are checked on node b alone below: with the members identical,
# that covers the array.)
mdadm --stop "$md" >/dev/null 2>&1 || fail "mdadm --stop $md"
same_data || fail "after the resync the members' data areas differ"
echo "    the data areas of node a and node b are byte-identical ($((DATA_SECTORS / 2048)) MiB)"
mdadm --assemble --readonly --run "$md" "${dev[b]}" >"$work/mdadm.out" 2>&1 \
  || { cat "$work/mdadm.out"; fail "mdadm --assemble --readonly --run $md ${dev[b]} (node b alone)"; }
fsck_clean "node b alone"
mount -t ext4 -o ro,noload "$md" "$mnt" || fail "mount $md (node b alone)"
check_sums "node b alone"
umount "$mnt"
mdadm --stop "$md" >/dev/null 2>&1 || fail "mdadm --stop $md"

step "SIGTERM: both nodes exit 0"
for n in a b; do
  detach "${dev[$n]}" || fail "nbd-client -d ${dev[$n]} did not detach"
  p=${pid[$n]}
  kill -TERM "$p"
  rc=0
  wait "$p" || rc=$?
  pid[$n]=""
  ((rc == 0)) || fail "node $n: blockserve exited $rc after SIGTERM"
done
echo "PASS: md RAID1 over two blockserve nodes: degraded on a node's death with fsck clean, re-added and resynced in ${resync_s} s, fsck clean, members identical"
