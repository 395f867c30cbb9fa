#!/usr/bin/env bash
# Installs what `make demo`, `make test` and `make docs` need on a fresh Debian machine of this
# kind: Debian packages (only the missing ones), then the project and its test tools in .venv.
# `docs` needs no Debian package: the project and mkdocs-material (the site's hook reads the
# code's tables).
# Usage: scripts/install-deps.sh [runtime|test|docs]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"

apt_packages=(zstd postgresql postgresql-client)
if [ "$what" = docs ]; then apt_packages=(); fi
if [ "$what" = test ]; then
  # prometheus: promtool, which checks and unit-tests deploy/monitoring/'s alert rules
  apt_packages+=(age prometheus-pushgateway prometheus)
  # jq and an `aws` CLI: README's by-hand restore of a directory-format backup, which a test runs
  apt_packages+=(jq)
  # pgbouncer: the tests put a real one in front of a test cluster (transaction and session pools)
  apt_packages+=(pgbouncer)
  command -v aws >/dev/null 2>&1 || apt_packages+=(awscli)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# Installed already, from this pyproject.toml? Then nothing to do (make demo runs this every
# time; the install is editable, so a change to the code needs no new install, only a change to
# pyproject.toml). The stamp lives in .venv: a new venv installs again. The test extra holds the
# docs extra and the docs extra the project itself, so a stamp of a larger set does too.
pyproject_sum="$(sha256sum pyproject.toml | cut -d' ' -f1)"
installed() {
  for set in "$@"; do
    [ "$(cat ".venv/.installed-$set" 2>/dev/null)" = "$pyproject_sum" ] && return 0
  done
  return 1
}
stamp() { echo "$pyproject_sum" >".venv/.installed-$what"; }

if [ "$what" = test ]; then
  # the test extra includes the docs extra: tests/test_docs.py builds the site
  installed test || { .venv/bin/pip install -q -e '.[test]' && stamp; }
  # Azurite (Azure Blob Storage's local server) for the azure:// tests, from npm into .venv;
  # tests start it with --disableTelemetry (tests/fixtures/clouds.py).
  if [ ! -x .venv/azurite/node_modules/.bin/azurite-blob ]; then
    command -v npm >/dev/null 2>&1 || { echo "install-deps: npm (Node.js 18+) is needed for Azurite" >&2; exit 1; }
    npm install --prefix .venv/azurite --no-audit --no-fund --loglevel=error azurite@3.35.0
  fi
elif [ "$what" = docs ]; then
  installed docs test || { .venv/bin/pip install -q -e '.[docs]' && stamp; }
else
  installed runtime docs test || { .venv/bin/pip install -q -e . && stamp; }
fi
