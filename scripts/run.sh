#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install dependencies, build, and
# start the SMTP proxy in the foreground on the embedded default configuration
# (listen 127.0.0.1:2525, backend 127.0.0.1:25, decision log
# ./smtpgate-decisions.jsonl) — or /etc/smtpgate/smtpgate.toml if it exists.
#
# If nothing listens on 127.0.0.1:25, a local backend is started for the
# demo: Postfix's smtp-sink, which accepts every message and throws it away.
# Stop with Ctrl-C. Then, from another terminal:
#   swaks --server 127.0.0.1:2525 --from me@example.org --to you@example.com
#   build/cli/smtpgate log
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target smtpgate

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

sink_pid=""
cleanup() { [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if ! listening 25; then
  echo "run: nothing listens on 127.0.0.1:25; starting smtp-sink there as the demo backend"
  smtp-sink -u postfix -c 127.0.0.1:25 100 &
  sink_pid=$!
  for _ in $(seq 50); do listening 25 && break; sleep 0.1; done
fi

echo "run: lint of the shipped example rules:"
build/cli/smtpgate lint -c contrib/smtpgate.toml || true
echo "run: starting the proxy (Ctrl-C stops it)"
build/cli/smtpgate proxy
