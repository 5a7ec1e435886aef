#!/usr/bin/env bash
# The crash soak: the fault harness of tests/integration/fault_test.cc at soak strength.
# Each round runs a TPE + ASHA experiment of RUNG_FAULT_TRIALS (default 120) real trial
# processes on three workers while rungd is killed with SIGKILL RUNG_FAULT_KILLS times
# (default 20) at random moments and a worker every fifth kill, then checks every trial,
# launch and metric point and replays the searcher's journal. Rounds use seeds 1..ROUNDS.
#   bash bench/soak.sh [ROUNDS]     (default 5; about 10 s a round on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bash scripts/build.sh
bin=${RUNG_BUILD_DIR:-build}
export RUNG_FAULT_KILLS=${RUNG_FAULT_KILLS:-20} RUNG_FAULT_TRIALS=${RUNG_FAULT_TRIALS:-120}
echo "machine: $(nproc) cores, $(uname -srm); $(date -u +%F)"
for seed in $(seq 1 "$rounds"); do
  RUNG_FAULT_SEED=$seed "$bin/tests/fault_test" --gtest_brief=1 | grep -E '^fault test: survived|Failure|FAILED' || {
    echo "soak round $seed failed; rerun: RUNG_FAULT_SEED=$seed $bin/tests/fault_test"
    exit 1
  }
done
echo "soak: $rounds rounds passed"
