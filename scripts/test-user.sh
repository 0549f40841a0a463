#!/bin/bash
# Create the unprivileged user the test runner switches to when run as root,
# with subordinate id ranges so that newuidmap/newgidmap range mapping is
# tested too. Idempotent.
set -euo pipefail
user=${NODULARITY_TEST_USER:-nodularity-test}
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --system --create-home --shell /usr/sbin/nologin "$user"
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q "^$user:" "$f" || echo "$user:200000:65536" >> "$f"
done
id "$user"
