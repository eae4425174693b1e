#!/usr/bin/env bash
# Installs every Debian 12 package smtpgate needs to build and to run its tests.
# Idempotent and non-interactive: safe to run again; asks nothing (Postfix's
# debconf questions are preseeded). Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config ccache ninja-build clang-format
  # libFuzzer (clang's -fsanitize=fuzzer) for the fuzz stage of scripts/test.sh
  clang
  # libraries (DESIGN.md: Boost 1.81 for C++20 awaitables; never libboost-dev beside it)
  libboost1.81-dev libssl-dev libre2-dev libopendkim-dev libmilter-dev
  libunbound-dev libevent-dev libgmime-3.0-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
  libcli11-dev nlohmann-json3-dev catch2 zlib1g-dev libyaml-cpp-dev
  # real programs the integration tests and benchmarks start on loopback
  postfix swaks libnet-ssleay-perl libio-socket-inet6-perl unbound opendkim-tools redis-server
  procps python3 python3-yaml openssl
  # the snakeoil certificate contrib/smtpgate.toml offers with STARTTLS (lint loads it)
  ssl-cert
  # DMARC's organizational domains (/usr/share/publicsuffix/public_suffix_list.dat)
  publicsuffix
  # smtpgate report's test renders the page in headless Chromium; sd_notify for
  # Type=notify units; dpkg-shlibdeps (dpkg-dev) for the CPack .deb's dependencies;
  # debootstrap for the test that installs the .deb on a fresh Debian 12
  chromium fonts-dejavu-core libsystemd-dev dpkg-dev debootstrap
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# ssl-cert makes its snakeoil pair when it is installed; machine images often
# leave it out (it is a private key). Made again here as ssl-cert would.
ensure_snakeoil() {
  if [ ! -e /etc/ssl/certs/ssl-cert-snakeoil.pem ] || [ ! -e /etc/ssl/private/ssl-cert-snakeoil.key ]; then
    echo "setup-deps: making the snakeoil certificate (make-ssl-cert)"
    $SUDO make-ssl-cert generate-default-snakeoil --force-overwrite
  fi
}

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup-deps: all ${#PACKAGES[@]} packages already installed"
  ensure_snakeoil
  exit 0
fi

echo "setup-deps: installing ${missing[*]}"
# Postfix asks where mail goes; tests run private instances, so the system one stays local-only.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
echo "postfix postfix/mailname string localhost" | $SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
# Don't start system services (postfix, unbound, redis) at install time: tests start their own.
policy_rc=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy_rc" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy_rc" >/dev/null
  $SUDO chmod +x "$policy_rc"
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && $SUDO rm -f "$policy_rc"' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
ensure_snakeoil
echo "setup-deps: done"
