#!/usr/bin/env bash
# Builds the container image of every bot from the repository's Dockerfile and checks each one as
# a user would (tests/tests/containers.rs: ping with NET_RAW, SNMP against a real snmpd, NetFlow
# from a replayed capture, the image's HEALTHCHECK, exit 0 on SIGTERM, a non-root user).
#
#   deploy/images.sh                     cargo inside the build (multi-stage, release profile)
#   deploy/images.sh --binaries DIR      runtime-only images from DIR/{pingbot,snmpbot,netflowbot}
#
# Options: --tag TAG (default latest), --no-pull (make the base images locally without trying a
# registry first), --bases-only (get or make the base images, then stop), --no-check (build
# only), --remove (remove the bots' images afterwards; the base images and the build cache stay).
# Uses docker when a docker daemon answers, podman otherwise. Images are grafolean-<bot>:TAG.
# When debian:bookworm-slim (or rust:1-slim-bookworm) cannot be pulled, it is made here: the base
# with debootstrap (Debian package `debootstrap`), the builder from the base, gcc, make and this
# machine's Rust toolchain.
set -euo pipefail

bots=(pingbot snmpbot netflowbot)
binaries=""
tag=latest
pull=1
check=1
remove=""
bases_only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binaries) case $2 in /*) binaries=$2 ;; *) binaries=$PWD/$2 ;; esac; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --no-pull) pull=""; shift ;;
        --no-check) check=""; shift ;;
        --bases-only) bases_only=1; shift ;;
        --remove) remove=1; shift ;;
        *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seconds() { date +%s; }
started=$(seconds)
step() { echo "== $(($(seconds) - started)) s: $*"; }

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
    build_options=()
    bot_build_options=()
else
    engine=podman
    # HEALTHCHECK exists only in the docker image format. Podman's default ulimits (1048576) may
    # exceed what the host allows: the host's own limits, for builds and containers (some kernels
    # also refuse an nproc limit above kernel.pid_max).
    nproc=$(ulimit -Hu)
    pid_max=$(cat /proc/sys/kernel/pid_max)
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
    ulimits=("nofile=$(ulimit -Hn):$(ulimit -Hn)" "nproc=$nproc:$nproc")
    build_options=(--format docker --ulimit "${ulimits[0]}" --ulimit "${ulimits[1]}")
    bot_build_options=()
    if [ -z "${CONTAINERS_CONF:-}" ]; then
        conf=$work/containers.conf
        {
            echo "[containers]"
            echo "default_ulimits = [\"${ulimits[0]}\", \"${ulimits[1]}\"]"
            # crun refuses hosts with hybrid cgroups where runc works.
            if command -v runc >/dev/null; then
                printf '[engine]\nruntime = "runc"\n'
            fi
        } >"$conf"
        export CONTAINERS_CONF=$conf
    fi
    # cargo inside the bots' build fetches crates: give it this machine's CA bundle (a TLS
    # proxy's CA).
    ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
    if [ -f "$ca_bundle" ]; then
        bot_build_options=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro")
    fi
fi
export CONTAINER_ENGINE=$engine

have_image() { "$engine" image inspect "$1" >/dev/null 2>&1; }
pulled() { [ -n "$pull" ] && "$engine" pull "$1" >/dev/null 2>&1; }

# debian:bookworm-slim made locally: debootstrap's minbase plus the slim image's dpkg and apt
# settings (no documentation, manuals or translations; no package cache).
make_base() {
    local root=$work/rootfs
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" ||
        { tail -20 "$work/debootstrap.log" >&2; return 1; }
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/* "$root"/var/cache/apt/* \
        "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root/etc/hostname" "$root/etc/resolv.conf"
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    : >"$root/etc/machine-id"
    tar -C "$root" -c . | "$engine" import - "$1" >/dev/null
    rm -rf "$root"
}

# An image FROM $1 named $2 with the Debian packages $3 and, with a 4th argument, this machine's
# Rust toolchain (`rustc --print sysroot`) in /usr/local.
derive_image() {
    local context=$work/context-$RANDOM
    mkdir "$context"
    if [ $# -gt 3 ]; then
        local sysroot
        sysroot=$(rustc --print sysroot)
        cp -al "$sysroot/bin" "$sysroot/lib" "$context/" 2>/dev/null ||
            cp -a "$sysroot/bin" "$sysroot/lib" "$context/"
    fi
    {
        echo "FROM $1"
        echo "RUN apt-get update && apt-get install -y --no-install-recommends $3 && rm -rf /var/lib/apt/lists/*"
        if [ $# -gt 3 ]; then
            echo "COPY . /usr/local/"
            echo "ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        fi
    } >"$context.Dockerfile"
    "$engine" build "${build_options[@]}" -t "$2" -f "$context.Dockerfile" "$context" >"$context.log" 2>&1 ||
        { tail -20 "$context.log" >&2; return 1; }
    rm -rf "$context"
}

base=debian:bookworm-slim
if ! have_image "$base" && ! pulled "$base"; then
    base=localhost/debian:bookworm-slim-debootstrap
    if ! have_image "$base"; then
        step "making $base with debootstrap"
        make_base "$base"
    fi
fi

# What the Dockerfile's binary stage needs besides cargo: strip and setcap.
binary_tools="binutils libcap2-bin"
if [ -n "$binaries" ]; then
    # Runtime-only: the binary stage runs on the base image with those tools.
    builder=localhost/${base#localhost/}-binutils-libcap
    if ! have_image "$builder"; then
        step "making $builder from $base"
        derive_image "$base" "$builder" "$binary_tools"
    fi
else
    builder=rust:1-slim-bookworm
    if ! have_image "$builder" && ! pulled "$builder"; then
        builder=localhost/rust:1-slim-bookworm-local
        if ! have_image "$builder"; then
            step "making $builder from $base and $(rustc --version)"
            derive_image "$base" "$builder" "ca-certificates gcc libc6-dev make $binary_tools" toolchain
        fi
    fi
fi
[ -z "$bases_only" ] || exit 0

if [ -n "$binaries" ]; then
    # The build context is only the binaries (Dockerfile: `prebuilt/` skips cargo).
    context=$work/context
    mkdir -p "$context/prebuilt"
    for bot in "${bots[@]}"; do
        [ -x "$binaries/$bot" ] || { echo "no executable $binaries/$bot" >&2; exit 1; }
        cp "$binaries/$bot" "$context/prebuilt/"
    done
else
    context=.
fi
for bot in "${bots[@]}"; do
    step "building grafolean-$bot:$tag ($engine, from ${binaries:-source})"
    "$engine" build "${build_options[@]}" "${bot_build_options[@]}" --quiet -f "$PWD/Dockerfile" --build-arg "BASE=$base" \
        --build-arg "BUILDER=$builder" --build-arg "BOT=$bot" -t "grafolean-$bot:$tag" "$context" >/dev/null
done
step "images built"
for bot in "${bots[@]}"; do
    "$engine" image inspect --format "grafolean-$bot:$tag {{.Size}}" "grafolean-$bot:$tag" |
        awk '{ printf "%s %.1f MB\n", $1, $2 / 1e6 }'
done

# docker-compose.example.yml as a user runs it: a copy with token files, the three bots up from
# these images (the Alertmanager image cannot be pulled where no registry is reachable), each
# container running and healthy by its HEALTHCHECK command, then down again.
check_compose() {
    local compose=$1 dir=$work/compose project=grafolean-images-check bot name healthy=""
    mkdir -p "$dir/secrets"
    cp docker-compose.example.yml "$dir/docker-compose.yml"
    cp alertmanager.example.yml "$dir/"
    for bot in ping snmp netflow; do echo "00000000-0000-4000-8000-000000000001" >"$dir/secrets/${bot}_token"; done
    (cd "$dir" && $compose -p "$project" up -d "${bots[@]}") >"$work/compose.log" 2>&1 ||
        { cat "$work/compose.log" >&2; return 1; }
    for _ in $(seq 60); do
        healthy=1
        for bot in "${bots[@]}"; do
            name=$("$engine" ps --filter "label=com.docker.compose.project=$project" \
                --filter "label=com.docker.compose.service=$bot" --format '{{.Names}}')
            [ -n "$name" ] && "$engine" exec "$name" /usr/local/bin/bot --health-check >/dev/null 2>&1 ||
                healthy=""
        done
        [ -z "$healthy" ] || break
        sleep 1
    done
    (cd "$dir" && $compose -p "$project" logs) >>"$work/compose.log" 2>&1 || true
    (cd "$dir" && $compose -p "$project" down -v) >>"$work/compose.log" 2>&1 || true
    [ -n "$healthy" ] || { cat "$work/compose.log" >&2; echo "compose: a bot is not healthy" >&2; return 1; }
}

if [ -n "$check" ]; then
    if [ "$tag" = latest ]; then
        compose=""
        if [ "$engine" = docker ] && docker compose version >/dev/null 2>&1; then
            compose="docker compose"
        elif [ "$engine" = podman ] && command -v podman-compose >/dev/null; then
            compose=podman-compose
        fi
        if [ -n "$compose" ]; then
            step "checking docker-compose.example.yml with $compose"
            check_compose "$compose"
        else
            step "no compose tool for $engine: docker-compose.example.yml checked by tests/tests/containers.rs only"
        fi
    fi
    # --workspace: the features the workspace's test build resolved, so its build is reused.
    step "checking the images (cargo test --workspace --test containers -- --ignored)"
    IMAGE_TAG=$tag cargo test -q --workspace --locked --test containers -- --ignored
    step "images checked"
fi

if [ -n "$remove" ]; then
    for bot in "${bots[@]}"; do "$engine" rmi "grafolean-$bot:$tag" >/dev/null; done
fi
