#!/usr/bin/env bash
# Prepare rootful podman on a bare Debian 12 CI machine (no Docker engine, no
# registry) and build localhost/ci-base:bookworm, the base the project's
# Dockerfile is built on in CI:
#   podman build --pull=never --build-arg BASE_IMAGE=localhost/ci-base:bookworm .
# Idempotent: installed packages, the debootstrap base image and cached build
# layers are reused. All podman state lives under $PODMAN_ROOT, by default
# OUTSIDE the repo: inside it, `COPY . ...` in a build whose context is the repo
# walks the image store recursively (seen: 6 min, then "file name too long"),
# and a fresh CI clone would throw the cache away.
# Usage:  bash .ci/podman-setup.sh && . "${PODMAN_ROOT:-/var/tmp/detk8s-podman}/env.sh"
set -euo pipefail

PODMAN_ROOT="$(realpath -m "${PODMAN_ROOT:-/var/tmp/detk8s-podman}")"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEBIAN_IMAGE=localhost/debian-base:bookworm
CI_BASE_IMAGE=localhost/ci-base:bookworm

log() { echo "[podman-setup] $*" >&2; }
t0=$SECONDS
lap() { log "$1: $((SECONDS - t0)) s"; t0=$SECONDS; }

# 1. Packages. Other jobs may run apt at the same time: serialise on one lock.
missing=()
for pkg in podman buildah debootstrap runc; do
  command -v "$pkg" >/dev/null || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  flock /tmp/apt.lock sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"' \
    apt "${missing[@]}" >&2 # stdout is kept for the env.sh path
fi
lap "apt install"

# 2. Config. crun fails on this machine's hybrid cgroups -> runc; there is no
# systemd/journald (PID 1 is not systemd) -> cgroupfs and a file event log.
mkdir -p "$PODMAN_ROOT"
cat >"$PODMAN_ROOT/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
# overlay, not vfs: vfs is 2-3x slower and copies every layer in full.
cat >"$PODMAN_ROOT/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_ROOT/storage"
runroot = "$PODMAN_ROOT/run"
EOF
cat >"$PODMAN_ROOT/env.sh" <<EOF
export CONTAINERS_CONF="$PODMAN_ROOT/containers.conf"
export CONTAINERS_STORAGE_CONF="$PODMAN_ROOT/storage.conf"
EOF
# shellcheck source=/dev/null
. "$PODMAN_ROOT/env.sh"

# 3. Debian base from debootstrap (no registry to pull from). Cached by image name.
if podman image exists "$DEBIAN_IMAGE"; then
  log "$DEBIAN_IMAGE exists, skipping debootstrap"
else
  rootfs="$PODMAN_ROOT/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$PODMAN_ROOT/debootstrap.log" 2>&1 \
    || { tail -20 "$PODMAN_ROOT/debootstrap.log" >&2; exit 1; }
  lap "debootstrap"
  # Behave like the official debian/ubuntu images (nvidia/cuda derives from
  # ubuntu's): no .deb cache or package lists kept, apt starts no services.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
  lap "podman import"
fi

# 4. ci-base: Python + the host CA (this machine re-signs HTTPS, so pip needs it).
# The build context is a scratch dir holding only the CA file.
ctx="$PODMAN_ROOT/ci-base-context"
mkdir -p "$ctx"
cp "$HOST_CA" "$ctx/host-ca.crt"
podman build --pull=never -q -f "$HERE/podman/ci-base.Containerfile" \
  --build-arg DEBIAN_BASE="$DEBIAN_IMAGE" -t "$CI_BASE_IMAGE" "$ctx" >/dev/null
lap "ci-base build"

log "ready: $CI_BASE_IMAGE; use:  . $PODMAN_ROOT/env.sh"
echo "$PODMAN_ROOT/env.sh"
