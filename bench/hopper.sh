#!/usr/bin/env bash
# Model hopper mode against task parallelism on loopback, with config/examples/hopper_train.py
# (scikit-learn MLPs on the digits): the same 8 configurations and epochs, on rungd and two
# workers of 2 slots each. Hopper: the training set in 4 partitions, 0,1 on one worker and
# 2,3 on the other, the models hopping through rungd. Task: each slot trains whole models
# over all 4 partitions. Prints each one's wall time (submit to completion), the checkpoint
# bytes moved through rungd (its /metrics), the units run and the mean accuracy reached.
#   bash bench/hopper.sh [BIN_DIR [EPOCHS [RUNS]]]     (default build, 6 epochs, 3 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build}")
epochs=${2:-6}
runs=${3:-3}
work=$(mktemp -d /tmp/rung-hopper-XXXXXX)
cleanup() { { pkill -KILL -P $$ || true; wait || true; } 2>/dev/null; [ -n "${RUNG_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
source bench/local_cluster.sh

"$bin/server/rungd" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --web-listen 127.0.0.1:0 --data-dir "$work/data" \
  >"$work/rungd.out" 2>"$work/rungd.log" &
wait_for "$work/rungd.out" "listening on"
addr=$(sed -n 's/.*listening on \([0-9.:]*\),.*/\1/p' "$work/rungd.out")
metrics=$(sed -n 's/.*metrics on \(http[^ ,]*\).*/\1/p' "$work/rungd.out")
for w in 1 2; do
  parts=$([ $w = 1 ] && echo 0,1 || echo 2,3)
  "$bin/worker/rung-worker" --controller "$addr" --slots 2 --gpus none --name "w$w" \
    --partitions "$parts" --work-dir "$work/w$w" >/dev/null 2>"$work/w$w.log" &
  wait_for "$work/w$w.log" "registered with"
done
rung() { "$bin/client/rung" --addr "$addr" "$@"; }
moved() {
  curl -s "$metrics" | awk '/^rung_checkpoint_bytes_moved_total/ {s += $2} END {printf "%d", s}'
}

for run in $(seq 1 "$runs"); do
  for mode in hopper task; do
    if [ $mode = hopper ]; then
      execution="execution: {mode: hopper, partitions: 4, epochs: $epochs}"
      env=""
    else
      execution="execution: workers"
      env="  env: {EPOCHS: \"$epochs\", PARTITIONS: \"4\"}"
    fi
    cat >"$work/$mode.yaml" <<YAML
name: bench-$mode
objective: {metric: accuracy, goal: maximize}
$execution
search_space:
  lr: {type: float, min: 0.001, max: 0.1, log: true}
  alpha: {type: float, min: 0.00001, max: 0.01, log: true}
  hidden: {type: categorical, values: ["32", "64", "128"]}
algorithm: {name: random, seed: $run}
budget: {max_trials: 8}
trial:
  command: [/usr/bin/python3, $PWD/config/examples/hopper_train.py]
  reuse_process: true
$env
YAML
    before=$(moved)
    start=$(date +%s.%N)
    id=$(rung submit "$work/$mode.yaml")
    rung watch "$id" >/dev/null
    end=$(date +%s.%N)
    after=$(moved)
    rung -o json trials "$id" >"$work/$mode.json"
    /usr/bin/python3 - "$mode" "$run" "$start" "$end" "$((after - before))" "$work/$mode.json" <<'PY'
import json, sys
mode, run, start, end, moved, path = sys.argv[1:7]
trials = json.load(open(path))["trials"]
runs = (f"{sum(len(t.get('hops', [])) for t in trials)} units" if mode == "hopper"
        else f"{len(trials)} whole trials")
acc = sum(t["result"] for t in trials) / len(trials)
print(f"{mode:6s} run {run}: {float(end) - float(start):7.2f} s wall, {int(moved) / 1e6:7.2f} MB "
      f"checkpoints moved, {runs}, mean accuracy {acc:.4f}")
PY
  done
done
