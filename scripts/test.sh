#!/usr/bin/env bash
# The README's test command: install what is missing, build, run every test (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd "${RUNG_BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)"
