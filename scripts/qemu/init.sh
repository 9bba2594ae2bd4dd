#!/bin/busybox sh
# /init of the ringline QEMU NVMe guest (busybox initramfs built by
# scripts/nvme-qemu-test.sh). It loads the modules listed in
# /etc/ringline/modules, waits for the emulated NVMe namespaces, mounts the
# host's root (9p, read-only) at /newroot with the guest's /dev, /proc, /sys,
# tmpfs /run and /tmp and the writable results share at /run/ringline-results,
# chroots into it and runs scripts/qemu/guest-run.sh from the repo. The result
# leaves through isa-debug-exit (port 0xf4): byte 1 = every guest script
# passed or skipped, 2 = a guest script failed, 3 = this /init failed.
# QEMU then exits with (byte << 1) | 1, i.e. 3, 5 or 7.

/bin/busybox mkdir -p /bin /proc /sys /dev /newroot /keep
/bin/busybox --install -s /bin
export PATH=/bin
export HOME=/ TERM=linux

log() { echo "ringline-init: $*"; }

qemu_exit() {
    sync
    # Write one byte to I/O port 0xf4 (isa-debug-exit); QEMU exits at once.
    printf "\\$(printf %03o "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    log "isa-debug-exit did not stop QEMU; powering off"
    poweroff -f
    sleep 5
}

die() {
    log "FATAL: $*"
    echo "RINGLINE-GUEST-RESULT: init-error"
    qemu_exit 3
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }

mount -t proc proc /proc || die "mount /proc"
mount -t sysfs sysfs /sys || die "mount /sys"
mount -t devtmpfs devtmpfs /dev || die "mount devtmpfs on /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts || die "mount /dev/pts"
mount -t tmpfs -o mode=1777 shm /dev/shm || die "mount /dev/shm"
log "up at $(uptime_s)s, kernel $(uname -r)"

# Module parameters: nvme.X=Y / nvme_core.X=Y on the kernel command line are
# handed to insmod (modprobe would do that; insmod does not).
nvme_args=""
nvme_core_args=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        nvme.*=*) nvme_args="$nvme_args ${word#nvme.}" ;;
        nvme_core.*=*|nvme-core.*=*) nvme_core_args="$nvme_core_args ${word#nvme?core.}" ;;
    esac
done

while read -r name path; do
    [ -n "$name" ] || continue
    case "$name" in
        nvme) args="$nvme_args" ;;
        nvme-core|nvme_core) args="$nvme_core_args" ;;
        *) args="" ;;
    esac
    # shellcheck disable=SC2086 # args is a word list on purpose
    insmod "/lib/modules/$path" $args || die "insmod $name$args failed"
done </etc/ringline/modules
log "modules loaded at $(uptime_s)s (nvme:${nvme_args:- defaults})"

# Wait (bounded) for the generic char devices of both namespaces.
wait_s=$(cat /etc/ringline/nvme-wait-seconds 2>/dev/null || echo 60)
tries=$((wait_s * 10))
while [ ! -c /dev/ng0n1 ] || [ ! -c /dev/ng0n2 ]; do
    tries=$((tries - 1))
    if [ "$tries" -le 0 ]; then
        ls -l /dev/nvme* /dev/ng* 2>&1
        die "/dev/ng0n1 and /dev/ng0n2 did not appear within ${wait_s}s"
    fi
    usleep 100000
done
log "NVMe ready at $(uptime_s)s: $(echo /dev/nvme0 /dev/nvme0n* /dev/ng0n*)"

# The host's root file system, read-only.
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose host /newroot \
    || die "mount the host root over 9p (mount_tag=host)"

# Host directories under /run or /tmp that the guest needs (the build dir,
# guest scripts) would be hidden by the tmpfs mounts: keep them visible.
i=0
if [ -s /etc/ringline/preserve ]; then
    while IFS= read -r p; do
        [ -n "$p" ] || continue
        mkdir -p "/keep/$i"
        mount --bind "/newroot$p" "/keep/$i" || die "bind $p"
        i=$((i + 1))
    done </etc/ringline/preserve
fi

for d in dev proc sys; do
    mount --bind "/$d" "/newroot/$d" || die "bind /$d into the chroot"
done
mount -t tmpfs -o mode=0755 run /newroot/run || die "tmpfs on /run"
mount -t tmpfs -o mode=1777 tmp /newroot/tmp || die "tmpfs on /tmp"

i=0
if [ -s /etc/ringline/preserve ]; then
    while IFS= read -r p; do
        [ -n "$p" ] || continue
        mkdir -p "/newroot$p"
        mount --move "/keep/$i" "/newroot$p" || die "re-attach $p"
        i=$((i + 1))
    done </etc/ringline/preserve
fi

mkdir -p /newroot/run/ringline-results /newroot/run/ringline
mount -t 9p -o rw,trans=virtio,version=9p2000.L,msize=262144,cache=none results \
    /newroot/run/ringline-results || die "mount the results share (mount_tag=results)"
cp /etc/ringline/run.env /newroot/run/ringline/run.env || die "copy run.env"
log "chroot ready at $(uptime_s)s"

chroot /newroot /bin/bash -c \
    '. /run/ringline/run.env && cd "$RINGLINE_REPO" && exec /bin/bash "$RINGLINE_REPO/scripts/qemu/guest-run.sh"' \
    </dev/null
rc=$?

sync
umount /newroot/run/ringline-results 2>/dev/null
log "guest runner exited with $rc at $(uptime_s)s"
if [ "$rc" -eq 0 ]; then
    qemu_exit 1
else
    qemu_exit 2
fi
