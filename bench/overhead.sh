#!/usr/bin/env bash
# Per-trial overhead on worker slots (issue 18), against the floor of starting the same
# processes with `xargs -P SLOTS`, in one run: N trials of `sleep D` (and one @rung report)
# on SLOTS slots of one rung-worker, for D = 0.1 and 1. For each it prints the wall time, the
# overhead a trial a slot ((wall - N * D / SLOTS) * SLOTS / N: the time a slot spends on
# anything but sleeping, per trial), and the gap from a trial's process exit to the next
# trial's start on the same slot (p50, p99), from rungd's records.
#   bash bench/overhead.sh [BIN_DIR [TRIALS [SLOTS [DURATIONS]]]]
#   (default build, 640, 32, "0.1 1")
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build}")
trials=${2:-640}
slots=${3:-32}
durations=${4:-0.1 1}
work=$(mktemp -d /tmp/rung-overhead-XXXXXX)
cleanup() { { pkill -KILL -P $$ || true; wait || true; } 2>/dev/null; [ -n "${RUNG_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

source bench/local_cluster.sh
bench_cluster "$work" "$slots"
rung() { "$bin/client/rung" --addr "$addr" "$@"; }
echo "overhead: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(date +%F); $trials trials on $slots slots"

for d in $durations; do
  # The floor: the same processes, started by xargs as fast as it can.
  start=$(date +%s.%N)
  seq "$trials" | xargs -P "$slots" -I{} sh -c "sleep $d; echo '@rung {\"loss\": 1}' >/dev/null"
  end=$(date +%s.%N)
  /usr/bin/python3 -c "
n, s, d, wall = $trials, $slots, $d, $end - $start
print(f'xargs -P{s}, sleep {d}: {wall:.2f} s; {(wall - n * d / s) * s / n * 1000:.1f} ms a trial a slot')"

  cat >"$work/sleep-$d.yaml" <<YAML
name: overhead-sleep-$d
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: {name: random, seed: 1}
budget: {max_trials: $trials, max_concurrent: $slots}
trial:
  command: [sh, -c, "sleep $d; echo '@rung {\"loss\": {x}}'"]
YAML
  start=$(date +%s.%N)
  id=$(rung submit "$work/sleep-$d.yaml")
  rung watch "$id" >/dev/null
  end=$(date +%s.%N)
  rung -o json trials "$id" >"$work/sleep-$d.json"
  /usr/bin/python3 - "$trials" "$slots" "$d" "$start" "$end" "$work/sleep-$d.json" <<'PY'
import json, sys
n, s, d = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
start, end = float(sys.argv[4]), float(sys.argv[5])
doc = json.load(open(sys.argv[6]))
trials = doc["trials"] if isinstance(doc, dict) else doc
done = [t for t in trials if t.get("state") == "TRIAL_COMPLETED"]
assert len(done) == n, f"{len(done)} of {n} trials completed"
by_slot = {}
for t in done:
    by_slot.setdefault((t.get("worker_id"), tuple(t.get("slots", []))), []).append(t)
gaps = []
for ts in by_slot.values():
    ts.sort(key=lambda t: int(t["started_unix_ms"]))
    for a, b in zip(ts, ts[1:]):
        gaps.append(int(b["started_unix_ms"]) - int(a["exited_unix_us"]) / 1000)
gaps.sort()
wall = end - start
pct = lambda q: gaps[min(len(gaps) - 1, int(q * len(gaps)))]
print(f"rung, sleep {d}: {wall:.2f} s ({(wall / (n * d / s) - 1) * 100:.1f}% over the minimum); "
      f"{(wall - n * d / s) * s / n * 1000:.1f} ms a trial a slot; "
      f"slot free -> next start: p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms")
PY
done
