#!/usr/bin/env bash
# The one test command: installs dependencies, builds (gcc, -Werror) and runs every
# test, then builds again with clang + ASan/UBSan (+ the libFuzzer targets) and runs
# the tests there too. Usage: scripts/test.sh [--quick]   (--quick skips the sanitizer pass)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

bash scripts/setup.sh

jobs=$(nproc)
echo "== gcc build (RelWithDebInfo, -Werror) =="
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGLINE_WERROR=ON \
  -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure --timeout 900

if ((quick)); then exit 0; fi

echo "== clang build with ASan+UBSan and fuzz targets =="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRINGLINE_WERROR=ON \
  -DRINGLINE_SANITIZE=ON -DRINGLINE_FUZZ=ON -DRINGLINE_BUILD_BENCH=OFF \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build build-asan -j "$jobs"
# The QEMU guest run is not repeated under the sanitizers: it exercises the same code
# in the gcc build, and ASan's shadow memory does not fit the guest.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure --timeout 900 -LE 'nvme|bench'
