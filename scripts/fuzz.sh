#!/usr/bin/env bash
# Fuzzes the spec parser and the controller's handling of worker messages with libFuzzer
# (clang, with AddressSanitizer and UndefinedBehaviorSanitizer) for SECONDS each (default 60).
# Not part of the tests. A crash leaves its input in build-fuzz/crashes/; turn it into a
# regression test before fixing it.
#   bash scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
bash deploy/install-deps.sh --fuzz
build=${RUNG_FUZZ_BUILD_DIR:-build-fuzz}
CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRUNG_FUZZ=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target spec_fuzz worker_message_fuzz
mkdir -p "$build/crashes" "$build/corpus/spec_fuzz" "$build/corpus/worker_message_fuzz"
cp config/examples/*.yaml "$build/corpus/spec_fuzz/"
echo "machine: $(nproc) cores, $(uname -srm); $(date -u +%F); $seconds s per target"
status=0
for target in spec_fuzz worker_message_fuzz; do
  # Leaks are reported by the tests under RUNG_SANITIZE; the fuzzers keep global state on purpose.
  ASAN_OPTIONS=detect_leaks=0 "$build/tests/$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$target-" "$build/corpus/$target" 2>"$build/$target.log" || status=1
  echo "$target: $(grep -E '^stat::number_of_executed_units' "$build/$target.log" | awk '{print $2}') executions," \
       "$(ls "$build/corpus/$target" | wc -l) corpus entries, $(ls "$build/crashes" | grep -c "^$target-" || true) crashes"
done
exit $status
