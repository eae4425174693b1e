#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs what the build and
# the tests need, builds (warnings are errors), runs ctest, then does the
# same with AddressSanitizer + UndefinedBehaviorSanitizer, then fuzzes each
# network parser for a fixed number of runs with libFuzzer (clang).
#   SMTPGATE_SKIP_SANITIZE=1  skip the sanitizer build
#   SMTPGATE_SKIP_FUZZ=1      skip the libFuzzer stage
#   SMTPGATE_FUZZ_RUNS=N      inputs per fuzz target (default 200000)
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

# Real fuzzing, briefly: the libFuzzer binaries (tests/fuzz/README.md) built
# with clang, ASan and UBSan, each run from its seed corpus with a fixed seed
# and number of inputs, so a run is repeatable and a crash is a real finding
# (libFuzzer saves it as crash-* in build-fuzz/).
if [ "${SMTPGATE_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz (clang, libFuzzer) =="
  targets=(line_reader command_parser data_framer reply_parser xtext proxy_protocol)
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DSMTPGATE_WERROR=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j"$jobs" --target "${targets[@]/#/fuzz_}"
  for t in "${targets[@]}"; do
    found=$(mktemp -d)  # new inputs go here, not into the checked-in seeds
    log="build-fuzz/fuzz_$t.log"
    if (cd build-fuzz && "./tests/fuzz/fuzz_$t" -seed=1 -runs="${SMTPGATE_FUZZ_RUNS:-200000}" \
          -max_len=4096 -timeout=10 "$found" "../tests/fuzz/corpus/$t" >"fuzz_$t.log" 2>&1); then
      echo "fuzz_$t: $(tail -n 1 "$log")"
    else
      echo "fuzz_$t FAILED:"; tail -n 40 "$log"; status=1
    fi
    rm -rf "$found"
  done
fi
exit $status
