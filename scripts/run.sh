#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install dependencies, build, and
# run smtpgate. Until the SMTP proxy lands (issue #3) this lints the shipped
# example configuration and checks the sample messages against it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target smtpgate

bin=build/cli/smtpgate
echo "== smtpgate lint -c contrib/smtpgate.toml"
"$bin" lint -c contrib/smtpgate.toml
for sample in contrib/samples/*.eml; do
  echo
  echo "== smtpgate check ... $sample"
  rc=0
  "$bin" check -c contrib/smtpgate.toml --ip 203.0.113.5 --helo mail.example.org \
    --from sender@example.org --rcpt user@example.com "$sample" || rc=$?
  echo "(exit code $rc: 0 accept, 1 reject, 2 tempfail)"
done
