#!/usr/bin/env bash
# Prove the CI podman setup end to end: build FROM localhost/ci-base:bookworm,
# pip-install over the re-signed HTTPS, run the container.
# Usage: bash .ci/podman/smoke-test.sh   (after .ci/podman-setup.sh; same PODMAN_ROOT)
set -euo pipefail
# shellcheck source=/dev/null
. "$(realpath -m "${PODMAN_ROOT:-/var/tmp/detk8s-podman}")/env.sh"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ctx="$(mktemp -d)"   # empty context: the smoke image copies nothing in
trap 'rm -rf "$ctx"' EXIT
podman build --pull=never -q -f "$HERE/smoke.Containerfile" \
  --build-arg BASE_IMAGE=localhost/ci-base:bookworm -t localhost/detk8s-smoke:ci "$ctx"
podman run --rm localhost/detk8s-smoke:ci
