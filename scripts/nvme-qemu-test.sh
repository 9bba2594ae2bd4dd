#!/usr/bin/env bash
# NVMe passthrough tests in a QEMU guest with an emulated NVMe controller.
#
# Usage: scripts/nvme-qemu-test.sh [--build-dir DIR] [--timeout SECS] [--keep] [--power-cut N] [GUEST_SCRIPT...]
#
# Boots Debian 12's 6.1 kernel under QEMU (TCG) with a busybox initramfs, one
# emulated NVMe controller (serial RINGLINE0001) with two namespaces backed by
# fresh raw images (nsid 1: 256 MiB, 512-byte LBAs; nsid 2: 64 MiB, 4096-byte
# LBAs), the host's root shared read-only over 9p and a writable per-run results
# directory. In the guest it chroots into the host's root and runs, from the repo
# root, each GUEST_SCRIPT or, by default, every executable tests/nvme/guest.d/*.sh
# in lexical order (exit 0 = pass, 77 = skipped, else fail; see tests/nvme/README.md
# for the environment). Afterwards it checks the `pattern` expectations the guest
# scripts appended to $RINGLINE_RESULTS_DIR/expect against the image files.
#
# --power-cut N: instead, boot N times with the writer of tests/nvme/power-cut/
# on drives with a volatile write cache, SIGKILL QEMU mid-run each time and check
# the images against the writer's acknowledgment log (scripts/qemu/power-cut.sh).
#
# Exit: 0 = every guest script passed or skipped and every expectation held;
# 1 = anything else; 77 = QEMU cannot run on this machine (printed as SKIPPED).
#
# Environment knobs (all optional):
#   RINGLINE_QEMU_CACHE            kernel cache (default /var/cache/ringline-qemu)
#   RINGLINE_QEMU_RESULTS          parent of the per-run results dirs
#                                  (default <build-dir>/nvme-qemu-results)
#   RINGLINE_QEMU_MEM              guest memory in MiB (default 1024)
#   RINGLINE_QEMU_NVME_POLL_QUEUES nvme.poll_queues for the guest (default 2; 0 = none)
#   RINGLINE_QEMU_EXTRA_MODULES    more guest kernel modules to load (space-separated;
#                                  nbd, crc32c_generic and ext4 are always loaded)
#   RINGLINE_QEMU_APPEND           extra guest kernel arguments
#   RINGLINE_QEMU_KERNEL_PKG       kernel package to use instead of the one
#                                  linux-image-amd64 depends on (must be linux-image-6.1.*-amd64)
set -uo pipefail

# ---------------------------------------------------------------- constants
NS1_BYTES=268435456 NS1_LBA=512
NS2_BYTES=67108864 NS2_LBA=4096
SERIAL=RINGLINE0001
BASE_MODULES=(nvme virtio_pci 9pnet_virtio 9p)
# What the guest scripts need besides NVMe: the kernel's NBD client and ext4
# (tests/nvme/guest.d/40-nbd-kernel-client.sh). crc32c_generic is listed
# because ext4 asks the crypto API for "crc32c" by name, which busybox insmod
# cannot resolve on demand.
GUEST_TEST_MODULES=(nbd crc32c_generic ext4)
# Loaded when the guest kernel package has them (and their dependencies); the
# guest scripts that need one print SKIPPED without it. raid1 (with md-mod):
# tests/nvme/guest.d/50-md-raid1.sh.
OPTIONAL_GUEST_MODULES=(raid1)
HOST_PACKAGES=(qemu-system-x86 busybox-static cpio python3 nvme-cli fio)
NVME_WAIT_SECONDS=60
KEEP_RESULT_RUNS=20

say() { echo "nvme-qemu: $*"; }
skip() { echo "SKIPPED: nvme-qemu: $*"; exit 77; }
fail_early() { echo "nvme-qemu: FAIL: $*" >&2; exit 1; }
usage() { sed -n '4p' "$0" | sed 's/^# //'; }

