#!/usr/bin/env bash
# `make test-deploy`: the real Dockerfile built and the real compose stack run, on this machine.
#
# 1. a Docker engine: the one running, or Debian's dockerd started here, kept off the host's
#    networking (no default bridge, no iptables, no NAT, no forwarding) and stopped again at the end;
# 2. Compose v2: the one installed, or Debian 13's docker-compose .deb, unpacked into the cache;
# 3. a stand-in for python:3.11-slim-bookworm (Docker Hub is out of reach): debootstrap + docker import;
# 4. `docker build` of the real Dockerfile's two targets, serving and index, told only BASE_IMAGE and
#    TORCH_INDEX_URL (PyPI here); both images' sizes printed;
# 5. tests/deploy/compose_stack.py: index, up, search, crash a replica, re-index, down.
# Where no engine can start it says so loudly and skips; with CI=true it fails instead.
# Every step's time goes to test-output/deploy/timings.txt. Caches (images, pip's downloads through
# BuildKit, the compose binary) are kept, so a second run rebuilds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
CACHE=${LOOKALIKE_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lookalike-deploy}
OUT=test-output/deploy
IMAGE=lookalike:test-deploy              # the serving image: the three services, no torch
INDEX_IMAGE=lookalike-index:test-deploy  # the index image: the indexing job, with torch
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://pypi.org/simple}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
COMPOSE_DEB_SUITE=trixie
# Debian's docker client first: it matches Debian's engine and drives BuildKit without buildx.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export DOCKER_BUILDKIT=1
mkdir -p "$OUT" "$CACHE"
: > "$OUT/timings.txt"

say() { printf '\n==> %s\n' "$*"; }
timed() {  # timed NAME COMMAND...: run it, append "NAME SECONDS" to timings.txt
    local name=$1 started=$SECONDS
    shift
    "$@"
    printf '%-28s %5d s\n' "$name" $((SECONDS - started)) | tee -a "$OUT/timings.txt"
}
skip_or_fail() {
    printf '\n%s\n' "################################################################################"
    printf 'test-deploy SKIPPED: %s\n' "$*"
    printf 'The image was NOT built and the compose stack NOT run (see docs/operations.md).\n'
    printf '%s\n' "################################################################################"
    if [[ ${CI:-} == true ]]; then echo "CI=true: a skipped deploy test fails CI."; exit 1; fi
    exit 0
}
apt_install() {
    if [[ $(id -u) != 0 ]]; then return 1; fi
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# --- 1. the engine -------------------------------------------------------------------------------
STARTED_DOCKERD=
stop_dockerd() {
    if [[ -n $STARTED_DOCKERD ]]; then
        kill -TERM "$STARTED_DOCKERD" 2>/dev/null && timeout 60 tail --pid="$STARTED_DOCKERD" -f /dev/null || true
    fi
}
trap stop_dockerd EXIT

start_dockerd() {
    if docker info >/dev/null 2>&1; then echo "using the running Docker engine"; return; fi
    command -v dockerd >/dev/null || apt_install docker.io || skip_or_fail "dockerd is not installed and cannot be"
    # `docker info` above may have found another client (this kind of machine has Docker 28's in
    # /usr/local/bin, which needs buildx for BuildKit); look the name up again now Debian's is installed.
    hash -r
    [[ $(id -u) == 0 ]] || skip_or_fail "no Docker engine answers (docker info failed), and starting one needs root"
    # Containers reach only compose's own network, or the host's for `docker build --network host`.
    dockerd --iptables=false --ip-forward=false --ip-masq=false --bridge=none >"$OUT/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        kill -0 "$STARTED_DOCKERD" 2>/dev/null || break
        sleep 1
    done
    tail -20 "$OUT/dockerd.log" || true
    STARTED_DOCKERD=
    skip_or_fail "dockerd did not start"
}

# --- 2. compose v2 -------------------------------------------------------------------------------
# Bookworm has only compose v1; Debian 13's package is v2, one Go binary that is the CLI plugin.
fetch_compose() {
    local root="$CACHE/compose-$COMPOSE_DEB_SUITE" plugin_dir="$CACHE/docker-config/cli-plugins"
    export DOCKER_CONFIG="$CACHE/docker-config"
    # grep reads the whole line (no -q): under pipefail, an early exit could SIGPIPE docker and fail the test.
    if docker compose version 2>/dev/null | grep 'version v\?2' >/dev/null; then return; fi
    if [[ ! -x $root/unpacked/usr/libexec/docker/cli-plugins/docker-compose ]]; then
        # Its own source list, lists and cache: the system's apt setup is neither read nor changed.
        rm -rf "$root" && mkdir -p "$root/sources" "$root/lists/partial" "$root/cache/archives/partial"
        cat >"$root/sources/$COMPOSE_DEB_SUITE.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $COMPOSE_DEB_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        local apt=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$root/sources"
                   -o "Dir::State::Lists=$root/lists" -o "Dir::Cache=$root/cache" -o Dir::State::Status=/dev/null
                   -o APT::Sandbox::User=root)
        apt-get "${apt[@]}" update -q
        (cd "$root" && apt-get "${apt[@]}" download docker-compose)
        dpkg-deb -x "$root"/docker-compose_*.deb "$root/unpacked"
    fi
    mkdir -p "$plugin_dir"
    ln -sf "$root/unpacked/usr/libexec/docker/cli-plugins/docker-compose" "$plugin_dir/docker-compose"
}

