#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs what the build and
# the tests need, builds (warnings are errors), runs ctest, then does the
# same with AddressSanitizer + UndefinedBehaviorSanitizer.
#   SMTPGATE_SKIP_SANITIZE=1  skip the sanitizer build
#   SMTPGATE_SKIP_SETUP=1     don't run the package installer
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SMTPGATE_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup-deps.sh
fi

jobs=$(nproc 2>/dev/null || echo 2)
build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DSMTPGATE_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}

status=0
if [ "${SMTPGATE_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer build (ASan+UBSan) =="
  build build-asan -DCMAKE_BUILD_TYPE=Debug -DSMTPGATE_SANITIZE=ON
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    LSAN_OPTIONS=suppressions="$PWD/tests/sanitizers/lsan.supp" \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -E '^bench:' || status=1
fi

echo "== release build =="
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
ctest --test-dir build --output-on-failure -j"$jobs" || status=1
exit $status
