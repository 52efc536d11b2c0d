#!/usr/bin/env bash
# Install what `make test` and `make demo` need; fast and silent when it is all there.
#   - Debian packages, only those missing: redis-server, prometheus (for promtool),
#     chromium (renders the backtest report in a test),
#     openjdk-17-jre-headless (only without a Java 17+), maven (only without mvn),
#     python3-venv (only if the venv module is missing). `apt-get update` first; sudo
#     when not root.
#   - .venv with Python 3.11+ and `pip install -e '.[dev]'` (again only when
#     pyproject.toml changed since the last install).
#   - The Kafka broker jars, fetched once with Maven into ~/.cache/fraudstream/kafka.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.installed"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

java_ok() {
    command -v java >/dev/null 2>&1 || return 1
    local version major
    # 'openjdk version "17.0.15" ...' or 'java version "1.8.0_392"'
    version=$(java -version 2>&1 | head -n1 | grep -o '"[0-9][^"]*"' | tr -d '"')
    major=${version%%.*}
    if [ "$major" = 1 ]; then major=${version#1.}; major=${major%%.*}; fi
    [ "${major:-0}" -ge 17 ] 2>/dev/null
}

find_python() {
    local py
    for py in python3.13 python3.12 python3.11 python3; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

install_packages() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    # Headless Chromium renders the backtest report in a test (a real browser, no driver).
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    java_ok || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
    local py
    if py=$(find_python) && [ ! -x "$VENV/bin/python" ] &&
        ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0

    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and no apt-get here; install them with your package manager"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}; run as root or install sudo"
        sudo=(sudo)
    fi
    say "installing ${missing[*]} (apt-get)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

make_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        local py
        py=$(find_python) || die "Python 3.11+ not found; apt-get install -y python3 python3-venv"
        say "creating $VENV with $("$py" --version)"
        "$py" -m venv "$VENV"
    fi
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
        say "pip install -e '.[dev]' into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e '.[dev]'
        echo "$want" >"$STAMP"
    fi
}

install_packages
make_venv
"$VENV/bin/fraudstream" stack fetch >/dev/null
say "ready ($("$VENV/bin/python" --version), $(java -version 2>&1 | head -n1), $(redis-server --version | cut -d' ' -f1-3))"
