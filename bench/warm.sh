#!/usr/bin/env bash
# Per-trial overhead of a fresh process against a warm runner (trial.reuse_process), for a
# Python trial that imports torch and loads scikit-learn's digits, on CPU with 2 slots:
# trials per second, and the time from a slot freeing (rungd's record of the previous trial's
# end) to the next trial's first report on that slot (median).
#   bash bench/warm.sh [BIN_DIR [TRIALS]]     (default build, 40 trials)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build}")
trials=${2:-40}
work=$(mktemp -d /tmp/rung-warm-XXXXXX)
cleanup() { { pkill -KILL -P $$ || true; wait || true; } 2>/dev/null; [ -n "${RUNG_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

source bench/local_cluster.sh
bench_cluster "$work" 2
rung() { "$bin/client/rung" --addr "$addr" "$@"; }

for mode in cold warm; do
  reuse=false
  [ "$mode" = warm ] && reuse=true
  cat >"$work/$mode.yaml" <<YAML
name: overhead-$mode
objective: {metric: loss, goal: minimize}
search_space: {lr: {type: float, min: 0.01, max: 1, log: true}}
algorithm: {name: random, seed: 1}
budget: {max_trials: $trials, max_concurrent: 2}
trial:
  command: [/usr/bin/python3, $PWD/bench/overhead_trial.py]
  reuse_process: $reuse
YAML
  start=$(date +%s.%N)
  id=$(rung submit "$work/$mode.yaml")
  rung watch "$id" >/dev/null
  end=$(date +%s.%N)
  rung -o json trials "$id" >"$work/$mode.json"
  /usr/bin/python3 - "$mode" "$trials" "$start" "$end" "$work/$mode.json" <<'PY'
import json, statistics, sys
mode, n, start, end, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
doc = json.load(open(path))
trials = doc["trials"] if isinstance(doc, dict) else doc
done = [t for t in trials if t.get("state") == "TRIAL_COMPLETED"]
assert len(done) == n, f"{mode}: {len(done)} of {n} trials completed"
pids = {t.get("pid") for t in done}
# On each slot, the gap from one trial's end to the next one's first report.
by_slot = {}
for t in done:
    by_slot.setdefault(tuple(t.get("slots", [])), []).append(t)
gaps = []
for ts in by_slot.values():
    ts.sort(key=lambda t: float(t["last_metrics"]["at"]))
    for a, b in zip(ts, ts[1:]):
        gaps.append(float(b["last_metrics"]["at"]) - int(a["exited_unix_us"]) / 1e6)
wall = end - start
print(f"{mode}: {n} trials in {wall:.1f} s = {n / wall:.2f} trials/s on 2 slots; "
      f"slot free -> next first report: median {statistics.median(gaps) * 1000:.0f} ms "
      f"(min {min(gaps) * 1000:.0f}, max {max(gaps) * 1000:.0f}); {len(pids)} processes")
PY
done
