#!/bin/bash
# Compiles coroutine_shapes.cc with every available compiler of Debian 12
# (g++-12, clang++-14), with ASan+UBSan, and runs each shape. Fails when a
# shape ringline relies on ("safe") misbehaves under any compiler; reports what
# the unsafe shapes do (the reason for the rules in docs/gcc12-coroutines.md).
# Usage: check_shapes.sh WORK_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-/tmp/ringline-gcc12-shapes}
mkdir -p "$work"
failed=0 passed=0 compilers=0
for cxx in g++-12 clang++-14; do
  if ! command -v "$cxx" >/dev/null; then
    echo "SKIPPED: $cxx not installed"
    continue
  fi
  compilers=$((compilers + 1))
  bin="$work/shapes-$cxx"
  flags=(-std=c++20 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer)
  [[ $cxx == clang* ]] && flags+=(-fno-sanitize=function)
  if ! "$cxx" "${flags[@]}" -o "$bin" "$here/coroutine_shapes.cc" 2>"$work/$cxx.log"; then
    echo "FAIL: $cxx cannot compile coroutine_shapes.cc"; cat "$work/$cxx.log"; failed=$((failed + 1)); continue
  fi
  if "$cxx" -std=c++20 -DWITH_INIT_LIST -fsyntax-only "$here/coroutine_shapes.cc" 2>/dev/null; then
    echo "INFO: $cxx: co_await inside a braced initializer list compiles"
  else
    echo "INFO: $cxx: co_await inside a braced initializer list does NOT compile"
  fi
  while read -r shape kind; do
    out=$(ASAN_OPTIONS=detect_leaks=0 timeout 10 "$bin" "$shape" 2>&1); rc=$?
    summary=$(printf '%s\n' "$out" | grep -m1 -E '^(ok|never finished|wrong value)|ERROR: AddressSanitizer|runtime error' || echo "exit $rc")
    if [[ $kind == safe ]]; then
      if [[ $rc -eq 0 ]]; then
        echo "PASS: $cxx $shape (safe): $summary"; passed=$((passed + 1))
      else
        echo "FAIL: $cxx $shape (safe): $summary"; failed=$((failed + 1))
      fi
    else
      echo "INFO: $cxx $shape (unsafe): ${summary}"
    fi
  done < <("$bin" --list)
done
if [[ $compilers -eq 0 ]]; then
  echo "SKIPPED: neither g++-12 nor clang++-14 is installed"; exit 0
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
