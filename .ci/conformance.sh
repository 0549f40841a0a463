#!/bin/bash
# The OCI runtime conformance step of CI (issue 16): the opencontainers
# runtime-tools validation suite, which nobody here wrote, built from the
# vendored source in ../shared/conformance and run against bin/nodularity-oci
# as containerd and Podman would call it. Prints the suite's verdict per test
# and one summary line; fails when the suite cannot be built (loudly: a CI
# that silently skipped it would look green) or when fewer tests pass than
# the floor recorded in docs/conformance.md.
#
#   bash .ci/conformance.sh [CONFORMANCE_DIR]     (default ../shared/conformance)
set -uo pipefail
cd "$(dirname "$0")/.."
src=$(readlink -f "${1:-../shared/conformance}")
# docs/conformance.md: 34 reached (35 on branch oci16, less linux_ns_path,
# refused since); the floor leaves three for the suite's timing-dependent
# tests (kill, delete, killsig). Below it is a regression.
FLOOR=${CONFORMANCE_FLOOR:-31}
tarball=$src/runtime-tools-260e151.tar.gz
work=/var/tmp/nodularity-runtime-tools-260e151
die() {
  echo "conformance: FAILED: $*" >&2
  exit 1
}
[ -f "$tarball" ] || die "$tarball is missing"
command -v go >/dev/null || die "go is not installed (apt-get install golang-go)"
if [ ! -x "$work/validation/default/default.t" ]; then
  rm -rf "$work"
  mkdir -p "$work" || die "cannot create $work"
  tar -C "$work" -xzf "$tarball" || die "cannot unpack $tarball"
  echo "conformance: building runtime-tools (offline, vendored; a few minutes)"
  if ! (cd "$work" && GOFLAGS=-mod=vendor GOPROXY=off make tool runtimetest validation-executables) >"$work.build.log" 2>&1; then
    tail -40 "$work.build.log" >&2
    rm -rf "$work"
    die "building runtime-tools failed (log above, full log $work.build.log)"
  fi
fi
n=$(ls "$work"/validation/*/*.t 2>/dev/null | wc -l)
[ "$n" -eq 58 ] || die "expected 58 validation executables in $work, found $n"
logdir=$(mktemp -d /var/tmp/nodularity-conformance-XXXXXX)
# The bundles live under it: a container with a user namespace of its own
# (linux_ns_nopath) must be able to traverse it, and mktemp makes it 0700.
chmod 755 "$logdir"
bash "$src/run-oci-validation.sh" "$work" "$PWD/bin/nodularity-oci" "$logdir" | tee "$logdir/verdicts.txt"
pass=$(sed -n 's/^PASS \([0-9]*\) .*/\1/p' "$logdir/verdicts.txt")
[ -n "$pass" ] || die "the runner printed no summary (logs in $logdir)"
echo "conformance: runtime-tools validation: $pass of $n tests pass against nodularity-oci (floor $FLOOR; logs in $logdir)"
[ "$pass" -ge "$FLOOR" ] || die "$pass passes is below the floor of $FLOOR"