# --- 3. the stand-in base ------------------------------------------------------------------------
# What python:3.11-slim-bookworm gives the Dockerfile: bookworm, Python 3.11 as `python` with venv,
# CA certificates (this machine's too, since its traffic to PyPI passes a TLS-inspecting proxy).
PACKAGES=python3.11,python3.11-venv,python3-distutils,python3-lib2to3,python3-pip-whl,python3-setuptools-whl,ca-certificates
local_cas() { find /usr/local/share/ca-certificates -name '*.crt' 2>/dev/null | sort; }
recipe_hash() {
    { echo "$PACKAGES"; declare -f make_base; local_cas | xargs -r cat; } | sha256sum | cut -c1-12
}
make_base() {
    local rootfs
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    command -v debootstrap >/dev/null || apt_install debootstrap
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$DEBIAN_MIRROR" >"$OUT/debootstrap.log" 2>&1 \
        || { tail -20 "$OUT/debootstrap.log"; return 1; }
    local_cas | xargs -r cp -t "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
    ln -s /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
    ln -s /usr/bin/python3.11 "$rootfs/usr/local/bin/python3"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
           "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}
ensure_base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then echo "cached: $BASE_IMAGE"; return; fi
    make_base
}

# --- 4. the image --------------------------------------------------------------------------------
build_target() {  # build_target TARGET TAG: one of the Dockerfile's two images
    docker build --network host --progress plain --target "$1" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" \
        -t "$2" . >"$OUT/build-$1.log" 2>&1 || { tail -40 "$OUT/build-$1.log"; return 1; }
    # BuildKit's steps with their times: "#7 [serving 3/10] RUN ..." then "#7 DONE 153.4s" or "#7 CACHED".
    # Printed in the Dockerfile's order, export last.
    awk '/^#[0-9]+ \[|^#[0-9]+ exporting to image/ && !($1 in name) {name[$1] = substr($0, length($1) + 2, 70)}
         /^#[0-9]+ (DONE|CACHED)/ && ($1 in name) {
             order = match(name[$1], /[0-9]+\/[0-9]+\]/) ? substr(name[$1], RSTART, RLENGTH) + 0 : 999
             printf "%03d  %-72s %s\n", order, name[$1], ($2 == "DONE" ? $3 : "cached")}' \
        "$OUT/build-$1.log" | grep -v '\[internal\]' | sort | cut -c4- | tee "$OUT/build-steps-$1.txt"
}
build_image() {
    build_target serving "$IMAGE"
    build_target index "$INDEX_IMAGE"
}
image_size() {  # image_size TAG: its size, and its largest installed packages
    local size
    size=$(docker image inspect -f '{{.Size}}' "$1")
    printf 'image %s: %d MB (%s bytes), base %d MB\n' "$1" $((size / 1000000)) "$size" \
        $(($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE") / 1000000))
    echo "  largest installed packages (MB):"
    docker run --rm --network none --entrypoint sh "$1" -c 'du -sm /opt/venv/lib/python3.11/site-packages/*' \
        | sort -rn | awk 'NR <= 8 {print "  " $0}'
}

started=$SECONDS
say "Docker engine"
timed dockerd start_dockerd
docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'
say "Compose v2"
timed compose fetch_compose
docker compose version
say "Stand-in base image"
BASE_IMAGE=lookalike-stand-in-base:bookworm-$(recipe_hash)
timed base-image ensure_base
say "docker build (BASE_IMAGE=$BASE_IMAGE TORCH_INDEX_URL=$TORCH_INDEX_URL)"
timed docker-build build_image
{ image_size "$IMAGE"; image_size "$INDEX_IMAGE"; } | tee "$OUT/image-size.txt"
say "compose stack (tests/deploy/compose_stack.py)"
export LOOKALIKE_DEPLOY_IMAGE=$IMAGE LOOKALIKE_DEPLOY_INDEX_IMAGE=$INDEX_IMAGE LOOKALIKE_DEPLOY_OUT=$OUT
timed stack "$PY" -m pytest -p no:cacheprovider -v tests/deploy/compose_stack.py
printf '%-28s %5d s\n' total $((SECONDS - started)) | tee -a "$OUT/timings.txt"
say "timings"
cat "$OUT/timings.txt" "$OUT/image-size.txt"