# ---------------------------------------------------------------- arguments
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BUILD_DIR="$REPO/build"
TIMEOUT=300
KEEP=0
POWER_CUTS=0
SCRIPTS_ARGS=()
while (($#)); do
  case "$1" in
    --build-dir) [[ $# -ge 2 ]] || { usage; exit 1; }; BUILD_DIR=$2; shift 2 ;;
    --build-dir=*) BUILD_DIR=${1#*=}; shift ;;
    --timeout) [[ $# -ge 2 ]] || { usage; exit 1; }; TIMEOUT=$2; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    --power-cut) [[ $# -ge 2 ]] || { usage; exit 1; }; POWER_CUTS=$2; shift 2 ;;
    --power-cut=*) POWER_CUTS=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; SCRIPTS_ARGS+=("$@"); break ;;
    -*) echo "nvme-qemu: unknown option $1" >&2; usage >&2; exit 1 ;;
    *) SCRIPTS_ARGS+=("$1"); shift ;;
  esac
done
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] && ((TIMEOUT >= 30)) || fail_early "--timeout must be a number of seconds >= 30"
[[ "$POWER_CUTS" =~ ^[0-9]+$ ]] && ((POWER_CUTS <= 8)) || fail_early "--power-cut must be a number of cuts, at most 8"
((POWER_CUTS && ${#SCRIPTS_ARGS[@]} == 0)) && SCRIPTS_ARGS=(tests/nvme/power-cut/writer.sh)
START=$SECONDS
BUILD_DIR=$(realpath -m -- "$BUILD_DIR")
MEM=${RINGLINE_QEMU_MEM:-1024}
POLL_QUEUES=${RINGLINE_QEMU_NVME_POLL_QUEUES:-2}
[[ "$MEM" =~ ^[0-9]+$ && "$POLL_QUEUES" =~ ^[0-9]+$ ]] || fail_early "RINGLINE_QEMU_MEM and RINGLINE_QEMU_NVME_POLL_QUEUES must be numbers"

# Guest scripts: absolute host paths (the guest sees the host's root at the same paths).
GUEST_SCRIPTS=()
DEFAULT_SET=0
if ((${#SCRIPTS_ARGS[@]})); then
  for s in "${SCRIPTS_ARGS[@]}"; do
    if [[ -f "$s" ]]; then GUEST_SCRIPTS+=("$(realpath -- "$s")")
    elif [[ "$s" != /* && -f "$REPO/$s" ]]; then GUEST_SCRIPTS+=("$(realpath -- "$REPO/$s")")
    else fail_early "guest script not found: $s"
    fi
  done
else
  DEFAULT_SET=1
  while IFS= read -r -d '' s; do
    if [[ -x "$s" ]]; then GUEST_SCRIPTS+=("$(realpath -- "$s")"); else say "ignoring ${s#"$REPO"/}: not executable"; fi
  done < <(find "$REPO/tests/nvme/guest.d" -maxdepth 1 -name '*.sh' -type f -print0 2>/dev/null | LC_ALL=C sort -z)
  ((${#GUEST_SCRIPTS[@]})) || fail_early "no executable guest scripts in $REPO/tests/nvme/guest.d"
fi

# ---------------------------------------------------------------- privileges and packages
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(none); fi
fi
as_root() {
  [[ "${SUDO[0]:-}" == none ]] && return 1
  "${SUDO[@]}" "$@"
}

APT_UPDATED=0
apt_update_once() {
  ((APT_UPDATED)) && return 0
  say "apt-get update"
  DEBIAN_FRONTEND=noninteractive as_root apt-get update -qq || return 1
  APT_UPDATED=1
}

missing=()
for p in "${HOST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ "${SUDO[0]:-}" == none ]] && skip "packages ${missing[*]} are missing and this user can neither install them (not root, no passwordless sudo)"
  say "installing ${missing[*]}"
  apt_update_once || skip "apt-get update failed; cannot install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || skip "apt-get install ${missing[*]} failed"
fi

QEMU=$(command -v qemu-system-x86_64) || skip "qemu-system-x86_64 not found after installing qemu-system-x86"
"$QEMU" --version >/dev/null 2>&1 || skip "$QEMU does not run: $("$QEMU" --version 2>&1 | head -n 1)"
"$QEMU" -accel help 2>/dev/null | grep -qx tcg || skip "$QEMU has no TCG accelerator"
devices=$("$QEMU" -device help 2>/dev/null)
for d in nvme nvme-ns virtio-9p-pci isa-debug-exit; do
  grep -q "name \"$d\"" <<<"$devices" || skip "$QEMU lacks the $d device"
done
[[ -x /bin/busybox ]] || skip "/bin/busybox (busybox-static) missing"

# ---------------------------------------------------------------- guest kernel (cached)
CACHE=${RINGLINE_QEMU_CACHE:-/var/cache/ringline-qemu}
if ! mkdir -p "$CACHE" 2>/dev/null || [[ ! -w "$CACHE" ]]; then
  [[ -n "${RINGLINE_QEMU_CACHE:-}" ]] && fail_early "kernel cache $CACHE is not writable"
  CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ringline-qemu
  mkdir -p "$CACHE" || fail_early "cannot create a kernel cache ($CACHE)"
fi

kernel_pkg() {
  if [[ -n "${RINGLINE_QEMU_KERNEL_PKG:-}" ]]; then echo "$RINGLINE_QEMU_KERNEL_PKG"; return; fi
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\.[0-9.-]*-amd64$/ { print $2; exit }'
}
kernel_ver() {
  apt-cache show --no-all-versions "$1" 2>/dev/null | awk '$1 == "Version:" { print $2; exit }'
}

exec 9>"$CACHE/.lock"
flock -w 600 9 || fail_early "could not lock $CACHE/.lock"
KPKG=$(kernel_pkg)
if [[ -z "$KPKG" ]] && apt_update_once; then KPKG=$(kernel_pkg); fi
KDIR=""
if [[ -n "$KPKG" ]]; then
  [[ "$KPKG" =~ ^linux-image-6\.1\.[0-9.-]+-amd64$ ]] || fail_early "kernel package $KPKG is not a linux-image-6.1.*-amd64"
  KVER=$(kernel_ver "$KPKG")
  if [[ -z "$KVER" ]] && apt_update_once; then KVER=$(kernel_ver "$KPKG"); fi
  [[ -n "$KVER" ]] && KDIR="$CACHE/${KPKG}_${KVER}"
fi
if [[ -n "$KDIR" && -f "$KDIR/.complete" ]]; then
  :
elif [[ -n "$KDIR" ]]; then
  say "fetching $KPKG $KVER into $KDIR (apt-get download + dpkg-deb -x, not installed)"
  dl=$(mktemp -d "$CACHE/.download.XXXXXX")
  # apt drops privileges to _apt for downloads: let it write there.
  id _apt >/dev/null 2>&1 && chown _apt "$dl" 2>/dev/null
  if (cd "$dl" && apt-get download -q "$KPKG=$KVER" >/dev/null) \
     && deb=$(ls "$dl"/*.deb 2>/dev/null | head -n 1) && [[ -n "$deb" ]] \
     && rm -rf "$KDIR.partial" && dpkg-deb -x "$deb" "$KDIR.partial"; then
    touch "$KDIR.partial/.complete"
    rm -rf "$KDIR" && mv "$KDIR.partial" "$KDIR"
  else
    rm -rf "$KDIR.partial"
    KDIR=""
    say "could not download $KPKG $KVER"
  fi
  rm -rf "$dl"
fi
if [[ -z "$KDIR" ]]; then
  # Offline or no apt metadata: fall back to the newest cached 6.1 kernel.
  KDIR=$(ls -d "$CACHE"/linux-image-6.1.*-amd64_* 2>/dev/null | while read -r d; do
           [[ -f "$d/.complete" ]] && echo "$d"; done | sort -V | tail -n 1)
  [[ -n "$KDIR" ]] || skip "no Debian linux-image-6.1.*-amd64 package could be found or downloaded (apt-cache depends linux-image-amd64 gave '${KPKG:-nothing}'), and none is cached in $CACHE"
  say "using the cached kernel $KDIR"
fi
flock -u 9
exec 9>&-

VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* 2>/dev/null | head -n 1)
MODDIR=$(ls -d "$KDIR"/lib/modules/*/ 2>/dev/null | head -n 1)
[[ -f "$VMLINUZ" && -d "$MODDIR" ]] || fail_early "the cached kernel in $KDIR has no boot/vmlinuz-* or lib/modules/*/ (delete it to refetch)"
MODDIR=${MODDIR%/}

# ---------------------------------------------------------------- per-run directories
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringline-qemu.XXXXXX") || fail_early "mktemp failed"
RESULTS_BASE=${RINGLINE_QEMU_RESULTS:-$BUILD_DIR/nvme-qemu-results}
RUN_ID="$(date +%Y%m%d-%H%M%S)-$$"
RESULTS="$RESULTS_BASE/$RUN_ID"
mkdir -p "$RESULTS" || fail_early "cannot create the results dir $RESULTS"
RESULTS=$(realpath -- "$RESULTS")
ln -sfn "$RUN_ID" "$RESULTS_BASE/latest" 2>/dev/null
# Keep only the newest runs.
ls -1d "$RESULTS_BASE"/[0-9]*-[0-9]*-[0-9]* 2>/dev/null | LC_ALL=C sort | head -n -"$KEEP_RESULT_RUNS" \
  | while read -r old; do rm -rf -- "$old"; done

QEMU_PID=""
TAIL_PID=""
cleanup() {
  [[ -n "$QEMU_PID" ]] && kill "$QEMU_PID" 2>/dev/null
  [[ -n "$TAIL_PID" ]] && kill "$TAIL_PID" 2>/dev/null
  if ((KEEP)); then say "kept the temp dir $TMP"; else rm -rf -- "$TMP"; fi
}
trap cleanup EXIT
trap 'say "interrupted"; exit 1' INT TERM

CONSOLE="$RESULTS/console.log"
# The serial console as text: no CRs, no terminal control sequences (SeaBIOS
# clears the screen and resets the terminal).
clean_console() { sed "$@" -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b.//g' -e 's/\r//g'; }

# ---------------------------------------------------------------- initramfs
IRD="$TMP/initramfs"
mkdir -p "$IRD"/{bin,dev,proc,sys,newroot,keep,etc/ringline,lib/modules}
cp /bin/busybox "$IRD/bin/busybox"
cp "$REPO/scripts/qemu/init.sh" "$IRD/init"
chmod 755 "$IRD/init" "$IRD/bin/busybox"
read -r -a extra_modules <<<"${RINGLINE_QEMU_EXTRA_MODULES:-}"
for m in "${OPTIONAL_GUEST_MODULES[@]}"; do
  if python3 "$REPO/scripts/qemu/kmod-order.py" "$MODDIR" "$m" >/dev/null 2>&1; then extra_modules+=("$m")
  else say "the guest kernel package has no loadable $m module: guest scripts that need it will skip"; fi
done
((POWER_CUTS)) && extra_modules+=(virtio_blk)
python3 "$REPO/scripts/qemu/kmod-order.py" "$MODDIR" "${BASE_MODULES[@]}" "${GUEST_TEST_MODULES[@]}" \
  "${extra_modules[@]}" \
  >"$TMP/modules.order" || fail_early "could not resolve the guest kernel modules in $MODDIR"
while IFS=$'\t' read -r name rel; do
  mkdir -p "$IRD/lib/modules/$(dirname "$rel")"
  cp "$MODDIR/$rel" "$IRD/lib/modules/$rel"
  printf '%s %s\n' "$name" "$rel" >>"$IRD/etc/ringline/modules"
done <"$TMP/modules.order"
echo "$NVME_WAIT_SECONDS" >"$IRD/etc/ringline/nvme-wait-seconds"

# Host paths the guest needs that its tmpfs /run and /tmp would hide.
: >"$IRD/etc/ringline/preserve"
# Symlinks are resolved here: in the guest, /init binds them before the chroot.
for p in "$BUILD_DIR" "$REPO" "${GUEST_SCRIPTS[@]%/*}"; do
  p=$(realpath -m -- "$p")
  case "$p" in /tmp/*|/run/*) [[ -d "$p" ]] && echo "$p" ;; esac
done | LC_ALL=C sort -u | awk 'kept == "" || index($0, kept "/") != 1 { print; kept = $0 }' \
  >"$IRD/etc/ringline/preserve"

{
  printf 'RINGLINE_REPO=%q\n' "$REPO"
  printf 'RINGLINE_BUILD_DIR=%q\n' "$BUILD_DIR"
  printf 'RINGLINE_NVME_NS1_BYTES=%q\nRINGLINE_NVME_NS1_LBA=%q\n' "$NS1_BYTES" "$NS1_LBA"
  printf 'RINGLINE_NVME_NS2_BYTES=%q\nRINGLINE_NVME_NS2_LBA=%q\n' "$NS2_BYTES" "$NS2_LBA"
  printf 'RINGLINE_NVME_SERIAL=%q\n' "$SERIAL"
  printf 'RINGLINE_NVME_POLL_QUEUES=%q\n' "$POLL_QUEUES"
  printf 'RINGLINE_GUEST_SCRIPTS=('
  printf ' %q' "${GUEST_SCRIPTS[@]}"
  printf ' )\n'
} >"$IRD/etc/ringline/run.env"

(cd "$IRD" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet >"$TMP/initramfs.cpio") \
  || fail_early "cpio failed"

# ---------------------------------------------------------------- namespaces
truncate -s "$NS1_BYTES" "$TMP/ns1.img" && truncate -s "$NS2_BYTES" "$TMP/ns2.img" \
  || fail_early "cannot create the namespace images in $TMP"

# ---------------------------------------------------------------- boot
APPEND="console=ttyS0 panic=-1 loglevel=4"
((POLL_QUEUES > 0)) && APPEND+=" nvme.poll_queues=$POLL_QUEUES"
[[ -n "${RINGLINE_QEMU_APPEND:-}" ]] && APPEND+=" $RINGLINE_QEMU_APPEND"
# shellcheck disable=SC2054 # the commas belong to QEMU option values
QEMU_ARGS=(
  -accel tcg -cpu max -smp 2 -m "$MEM"
  -nographic -serial stdio -monitor none -nodefaults -no-reboot
  -kernel "$VMLINUZ" -initrd "$TMP/initramfs.cpio" -append "$APPEND"
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap
  -virtfs "local,path=$RESULTS,mount_tag=results,security_model=none,multidevs=remap"
  # discard=unmap: QEMU's NVMe namespace reports that deallocated blocks read
  # as zeroes (DLFEAT), but with the default discard=ignore a Dataset
  # Management deallocate leaves the data in place.
  -drive "file=$TMP/ns1.img,if=none,id=ns1,format=raw,discard=unmap"
  -drive "file=$TMP/ns2.img,if=none,id=ns2,format=raw,discard=unmap"
  -device "nvme,id=nvme0,serial=$SERIAL"
  -device "nvme-ns,drive=ns1,bus=nvme0,nsid=1,logical_block_size=$NS1_LBA,physical_block_size=$NS1_LBA"
  -device "nvme-ns,drive=ns2,bus=nvme0,nsid=2,logical_block_size=$NS2_LBA,physical_block_size=$NS2_LBA"
)
if ((POWER_CUTS)); then
  # shellcheck source=scripts/qemu/power-cut.sh
  . "$REPO/scripts/qemu/power-cut.sh"
  power_cut_main
  exit $?
fi
printf '%q ' "$QEMU" "${QEMU_ARGS[@]}" >"$RESULTS/qemu-cmdline"
echo >>"$RESULTS/qemu-cmdline"

SETUP_SECS=$((SECONDS - START))
QEMU_BUDGET=$((TIMEOUT - SETUP_SECS - 10))
((QEMU_BUDGET >= 20)) || fail_early "setup took ${SETUP_SECS}s: no time left of --timeout $TIMEOUT for the guest"
say "kernel $(basename "$VMLINUZ") from $(basename "$KDIR"); modules: $(cut -f1 "$TMP/modules.order" | tr '\n' ' ')"
say "guest scripts: ${GUEST_SCRIPTS[*]#"$REPO"/}"
say "results dir: $RESULTS"
say "booting QEMU (TCG, 2 vCPUs, ${MEM} MiB, guest time limit ${QEMU_BUDGET}s); console follows"

BOOT_START=$SECONDS
: >"$CONSOLE.raw"
timeout -k 10 "$QEMU_BUDGET" "$QEMU" "${QEMU_ARGS[@]}" </dev/null >"$CONSOLE.raw" 2>&1 &
QEMU_PID=$!
# Show the console live; tail ends by itself shortly after QEMU (--pid).
tail -n +1 -f --pid="$QEMU_PID" "$CONSOLE.raw" 2>/dev/null | clean_console -u &
TAIL_PID=$!
wait "$QEMU_PID"
QEMU_RC=$?
QEMU_PID=""
GUEST_SECS=$((SECONDS - BOOT_START))
wait "$TAIL_PID" 2>/dev/null
TAIL_PID=""
clean_console <"$CONSOLE.raw" >"$CONSOLE" && rm -f "$CONSOLE.raw"
echo

# ---------------------------------------------------------------- verdict
reasons=()
guest_status=$(cat "$RESULTS/guest-status" 2>/dev/null)
case "$QEMU_RC" in
  3) [[ "$guest_status" == pass ]] || reasons+=("QEMU reported a pass but the guest left status '${guest_status:-none}'") ;;
  5) reasons+=("a guest script failed") ;;
  7) reasons+=("the guest's /init failed (see 'ringline-init: FATAL' in the console log)") ;;
  124|137)
    running=$(awk '/^=== RUN / { s = $3 } /^=== (PASS|SKIP|FAIL) / { s = "" } END { print s }' "$CONSOLE")
    reasons+=("timed out: the guest did not finish within ${QEMU_BUDGET}s (--timeout $TIMEOUT)${running:+; still running: $running}") ;;
  0) reasons+=("the guest stopped without reporting a result (kernel panic or power-off)") ;;
  *) reasons+=("QEMU exited with status $QEMU_RC (it failed to start or crashed)") ;;
esac

say "guest ran ${GUEST_SECS}s (QEMU exit status $QEMU_RC)"
if [[ -s "$RESULTS/summary" ]]; then
  say "guest scripts:"
  sed 's/^/    /' "$RESULTS/summary"
fi

say "host-side expectations ($RESULTS/expect):"
require=()
((DEFAULT_SET)) && require=(--require)
if [[ ! -e "$RESULTS/expect" ]] && ! ((DEFAULT_SET)); then
  say "    none registered"
elif ! python3 "$REPO/scripts/qemu/check-expect.py" "${require[@]}" "$RESULTS/expect" \
     1="$TMP/ns1.img" 2="$TMP/ns2.img" 2>&1 | sed 's/^/    /'; then
  reasons+=("host-side expectations failed")
fi

TOTAL_SECS=$((SECONDS - START))
if ((${#reasons[@]} == 0)); then
  say "PASS in ${TOTAL_SECS}s; console log and results: $RESULTS"
  exit 0
fi
say "FAIL after ${TOTAL_SECS}s:"
printf '    %s\n' "${reasons[@]}"
if [[ -s "$RESULTS/summary" ]]; then
  while read -r status name _; do
    [[ "$status" == FAIL && -f "$RESULTS/logs/$name.log" ]] || continue
    say "last 30 lines of the failed guest script $name ($RESULTS/logs/$name.log):"
    tail -n 30 "$RESULTS/logs/$name.log" | tr -d '\r' | sed 's/^/  | /'
  done <"$RESULTS/summary"
fi
say "last 40 lines of the console log ($CONSOLE):"
tail -n 40 "$CONSOLE" | sed 's/^/  | /'
say "console log and results: $RESULTS"
exit 1
