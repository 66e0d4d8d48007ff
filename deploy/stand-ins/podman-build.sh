#!/usr/bin/env bash
# `podman build` as this machine's pip reaches its package index: the host's CA bundle and a pip
# configuration naming it are mounted into every RUN, with the local wheel directory (/opt/wheels,
# where the CPU torch wheel lies) when there is one. Arguments are podman build's own.
#
#   deploy/stand-ins/podman-build.sh -f deploy/Dockerfile -t learning-chat-bot:test .
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
conf="$(mktemp -d)"
trap 'rm -rf "$conf"' EXIT
index="$(python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')"
{
    echo "[global]"
    echo "cert = /etc/host-ca.crt"
    echo "index-url = ${PIP_INDEX_URL:-$index}"
    [ -d /opt/wheels ] && echo "find-links = /opt/wheels"
} >"$conf/pip.conf"
mounts=(-v "$conf/pip.conf:/etc/pip.conf:ro" -v "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}:/etc/host-ca.crt:ro")
[ -d /opt/wheels ] && mounts+=(-v /opt/wheels:/opt/wheels:ro)
exec podman build --format docker --network host "${mounts[@]}" "$@"
