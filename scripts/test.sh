#!/usr/bin/env bash
# The README's test command: install what is missing, build, check the lock annotations with
# clang, run every test (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# gcc builds rung; clang checks its lock annotations (ABSL_GUARDED_BY and friends).
bash scripts/thread-safety.sh
cd "${RUNG_BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)"
