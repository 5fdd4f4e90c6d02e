#!/usr/bin/env bash
# The container image, built and run for real (`make image-test`; `.ci/run` runs it after
# `make test`). No Docker engine is needed: Debian's podman builds the Dockerfile, and the
# image's filesystem is run with chroot(8), because running a container needs more than a CI
# sandbox may allow (crun setting rlimits).
#
#   1. a base image standing in for python:3.11-slim-bookworm (no Docker Hub here): Debian
#      minbase of the Dockerfile's suite with python3, python3-venv, python-is-python3 and
#      this machine's CA bundle (pip needs it), made by debootstrap from the machine's own
#      Debian mirror and cached as a podman tag keyed by its recipe;
#   2. `podman build` of a clean checkout (`git archive HEAD`: uncommitted files do not leak
#      in) with that base;
#   3. the image's configuration: USER 10001:10001, ENTRYPOINT/CMD, WORKDIR, ENV, HEALTHCHECK;
#   4. its filesystem (podman create + export): no tests, no .git, no build context, no pip
#      or setuptools in the venv, no pip, compiler, make or git on PATH, /data owned by 10001;
#   5. run as uid 10001 under `chroot --userspec`, with the image's ENV and /data writable:
#      `opswatch check-config` exits 0 with JSON; the daemon starts, runs as 10001, writes its
#      state under /data, answers /healthz 200 (and the image's own HEALTHCHECK command
#      passes), logs JSON lines, and exits 0 on SIGTERM.
#
# Needs root (podman's chroot isolation, chroot, mount). Installs podman and debootstrap
# with apt-get when they are missing. Exits non-zero with an "image-test: FAIL" line.
#
# Environment: OPSWATCH_IMAGE_TEST_MIRROR (Debian mirror; default: the one apt uses),
# OPSWATCH_IMAGE_TEST_REBUILD_BASE=1 (ignore the cached base), OPSWATCH_IMAGE_TEST_KEEP=1
# (keep the work directory and the image, for a look afterwards).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UID_GID=10001:10001
START=$SECONDS
WORK=""
ROOTFS=""
CONTAINER=""
IMAGE=""
DAEMON_PID=""
MOUNTS=()

log() { printf 'image-test: %s\n' "$*" >&2; }
fail() {
    printf 'image-test: FAIL: %s\n' "$*" >&2
    exit 1
}
phase() { log "[$((SECONDS - START))s] $*"; }

