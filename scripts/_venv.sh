# Sourced by scripts/up and scripts/test: make .venv with Python >= 3.11 and install a requirements file
# into it, again only when the file changed.
ensure_venv() {
  local requirements="$1" python stamp
  if [ ! -x .venv/bin/python ]; then
    python=""
    for candidate in python3.11 python3.12 python3.13 python3; do
      if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"
        break
      fi
    done
    if [ -z "$python" ]; then
      echo "Python 3.11 or newer is needed (Debian/Ubuntu: apt-get install python3 python3-venv)." >&2
      exit 1
    fi
    echo "Creating .venv with $python"
    "$python" -m venv .venv
  fi
  stamp=".venv/.installed-$(cat "$requirements" requirements.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "Installing $requirements into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    touch "$stamp"
  fi
}

ensure_redis_server_binary() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "${CI:-}" = "true" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing redis-server (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }
    return 0
  fi
  cat >&2 <<'MSG'
redis-server is not installed, and the tests start Redis servers of their own.
Install it:  Debian/Ubuntu: sudo apt-get install redis-server   macOS: brew install redis
MSG
  exit 1
}

# The dashboard's browser tests drive Debian's chromium through Playwright, which never downloads a
# browser of its own. CI installs it; elsewhere the browser tests are skipped without it.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "${CI:-}" = "true" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing chromium (apt-get) for the dashboard's browser tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } ||
      echo "chromium could not be installed: the dashboard's browser tests will be skipped" >&2
    return 0
  fi
  echo "chromium is not installed, so the dashboard's browser tests will be skipped." >&2
  echo "To run them:  Debian/Ubuntu: sudo apt-get install chromium" >&2
}

# tests/cluster builds hosts as network namespaces with iproute2's `ip` (root only). CI installs it, and
# there the suite fails rather than skips without it; elsewhere it is skipped, saying why.
ensure_iproute2() {
  command -v ip >/dev/null 2>&1 && return 0
  if [ "${CI:-}" = "true" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing iproute2 (apt-get) for the cluster tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null; }
    return 0
  fi
  echo "iproute2 (ip) is not installed, so the cluster tests (tests/cluster) will be skipped." >&2
}

# tests/test_third_party_client.py drives kling-api, a Kling client for Node, pinned with its dependencies
# in tests/third_party_client/package-lock.json: installed here, before the run, so the tests themselves
# contact only loopback; again only when the lock file changed. CI installs node and npm if missing.
ensure_node_client() {
  local dir=tests/third_party_client stamp
  if ! command -v npm >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "Installing nodejs and npm (apt-get) for the third-party client test"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null; }
    else
      echo "npm is not installed, so the third-party client test will be skipped." >&2
      echo "To run it:  Debian/Ubuntu: sudo apt-get install nodejs npm" >&2
      return 0
    fi
  fi
  stamp="$dir/node_modules/.installed-$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "Installing $dir's Node packages (npm ci)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$stamp"
}
