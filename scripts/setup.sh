#!/usr/bin/env bash
# Installs every build, test and benchmark dependency from Debian 12's archive.
# Idempotent and non-interactive: packages already present are not fetched again.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang-14 clang libclang-rt-14-dev
  clang-format
  # libraries
  liburing-dev libnvme-dev libjson-c-dev libabsl-dev libssl-dev libgtest-dev libgmock-dev
  libbenchmark-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  # peers and real clients used by tests and benchmarks
  fio openssl util-linux procps iproute2 python3 curl
  libnbd-bin python3-libnbd nbdkit qemu-utils nbd-server nvme-cli
  # the kernel's NBD client, ext4 tools and mdadm (md RAID1 over two blockserve nodes),
  # run in the QEMU guest from the host's root
  nbd-client e2fsprogs mdadm
  # systemd-socket-activate and systemd-analyze (socket activation, unit checks)
  systemd
  # QEMU NVMe passthrough harness
  qemu-system-x86 busybox-static cpio
  # scale-out recipes: qemu-storage-daemon (quorum over several blockserve nodes)
  qemu-system-common
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
