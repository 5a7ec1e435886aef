#!/usr/bin/env bash
# Installs what is missing and builds rung into build/ (or $RUNG_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
# The web page's packages (web/package-lock.json), which CMake builds into rungd.
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  npm ci --prefix web --no-audit --no-fund --loglevel=error
fi
build=${RUNG_BUILD_DIR:-build}
werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRUNG_WERROR=$werror >/dev/null
cmake --build "$build" -j "$(nproc)"
