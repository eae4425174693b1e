#!/usr/bin/env bash
# The Debian package on a fresh machine: debootstrap a minimal Debian 12 into
# a temporary directory, `apt-get install` the .deb there (its dependencies
# come from Debian's mirror, as on a new server), then check what an admin
# gets: smtpgate in /usr/sbin, the system user, the log directory, and
# `smtpgate lint` passing on the installed example config. Purging removes it
# again. Nothing outside the temporary root is changed.
#
#   install_test.sh DEB_DIR [WORK_DIR]
#
# DEB_DIR holds the one smtpgate_*.deb (the `package` test makes it). Exit 77
# (skipped) without root or debootstrap. SMTPGATE_DEBOOTSTRAP_CACHE (default
# /var/cache/smtpgate-debootstrap) keeps downloaded packages between runs.
set -euo pipefail

deb_dir=$1
work=${2:-$(mktemp -d /tmp/smtpgate-install-test.XXXXXX)}
if [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null || ! command -v chroot >/dev/null; then
  echo "skipped: needs root, debootstrap and chroot"
  exit 77
fi
shopt -s nullglob
debs=("$deb_dir"/smtpgate_*.deb)
if [ ${#debs[@]} != 1 ]; then
  echo "FAILED: expected one smtpgate_*.deb in $deb_dir, found ${#debs[@]}"
  exit 1
fi
deb=${debs[0]}

root=$work/root
cache=${SMTPGATE_DEBOOTSTRAP_CACHE:-/var/cache/smtpgate-debootstrap}
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
  head -n1)
mirror=${mirror:-http://deb.debian.org/debian}

cleanup() {
  umount "$root/proc" 2>/dev/null || true
  umount "$root" 2>/dev/null || true
  if mountpoint -q "$root" 2>/dev/null; then
    echo "left $work: $root is still mounted"
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT

fail() {
  echo "FAILED: $*"
  exit 1
}

in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@"; }

SECONDS=0
echo "== debootstrap bookworm (minbase) from $mirror into $root"
mkdir -p "$cache" "$root"
# On tmpfs: dpkg fsync()s every file, which on disk costs minutes and buys
# nothing for a root that is thrown away.
mount -t tmpfs -o size=4g,mode=0755 smtpgate-install-test "$root"
debootstrap --variant=minbase --cache-dir="$cache" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log"; fail "debootstrap"; }
# The machine's own package sources (updates and security too), so the
# dependencies resolve as they would on a new server of this kind.
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  rm -f "$root/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"

echo "   (${SECONDS} s)"
echo "== apt-get install $(basename "$deb")"
cp "$deb" "$root/tmp/"
in_root apt-get update -qq >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get update"; }
in_root apt-get install -y -q --no-install-recommends "/tmp/$(basename "$deb")" >>"$work/apt.log" 2>&1 ||
  { tail -n 40 "$work/apt.log"; fail "apt-get install"; }
grep -E "^(Setting up|Unpacking) smtpgate" "$work/apt.log"

echo "   (${SECONDS} s)"
echo "== what the admin gets"
[ "$(in_root dpkg-query -W -f='${Status}' smtpgate)" = "install ok installed" ] ||
  fail "dpkg does not list smtpgate as installed"
in_root /usr/sbin/smtpgate --version
in_root getent passwd smtpgate >/dev/null || fail "no smtpgate system user"
[ "$(in_root stat -c %U:%G /var/log/smtpgate)" = smtpgate:smtpgate ] ||
  fail "/var/log/smtpgate is not owned by smtpgate"
for f in /etc/smtpgate/smtpgate.toml /lib/systemd/system/smtpgate-proxy.service \
  /etc/logrotate.d/smtpgate /usr/share/man/man8/smtpgate.8.gz; do
  [ -e "$root$f" ] || [ -e "$root${f%.gz}" ] || fail "missing after install: $f"
done
lint=$(in_root /usr/sbin/smtpgate lint -c /etc/smtpgate/smtpgate.toml 2>&1) ||
  { echo "$lint"; fail "smtpgate lint on the installed config"; }
echo "$lint"
grep -Eq "OK, [0-9]+ rules" <<<"$lint" || fail "lint did not say OK"
# As the daemon's user: the installed config and rules are readable by it.
chroot --userspec=smtpgate:smtpgate "$root" /usr/sbin/smtpgate lint -c /etc/smtpgate/smtpgate.toml \
  >/dev/null 2>&1 || fail "the smtpgate user cannot read the installed config"

echo "== apt-get purge"
in_root apt-get purge -y -q smtpgate >>"$work/apt.log" 2>&1 || { tail -n 20 "$work/apt.log"; fail "purge"; }
[ ! -e "$root/usr/sbin/smtpgate" ] || fail "/usr/sbin/smtpgate left after purge"
[ ! -e "$root/etc/smtpgate/smtpgate.toml" ] || fail "/etc/smtpgate/smtpgate.toml left after purge"
[ ! -e "$root/var/log/smtpgate" ] || fail "/var/log/smtpgate left after purge"
echo "install test passed"
