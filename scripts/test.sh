#!/usr/bin/env bash
# The README's test command: install what is missing, build, check the lock annotations and
# the layout with clang's tools, run every test (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh --test
bash scripts/build.sh
# gcc builds rung; clang checks its lock annotations (ABSL_GUARDED_BY and friends), and
# clang-format that the sources are laid out as .clang-format says.
bash scripts/thread-safety.sh
bash scripts/format.sh --check
cd "${RUNG_BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)"
