#!/bin/sh
# The Debian image the fakeroot tests install packages into: debootstrap
# --variant=minbase bookworm, built once per machine and cached outside the
# checkout (the suite stays fast; CI builds it before `npm test`).
#
#   scripts/debian-image.sh [USER]
#
# prints the image directory. Run as root: builds $NODULARITY_DEBIAN_IMAGE
# (default /var/tmp/nodularity-debian-bookworm) if missing. With USER, also a
# copy for that user as a rootless unpack would leave it: every file owned by
# the user's ids shifted the way `--fakeroot` maps them (container uid 0 ->
# USER, 1..N -> USER's /etc/subuid range; gids likewise), printed instead.
# Builds happen in a temporary directory renamed into place, under a lock, so
# that two runs (the root and the unprivileged test pass, two CI jobs) never
# see a half-built image. Idempotent; a built image is never touched again.
set -eu
base=${NODULARITY_DEBIAN_IMAGE:-/var/tmp/nodularity-debian-bookworm}
mirror=${NODULARITY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
user=${1:-}
here=$(dirname "$(readlink -f -- "$0")")
want=$base
[ -n "$user" ] && want=$base-$user
if [ -d "$want" ]; then echo "$want"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "debian-image.sh: $want does not exist; build it as root: $0 $user" >&2
  exit 1
fi
exec 9>>"$base.lock"
flock 9
if [ ! -d "$base" ]; then
  tmp=$(mktemp -d "$base.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"
  keyring=
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || keyring=--no-check-gpg
  if ! debootstrap --variant=minbase $keyring bookworm "$tmp" "$mirror" >"$tmp.log" 2>&1; then
    tail -n 20 "$tmp.log" >&2
    echo "debian-image.sh: debootstrap failed (log: $tmp.log)" >&2
    exit 1
  fi
  rm -f "$tmp.log"
  rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_Packages
  mv -T "$tmp" "$base"
  trap - EXIT
fi
if [ -n "$user" ] && [ ! -d "$want" ]; then
  uid=$(id -u "$user")
  gid=$(id -g "$user")
  sub=$(awk -F: -v u="$user" -v i="$uid" '$1 == u || $1 == i { print $2; exit }' /etc/subuid)
  subg=$(awk -F: -v u="$user" -v i="$uid" '$1 == u || $1 == i { print $2; exit }' /etc/subgid)
  if [ -z "$sub" ] || [ -z "$subg" ]; then
    echo "debian-image.sh: $user has no range in /etc/subuid or /etc/subgid" >&2
    exit 1
  fi
  tmp=$(mktemp -d "$want.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  cp -a "$base/." "$tmp/"
  node "$here/shift-ids.mjs" "$tmp" "$uid" "$gid" "$sub" "$subg"
  mv -T "$tmp" "$want"
  trap - EXIT
fi
echo "$want"
