#!/usr/bin/env bash
# Local stand-ins for the images deploy/ builds on, made from Debian's packages, for machines that
# cannot pull from Docker Hub (these build machines, an offline mirror). An image already present
# (the real one, or a stand-in made earlier) is kept: the script only fills in what is missing.
#
#   deploy/stand-ins/make-images.sh [python] [postgres] [chroma] [nginx]      (default: all four)
#
# What each differs in from the real image (docs/deploy.md):
#   python:3.11-slim-trixie  Debian trixie minbase (not slim) with this machine's own CPython 3.11
#                            copied to /usr/local (the real image builds its own patch release) and
#                            the pip/setuptools that ensurepip bundles. Like the real image it has
#                            only ca-certificates, netbase, tzdata and Python's own libraries: a
#                            library missing here (libgomp, say) is missing there too.
#   postgres:17              trixie's postgresql-17 with a small entrypoint that honours POSTGRES_USER,
#                            POSTGRES_PASSWORD and POSTGRES_DB (not the official entrypoint's
#                            init scripts), initdb with UTF8, data in /var/lib/postgresql/data.
#   chromadb/chroma:1.5.9    the same chromadb release's Python server (`chroma run`) on the python
#                            stand-in, plus curl for the health check; the official image runs the
#                            Rust server build of the same release.
#   nginxinc/nginx-unprivileged:1.29  trixie's nginx (1.26) as uid 101 with /tmp for its pid and
#                            buffers, and the official image's template step (envsubst of the
#                            variables set) in a small entrypoint.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(python postgres chroma nginx)

has() { podman image exists "$1"; }
log() { printf '[stand-ins] %s\n' "$*" >&2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mirror() {  # the URI of this machine's apt source whose suites match $1 (debian or debian-security)
    local uri
    uri=$(awk -v want="$1" '/^URIs:/ {print $2}' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
        grep -E "/${1}/?\$" | head -n 1 || true)
    echo "${uri:-http://deb.debian.org/$1}"
}

minbase() {
    has localhost/trixie-minbase:latest && return
    log "trixie minbase root filesystem (mmdebstrap, about a minute)"
    local main security
    main="$(mirror debian)"
    security="$(mirror debian-security)"
    mmdebstrap --quiet --variant=minbase \
        --include=ca-certificates,netbase,tzdata,libssl3t64,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8t64,libncursesw6,libtinfo6,libuuid1,zlib1g,libexpat1,libtirpc3t64,libnsl2 \
        trixie "$work/rootfs.tar" "deb $main trixie main" "deb $main trixie-updates main" \
        "deb $security trixie-security main"
    podman import --quiet "$work/rootfs.tar" localhost/trixie-minbase:latest >/dev/null
}

python_image() {
    local tag=docker.io/library/python:3.11-slim-trixie
    has "$tag" && return
    minbase
    local prefix version
    prefix="$(python3 -c 'import sys; print(sys.prefix)')"
    version="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    [ "$version" = 3.11 ] || { log "this machine's python3 is $version, the image needs 3.11"; exit 1; }
    log "python:3.11-slim-trixie from $prefix"
    mkdir -p "$work/python/usr/local/bin"
    tar -C "$prefix" --exclude="python$version/site-packages/*" --exclude="python$version/test" \
        --exclude="python$version/idlelib" --exclude="python$version/tkinter" --exclude="__pycache__" \
        -cf - lib include | tar -C "$work/python/usr/local" -xf -
    cp "$prefix/bin/python$version" "$work/python/usr/local/bin/"
    cp "$here/python.Containerfile" "$work/python/Containerfile"
    podman build --quiet --network none -t "$tag" "$work/python" >/dev/null
}

postgres_image() {
    has docker.io/library/postgres:17 && return
    minbase
    log "postgres:17 from trixie's postgresql-17"
    podman build --quiet --network host -t docker.io/library/postgres:17 -f "$here/postgres.Containerfile" "$here" \
        >/dev/null
}

chroma_image() {
    has docker.io/chromadb/chroma:1.5.9 && return
    python_image
    log "chromadb/chroma:1.5.9 from the chromadb 1.5.9 package"
    "$here/podman-build.sh" --quiet -t docker.io/chromadb/chroma:1.5.9 -f "$here/chroma.Containerfile" "$here" >/dev/null
}

nginx_image() {
    has docker.io/nginxinc/nginx-unprivileged:1.29 && return
    minbase
    log "nginxinc/nginx-unprivileged:1.29 from trixie's nginx"
    podman build --quiet --network host -t docker.io/nginxinc/nginx-unprivileged:1.29 \
        -f "$here/nginx.Containerfile" "$here" >/dev/null
}

for name in "${wanted[@]}"; do
    case "$name" in
        python) python_image ;;
        postgres) postgres_image ;;
        chroma) chroma_image ;;
        nginx) nginx_image ;;
        *) log "unknown image $name (python, postgres, chroma, nginx)"; exit 2 ;;
    esac
done
