#!/usr/bin/env bash
# Builds rung and runs the benchmarks under bench/ (not part of the tests). Record what they
# print in bench/RESULTS.md with the machine and the date.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bin=${RUNG_BUILD_DIR:-build}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -srm); $(date -u +%F)"
"$bin/bench/ingest_bench" --bin-dir "$bin" "$@"
"$bin/bench/dispatch_bench" --bin-dir "$bin"
