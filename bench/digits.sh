#!/usr/bin/env bash
# rung against Optuna on the same job: a scikit-learn MLP on the digits data, 4 parameters,
# up to 27 epochs, 2 slots, SECONDS of wall time. rung over warm runners
# (trial.reuse_process): TPE with ASHA (stop mode, eta 3, rungs 1, 3, 9), and ASHA alone
# (random sampling); in the first run also TPE with ASHA over fresh processes, for reference.
# Optuna: two processes, trials in-process, TPE with its successive-halving pruner
# (min_resource 1, reduction_factor 3), sharing a journal file (OPTUNA_STORAGE=sqlite: a
# SQLite study; RUNG_DIGITS_OPTUNA_ONLY=1: Optuna's runs alone). Each run prints the trials
# started, the best validation error (of trials that trained all 27 epochs, and at any
# epoch) and the epochs trained; then the medians.
#   bash bench/digits.sh [BIN_DIR [SECONDS [RUNS]]]     (default build, 150 s, 3 runs)
# Needs Debian's python3-sklearn and python3-optuna (deploy/install-deps.sh --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build}")
seconds=${2:-150}
runs=${3:-3}
work=$(mktemp -d /tmp/rung-digits-XXXXXX)
cleanup() { { pkill -KILL -P $$ || true; wait || true; } 2>/dev/null; [ -n "${RUNG_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

source bench/local_cluster.sh

# rung_run DIR REUSE SEED ALGORITHM: prints "STARTED FINAL BEST EPOCHS": trials started, the
# best error of those that trained all 27 epochs, the best error at any epoch, epochs trained.
rung_run() {
  local d=$1 reuse=$2 seed=$3 algorithm=$4
  bench_cluster "$d" 2
  cat >"$d/spec.yaml" <<YAML
name: digits
objective: {metric: error, goal: minimize}
resource: {metric: step, min: 1, max: 27}
search_space:
  hidden: {type: int, min: 16, max: 256}
  lr: {type: float, min: 1.0e-4, max: 0.3, log: true}
  alpha: {type: float, min: 1.0e-6, max: 0.1, log: true}
  batch: {type: int, min: 16, max: 128}
algorithm: $algorithm
budget: {max_trials: 1000000, max_concurrent: 2}
trial:
  command: [/usr/bin/python3, $PWD/bench/digits_trial.py]
  reuse_process: $reuse
YAML
  "$bin/client/rung" --addr "$addr" submit "$d/spec.yaml" >/dev/null
  sleep "$seconds"
  "$bin/client/rung" --addr "$addr" -o json trials e1 >"$d/trials.json"
  "$bin/client/rung" --addr "$addr" cancel e1 >/dev/null
  kill -TERM "$worker_pid" "$rungd_pid" 2>/dev/null || true
  wait "$worker_pid" "$rungd_pid" 2>/dev/null || true
  /usr/bin/python3 - "$d/trials.json" <<'PY'
import json, sys
trials = json.load(open(sys.argv[1])).get("trials", [])
started = [t for t in trials if int(t.get("started_unix_ms", 0)) > 0]
# Best of the trials that trained all 27 epochs, as Optuna's best_value; and at any epoch.
final = min((t["result"] for t in trials if t.get("state") == "TRIAL_COMPLETED"), default=1.0)
best = min((t["best_value"] for t in started if t.get("has_best_value")), default=1.0)
epochs = sum(int(float(t.get("resource_reached", 0))) for t in started)
print(f"{len(started)} {final:.6f} {best:.6f} {epochs}")
PY
}

# optuna_run DIR SEED: prints "STARTED FINAL BEST EPOCHS".
optuna_run() {
  local d=$1 seed=$2
  mkdir -p "$d"
  /usr/bin/python3 bench/digits_optuna.py "$d/optuna.log" --create
  /usr/bin/python3 bench/digits_optuna.py "$d/optuna.log" "$seconds" "$seed" &
  local a=$!
  /usr/bin/python3 bench/digits_optuna.py "$d/optuna.log" "$seconds" "$((seed + 1000))" &
  local b=$!
  wait "$a" "$b"
  /usr/bin/python3 bench/digits_optuna.py "$d/optuna.log" --summary
}

echo "digits: $(nproc) cores, ${seconds} s per run, $(date -u +%Y-%m-%d)"
results="$work/results"
: >"$results"
for run in $(seq 1 "$runs"); do
  if [ -n "${RUNG_DIGITS_OPTUNA_ONLY:-}" ]; then  # Optuna alone (e.g. OPTUNA_STORAGE=sqlite)
    read -r os of ob oe < <(optuna_run "$work/optuna-$run" "$run")
    echo "run $run: optuna TPE+SH, 2 processes   started $os trials; best error: 27 epochs $of, any epoch $ob; $oe epochs"
    continue
  fi
  tpe="{name: tpe, seed: $run, early_stopping: {rule: asha, reduction_factor: 3}}"
  asha="{name: asha, seed: $run, reduction_factor: 3}"
  read -r rs rf rb re < <(rung_run "$work/rung-$run" true "$run" "$tpe")
  echo "run $run: rung TPE+ASHA, warm runners  started $rs trials; best error: 27 epochs $rf, any epoch $rb; $re epochs"
  read -r as af ab ae < <(rung_run "$work/asha-$run" true "$run" "$asha")
  echo "run $run: rung ASHA, warm runners      started $as trials; best error: 27 epochs $af, any epoch $ab; $ae epochs"
  read -r os of ob oe < <(optuna_run "$work/optuna-$run" "$run")
  echo "run $run: optuna TPE+SH, 2 processes   started $os trials; best error: 27 epochs $of, any epoch $ob; $oe epochs"
  echo "$rs $rf $rb $as $af $ab $os $of $ob" >>"$results"
  if [ "$run" = 1 ] && [ -z "${RUNG_DIGITS_NO_COLD:-}" ]; then
    read -r cs cf cb ce < <(rung_run "$work/cold" false "$run" "$tpe")
    echo "run $run: rung TPE+ASHA, fresh processes started $cs trials; best error: 27 epochs $cf, any epoch $cb; $ce epochs"
  fi
done
[ -s "$results" ] || exit 0
/usr/bin/python3 - "$results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
for name, i in (("rung TPE+ASHA", 0), ("rung ASHA", 3), ("optuna TPE+SH", 6)):
    print(f"median of {len(rows)}, {name}: started {med(i):.0f} trials, best error "
          f"{med(i + 1):.4f} (any epoch {med(i + 2):.4f})")
PY