# ---------------------------------------------------------------------------- cleanup
mounted_under() { # the mount points at or below $1, deepest first
    awk -v dir="$1" '$2 == dir || index($2, dir "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

cleanup() {
    local status=$? point
    set +e
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -KILL "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null
    done
    if [[ -n $ROOTFS ]]; then
        while read -r point; do
            [[ -n $point ]] && { umount "$point" 2>/dev/null || umount -l "$point"; }
        done < <(mounted_under "$ROOTFS")
    fi
    [[ -n $CONTAINER ]] && podman rm --force "$CONTAINER" > /dev/null 2>&1
    if [[ ${OPSWATCH_IMAGE_TEST_KEEP:-0} == 1 ]]; then
        log "kept $WORK and $IMAGE"
    else
        [[ -n $IMAGE ]] && podman rmi "$IMAGE" > /dev/null 2>&1
        if [[ -n $WORK && -d $WORK ]]; then
            # Never delete through a mount (a bound /dev would lose the host's device nodes).
            if [[ -n $(mounted_under "$WORK") ]]; then
                printf 'image-test: still mounted under %s, not deleting it:\n%s\n' \
                    "$WORK" "$(mounted_under "$WORK")" >&2
                status=1
            else
                rm -rf --one-file-system "$WORK"
            fi
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------- prerequisites
[[ $(id -u) == 0 ]] || fail "needs root: podman builds with --isolation=chroot, and the image runs under chroot(8) with /proc and /dev mounted (run: sudo make image-test)"

missing=()
for pair in podman:podman debootstrap:debootstrap git:git chroot:coreutils \
    mount:mount python3:python3 tar:tar; do
    command -v "${pair%%:*}" > /dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    command -v apt-get > /dev/null || fail "missing ${missing[*]} and no apt-get to install them"
    phase "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q > /dev/null || fail "apt-get update failed"
    apt-get install -y -q "${missing[@]}" > /dev/null || fail "apt-get install ${missing[*]} failed"
fi

# The base stands in for the Dockerfile's default PYTHON_IMAGE (python:X.Y-slim-<suite>):
# the same Debian suite and Python minor version.
default_image=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/Dockerfile" | head -n 1)
[[ $default_image =~ ^python:([0-9]+\.[0-9]+)-slim-([a-z]+)$ ]] ||
    fail "cannot read the Python version and Debian suite from the Dockerfile's 'ARG PYTHON_IMAGE=$default_image' (expected python:X.Y-slim-<suite>)"
PY_VERSION=${BASH_REMATCH[1]}
SUITE=${BASH_REMATCH[2]}

# The mirror apt uses for that suite's main component (one-line and deb822 sources alike).
MIRROR=${OPSWATCH_IMAGE_TEST_MIRROR:-$(apt-cache policy 2> /dev/null |
    awk -v want="$SUITE/main" '$3 == want && $2 ~ /^https?:/ { print $2; exit }')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[[ -s $CA_BUNDLE ]] || fail "no CA bundle at $CA_BUNDLE (pip in the build needs one)"

WORK=$(mktemp -d /var/tmp/opswatch-image-test.XXXXXX)
chmod 0755 "$WORK"

# ---------------------------------------------------------------------------- 1. base image
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
RECIPE="v1 debootstrap --variant=minbase --include=$PACKAGES $SUITE python$PY_VERSION ca:$(sha256sum < "$CA_BUNDLE" | cut -c1-16)"
BASE=localhost/opswatch-image-test-base:$SUITE-$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
if [[ ${OPSWATCH_IMAGE_TEST_REBUILD_BASE:-0} != 1 ]] && podman image exists "$BASE"; then
    phase "base image $BASE (cached)"
else
    phase "building base image $BASE: debootstrap $SUITE from $MIRROR"
    base_root=$WORK/base
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$base_root" "$MIRROR" \
        > "$WORK/debootstrap.log" 2>&1 ||
        { tail -n 30 "$WORK/debootstrap.log" >&2; fail "debootstrap $SUITE from $MIRROR failed (log above)"; }
    got=$(chroot "$base_root" python -c 'import sys; print("%d.%d" % sys.version_info[:2])') ||
        fail "the base's python does not run"
    [[ $got == "$PY_VERSION" ]] ||
        fail "Debian $SUITE has Python $got, the Dockerfile's image has $PY_VERSION: choose the matching suite"
    install -m 0644 "$CA_BUNDLE" "$base_root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$base_root"/var/cache/apt/archives/*.deb "$base_root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$base_root" -c . | podman import --quiet - "$BASE" > /dev/null ||
        fail "podman import of the base image failed"
    rm -rf --one-file-system "$base_root"
fi

# ---------------------------------------------------------------------------- 2. build
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no) ]]; then
    log "warning: uncommitted changes are not part of this build; it tests commit $COMMIT"
fi
mkdir "$WORK/context"
git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$WORK/context"
IMAGE=localhost/opswatch-image-test:$COMMIT-$$
phase "podman build of commit $COMMIT (clean checkout) as $IMAGE"
podman build --isolation=chroot --network=host --pull=never --format=docker \
    --build-arg PYTHON_IMAGE="$BASE" --tag "$IMAGE" "$WORK/context" > "$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log" >&2; fail "podman build failed (log above)"; }

# ---------------------------------------------------------------------------- 3. config
phase "checking the image's configuration"
inspect() { podman image inspect --format "$1" "$IMAGE"; }
expect() { # what value expected
    [[ $2 == "$3" ]] || fail "the image's $1 is '$2', expected '$3'"
}
expect USER "$(inspect '{{.Config.User}}')" "$UID_GID"
expect ENTRYPOINT "$(inspect '{{json .Config.Entrypoint}}')" '["opswatch"]'
expect CMD "$(inspect '{{json .Config.Cmd}}')" '["run"]'
expect WORKDIR "$(inspect '{{.Config.WorkingDir}}')" /data
expect STOPSIGNAL "$(inspect '{{.Config.StopSignal}}')" SIGTERM
mapfile -t IMAGE_ENV < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
printf '%s\n' "${IMAGE_ENV[@]}" | grep -qx 'OPSWATCH_STATE_PATH=/data/opswatch.sqlite3' ||
    fail "the image's ENV does not put OPSWATCH_STATE_PATH under /data: ${IMAGE_ENV[*]}"
HEALTHCHECK=$(inspect '{{json .Config.Healthcheck.Test}}')
[[ $HEALTHCHECK == '["CMD",'*'/healthz'* ]] || fail "the image's HEALTHCHECK is $HEALTHCHECK"

# ---------------------------------------------------------------------------- 4. contents
phase "exporting the image's filesystem"
ROOTFS=$WORK/rootfs
mkdir "$ROOTFS"
CONTAINER=$(podman create --no-healthcheck "$IMAGE") || fail "podman create failed"
podman export "$CONTAINER" | tar --numeric-owner -xpf - -C "$ROOTFS" ||
    fail "podman export failed"
podman rm --force "$CONTAINER" > /dev/null
CONTAINER=""

phase "checking the image holds no tests or build tools"
# Any tests/ directory, .git or conftest.py, and any file named like one of our test modules.
ours=()
while read -r name; do
    ours+=(-o -name "$name")
done < <(find "$WORK/context/tests" -name 'test_*.py' -printf '%f\n' | sort -u)
found=$(cd "$ROOTFS" && find . -xdev \( -name tests -o -name .git -o -name conftest.py "${ours[@]}" \) \
    -print | head -n 20)
[[ -z $found ]] || fail "the image holds tests or a repository: $found"
[[ ! -e $ROOTFS/build ]] || fail "the build directory /build is in the final image"
venv=$ROOTFS/opt/opswatch
[[ -x $venv/bin/opswatch ]] || fail "no /opt/opswatch/bin/opswatch in the image"
found=$(find "$venv" \( -name 'pip' -o -name 'pip-*' -o -name 'pip3*' -o -name setuptools \
    -o -name 'setuptools-*' -o -name wheel -o -name 'wheel-*' \) -print | sed "s|^$ROOTFS||")
[[ -z $found ]] || fail "the runtime venv holds build tools: $found"
image_path=$(printf '%s\n' "${IMAGE_ENV[@]}" | sed -n 's/^PATH=//p')
IFS=: read -r -a path_dirs <<< "$image_path"
for tool in pip pip3 "pip$PY_VERSION" gcc cc c++ g++ make ld as git; do
    for dir in "${path_dirs[@]}"; do
        [[ ! -e $ROOTFS$dir/$tool ]] || fail "the image holds a build tool on its PATH: $dir/$tool"
    done
done
expect "/data owner:mode" "$(stat -c '%u:%g:%a' "$ROOTFS/data")" "${UID_GID}:750"

# ---------------------------------------------------------------------------- 5. run
bind() { # mount args... target (recorded for the cleanup)
    mount "$@" || fail "mount $* failed"
    MOUNTS+=("${!#}")
}
bind -t proc proc "$ROOTFS/proc"
bind --bind /dev "$ROOTFS/dev"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUN_ENV=(HOME=/data)
for item in "${IMAGE_ENV[@]}"; do
    [[ $item == OPSWATCH_API_LISTEN=* ]] || RUN_ENV+=("$item")
done
RUN_ENV+=("OPSWATCH_API_LISTEN=127.0.0.1:$PORT")
in_image() { # command... : run as the image's user, in its WORKDIR, with its ENV only
    chroot --userspec="$UID_GID" "$ROOTFS" /usr/bin/env -i -C /data "${RUN_ENV[@]}" "$@"
}

phase "opswatch check-config as uid ${UID_GID%%:*}"
status=0
in_image opswatch check-config > "$WORK/check-config.out" 2> "$WORK/check-config.err" || status=$?
((status == 0)) || { cat "$WORK/check-config.err" >&2; fail "opswatch check-config exited $status in the image"; }
python3 - "$WORK/check-config.out" << 'EOF' || fail "check-config did not print the configuration as JSON with the state under /data"
import json, sys
config = json.load(open(sys.argv[1], encoding="utf-8"))
assert config["state_path"] == "/data/opswatch.sqlite3", config["state_path"]
EOF

phase "opswatch run as uid ${UID_GID%%:*}, API on 127.0.0.1:$PORT"
# A simple command, not the function: $! is then the daemon itself (chroot and env exec it).
chroot --userspec="$UID_GID" "$ROOTFS" /usr/bin/env -i -C /data "${RUN_ENV[@]}" opswatch run \
    > "$WORK/run.out" 2> "$WORK/run.err" &
DAEMON_PID=$!
daemon_logs() { tail -n 20 "$WORK/run.out" "$WORK/run.err" >&2; }
healthz=""
for _ in $(seq 1 120); do
    kill -0 "$DAEMON_PID" 2>/dev/null || { daemon_logs; fail "the daemon exited before /healthz answered"; }
    healthz=$(python3 -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    print(answer.status)
' "http://127.0.0.1:$PORT/healthz" 2>/dev/null) && break
    sleep 0.5
done
[[ $healthz == 200 ]] || { daemon_logs; fail "/healthz did not answer 200 within 60 s (got '$healthz')"; }

ids=$(awk '/^(Uid|Gid):/ { print $1, $2, $3, $4, $5 }' "/proc/$DAEMON_PID/status")
expect "daemon's ids" "$ids" $'Uid: 10001 10001 10001 10001\nGid: 10001 10001 10001 10001'
expect "daemon's program" "$(tr '\0' ' ' < "/proc/$DAEMON_PID/cmdline")" \
    "/opt/opswatch/bin/python /opt/opswatch/bin/opswatch run "
expect "state file owner" "$(stat -c '%u:%g' "$ROOTFS/data/opswatch.sqlite3" 2>&1)" "$UID_GID"

# The image's own HEALTHCHECK command, pointed at this port.
mapfile -t probe < <(python3 -c '
import json, sys
test = json.loads(sys.argv[1])
assert test[0] == "CMD"
print("\n".join(arg.replace(":9184/", ":" + sys.argv[2] + "/") for arg in test[1:]))
' "$HEALTHCHECK" "$PORT")
in_image "${probe[@]}" || { daemon_logs; fail "the image's HEALTHCHECK command failed"; }

phase "SIGTERM"
kill -TERM "$DAEMON_PID"
status=0
for _ in $(seq 1 60); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.5
done
kill -0 "$DAEMON_PID" 2>/dev/null && { daemon_logs; fail "the daemon was still running 30 s after SIGTERM"; }
wait "$DAEMON_PID" || status=$?
DAEMON_PID=""
((status == 0)) || { daemon_logs; fail "the daemon exited $status on SIGTERM, expected 0"; }
python3 - "$WORK/run.out" << 'EOF' || { daemon_logs; fail "the daemon's stdout is not JSON lines from daemon_started to daemon_stopped"; }
import json, sys
events = [json.loads(line)["event"] for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
assert "daemon_started" in events and events[-1] == "daemon_stopped", events
EOF

phase "PASS: image of commit $COMMIT builds, runs as $UID_GID and holds no tests or build tools"
