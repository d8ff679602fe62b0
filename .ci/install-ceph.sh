#!/bin/bash
# Install single-node Ceph (mon + osd + radosgw) for the S3 integration tests.
# Idempotent: does nothing when radosgw is already on PATH. apt runs under
# `flock /tmp/apt.lock` because other jobs on the same machine may run apt concurrently.
set -euo pipefail

if command -v radosgw >/dev/null 2>&1 && command -v ceph-mon >/dev/null 2>&1 \
    && command -v ceph-osd >/dev/null 2>&1; then
    echo "ceph already installed: $(command -v radosgw)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# One lock around both steps: an update racing another apt-get install fails on the list lock.
$SUDO flock /tmp/apt.lock bash -c '
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends ceph-mon ceph-osd radosgw
'
# monmaptool/ceph-authtool come with ceph-common (a dependency of ceph-mon); check they are there.
for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool; do
    command -v "$b" >/dev/null || { echo "missing after install: $b" >&2; exit 1; }
done
echo "ceph installed: $(radosgw --version)"
