#!/usr/bin/env bash
# Makes sure npm is there for the Grafana dashboard schema check. Not in
# install-deps.sh's list: where Node.js comes from NodeSource's package, that
# package already carries npm and conflicts with Debian's npm package, so
# asking apt for "npm" there would fail. Debian's own nodejs has no npm, and
# gets Debian's npm package here.
set -euo pipefail

if command -v npm >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: npm" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
