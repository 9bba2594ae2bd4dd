#!/usr/bin/env bash
# Starts blockserve on its embedded default: installs dependencies, builds, and
# serves a 1 GiB sparse file (var/blockserve/default.img) on 127.0.0.1:10809.
# Extra arguments go to blockserve (see `build/bin/blockserve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ ! -f build/build.ninja ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build --target blockserve
cat <<MSG

blockserve is starting on 127.0.0.1:10809 (Ctrl-C stops it cleanly).
Connect with:
  nbdinfo nbd://127.0.0.1            # size, flags, block sizes
  nbdinfo --list nbd://127.0.0.1     # the exports
  nbdcopy nbd://127.0.0.1 copy.img   # read the whole export

MSG
exec build/bin/blockserve "$@"
