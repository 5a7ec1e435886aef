#!/usr/bin/env bash
# Builds rung and runs the benchmarks under bench/ (not part of the tests), after installing
# their outside references (Debian's python3-optuna). Record what they print in
# bench/RESULTS.md with the machine and the date. Takes about 50 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh --bench
bash scripts/build.sh
bin=${RUNG_BUILD_DIR:-build}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -srm); $(date -u +%F)"
"$bin/bench/ingest_bench" --bin-dir "$bin"
"$bin/bench/dispatch_bench" --bin-dir "$bin"
"$bin/bench/stop_bench" --bin-dir "$bin" --source-dir .
"$bin/bench/ask_tell_bench" --bin-dir "$bin"
"$bin/bench/ask_tell_bench" --bin-dir "$bin" --algorithm tpe --trials 300
# Ask and tell at scale (issue 18): one call an operation and batched, beside Optuna in memory
# and with its journal, in one run.
bash bench/ask_tell.sh "$bin" 20000 100
"$bin/bench/suggest_bench"
# Search quality: rung's samplers, then Optuna's on the same functions (Debian's interpreter,
# which has python3-optuna). Both print each function at fixed points first: they must agree.
"$bin/bench/regret_bench" --check
/usr/bin/python3 bench/optuna_regret.py --check
"$bin/bench/regret_bench"
/usr/bin/python3 bench/optuna_regret.py
# The cluster simulation: rung's searchers, then at a smaller common setting beside Optuna's
# pruners (Optuna's in-memory ask/tell slows down as trials accumulate).
"$bin/bench/sim_bench" | tee /tmp/rung-sim.txt
reference=$(sed -n 's/.*best expected loss at 81 epochs \([0-9.]*\);.*/\1/p' /tmp/rung-sim.txt)
"$bin/bench/sim_bench" --seeds 2 --work 100000 --target 0.005
/usr/bin/python3 bench/optuna_sim.py --seeds 2 --work 100000 --target 0.005 --reference "$reference"
# Warm runners against fresh processes (a torch + scikit-learn trial), then the digits job
# beside Optuna (3 runs of 150 s of each system: about 25 minutes on its own).
bash bench/warm.sh "$bin" 40
bash bench/digits.sh "$bin" 150 3
# Model hopper mode (issue 15): the simulation of hopper, task and data parallelism at two
# model sizes, then the example on loopback beside task parallelism.
"$bin/bench/hopper_sim"
"$bin/bench/hopper_sim" --model-bytes 1e9
bash bench/hopper.sh "$bin" 6 3
# The web page (issue 16): a 10,000-trial experiment of a million points, what the page's calls
# cost rungd (downsampled, and every point), and how long chromium takes to draw the page.
bash deploy/install-deps.sh --test
bash bench/web.sh "$bin" 10000 100
# Population-based training (issue 17): pbt against ASHA and random search on the digits, the
# same epochs each, 10 seeds (about 3 minutes).
bash bench/pbt.sh "$bin" 10
# Per-trial overhead on 32 slots beside xargs (issue 18): 640 trials of 0.1 s and of 1 s, then
# 10,000 of 0.1 s (about 2 minutes).
bash bench/overhead.sh "$bin" 640 32
bash bench/overhead.sh "$bin" 10000 32 0.1
# A million trials (issue 18): restart, memory and reads; the data folder is written once
# (about 10 minutes) and kept in /var/tmp/rung-scale.
RUNG_BUILD_DIR="$bin" RUNG_NO_BUILD=1 bash bench/scale.sh 1000000
