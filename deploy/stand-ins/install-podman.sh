#!/usr/bin/env bash
# podman and what it needs to build and run the images here, from Debian's packages (about 15 s):
# the container tests use it (tests/containers.py), and CI calls this before `make test`.
# A machine that has podman or a running Docker already is left as it is.
set -euo pipefail
if command -v podman >/dev/null || docker info >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install podman (or Docker) to run the container tests; they are skipped without one" >&2
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman buildah runc conmon \
    containernetworking-plugins golang-github-containernetworking-plugin-dnsname dnsmasq-base slirp4netns \
    fuse-overlayfs uidmap iptables mmdebstrap >/dev/null
