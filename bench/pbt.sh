#!/usr/bin/env bash
# Population-based training against ASHA and random search on a real model, on loopback:
# config/examples/pbt_digits.py (a scikit-learn MLP on the digits, SGD with momentum, up to
# 20 epochs), tuning lr and alpha, on rungd and one rung-worker of 2 slots, warm runners.
# For each seed 1..RUNS, three experiments with the same objective and search space:
#   pbt     population 8, interval 2 epochs, every member to 20 epochs (160 epochs)
#   random  8 trials, each to 20 epochs (160 epochs)
#   asha    stop mode, eta 3, rungs at 2, 6 and 18 epochs, ASHA_TRIALS trials (default 20,
#           about 160 epochs; the epochs it actually trained are printed)
# Each prints the best validation error of the trials that completed all 20 epochs, the test
# error (on rows no search sees) of rung's best trial (rung show's best_trial_id, at its
# last report), the epochs trained (pbt: the sum of its members' segments; else the
# sum of the trials' resource_reached) and the wall time (submit to the end of rung watch).
# An experiment that has not ended after RUNG_PBT_LIMIT seconds (default 90; each takes 5 to
# 15 s here) is cancelled and counted as it stood (a guard: PBT once cycled, see
# bench/RESULTS.md). Then the medians over the seeds, and
# rung lineage of the best PBT member of the first seed (its learning-rate schedule), checked
# against the trace its downloaded checkpoint keeps (and the learning rate its optimizer holds).
#   bash bench/pbt.sh [BIN_DIR [RUNS [ASHA_TRIALS]]]     (default build, 5 runs, 20)
# Needs Debian's python3-sklearn (for /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(realpath "${1:-build}")
runs=${2:-5}
asha_trials=${3:-20}
limit=${RUNG_PBT_LIMIT:-90}
work=$(mktemp -d /tmp/rung-pbt-XXXXXX)
cleanup() { { pkill -KILL -P $$ || true; wait || true; } 2>/dev/null; [ -n "${RUNG_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
source bench/local_cluster.sh

# The binaries are copied first, so that a rebuild while this runs does not change them.
bin="$work/bin"
mkdir -p "$bin/server" "$bin/worker" "$bin/client"
cp "$src/server/rungd" "$bin/server/"
cp "$src/worker/rung-worker" "$bin/worker/"
cp "$src/client/rung" "$bin/client/"

bench_cluster "$work" 2
rung() { "$bin/client/rung" --addr "$addr" "$@"; }

echo "pbt: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(date -u +%Y-%m-%d), $runs runs"

# spec NAME ALGORITHM RESOURCE BUDGET: writes $work/NAME.yaml
spec() {
  cat >"$work/$1.yaml" <<YAML
name: digits-$1
objective: {metric: val_error, goal: minimize}
resource: $3
search_space:
  lr: {type: float, min: 1.0e-4, max: 0.5, log: true}
  alpha: {type: float, min: 1.0e-6, max: 1.0e-2, log: true}
algorithm: $2
budget: $4
trial:
  command: [/usr/bin/python3, $PWD/config/examples/pbt_digits.py]
  reuse_process: true
YAML
}

# run NAME SEED: submits $work/NAME.yaml and waits for it, at most $limit seconds (then it is
# cancelled and counted as "cancelled"); prints "ID BEST_FINAL TEST EPOCHS WALL NOTE"
# and keeps the trials in $work/NAME-SEED.json. EPOCHS: for pbt the sum over every member's
# segments (a member that takes the checkpoint of a donor behind it trains those epochs
# again), else the sum of the trials' resource_reached.
run() {
  local name=$1 seed=$2 id start end status=ended
  start=$(date +%s.%N)
  id=$(rung submit "$work/$name.yaml")
  if ! timeout "$limit" "$bin/client/rung" --addr "$addr" watch "$id" >"$work/$name-$seed.watch" 2>&1; then
    status=cancelled
    echo "$name seed $seed: $id had not ended after $limit s; rung cancel $id" >&2
    rung trials "$id" >&2 || true
    rung cancel "$id" >/dev/null || true
  fi
  end=$(date +%s.%N)
  rung -o json trials "$id" >"$work/$name-$seed.json"
  rung -o json show "$id" >"$work/$name-$seed.show.json"
  /usr/bin/python3 - "$id" "$start" "$end" "$status" "$work/$name-$seed.json" "$work/$name-$seed.show.json" <<'PY'
import json, sys
eid, start, end, status, path, show = sys.argv[1:7]
trials = json.load(open(path)).get("trials", [])
exp = json.load(open(show))
exp = exp.get("experiment", exp)
states = {}
for t in trials:
    states[t.get("state")] = states.get(t.get("state"), 0) + 1
if any(s not in ("TRIAL_COMPLETED", "TRIAL_STOPPED") for s in states):
    print(f"{eid}: trial states {states}", file=sys.stderr)
full = [t for t in trials if t.get("state") == "TRIAL_COMPLETED"
        and float(t.get("resource_reached", 0)) >= 20 and "result" in t]
final = min((t["result"] for t in full), default=float("nan"))
by_id = {t["id"]: t for t in trials}
best = by_id.get(exp.get("best_trial_id"), {}).get("last_metrics", {}).get("test_error", float("nan"))
if "best_value" in exp and full and abs(exp["best_value"] - final) > 1e-12:
    print(f"{eid}: rung's best_value {exp['best_value']} is not the best final error {final}",
          file=sys.stderr)
note_best = f"best_{exp.get('best_trial_id')}"
pbt = any(t.get("segments") for t in trials)
if pbt:
    epochs = sum(int(s["end"] - s.get("start", 0)) for t in trials for s in t["segments"]
                 if s.get("has_value"))
    exploits = sum(1 for t in trials for s in t["segments"] if s.get("parent_trial_id"))
    back = 0
    for t in trials:
        reached = 0
        for s in t["segments"]:
            back += s.get("start", 0) < reached
            reached = max(reached, s["end"])
    note = f"{note_best},_{len(trials)}_members,_{exploits}_exploits_({back}_to_an_earlier_epoch)"
else:
    epochs = sum(int(float(t.get("resource_reached", 0))) for t in trials)
    note = f"{note_best},_{len(trials)}_trials"
if status != "ended":
    note += f",_CANCELLED_({len(full)}_of_{len(trials)}_completed)"
print(f"{eid} {final:.4f} {float(best):.4f} {epochs} {float(end) - float(start):.1f} {note}")
PY
}

results="$work/results"
: >"$results"
for seed in $(seq 1 "$runs"); do
  spec pbt "{name: pbt, population: 8, interval: 2, seed: $seed}" "{metric: epoch, max: 20}" \
    "{max_concurrent: 2}"
  spec random "{name: random, seed: $seed}" "{metric: epoch, min: 1, max: 20}" \
    "{max_trials: 8, max_concurrent: 2}"
  spec asha "{name: asha, reduction_factor: 3, seed: $seed}" "{metric: epoch, min: 2, max: 20}" \
    "{max_trials: $asha_trials, max_concurrent: 2}"
  echo "seed $seed:  method  experiment  val error (20 epochs)  test error (best)  epochs  wall      notes"
  for name in pbt random asha; do
    read -r id final test epochs wall note < <(run "$name" "$seed")
    printf '          %-7s %-11s %-22s %-18s %-7s %-8s %s\n' "$name" "$id" "$final" "$test" \
      "$epochs" "${wall} s" "${note//_/ }"
    echo "$seed $name $id $final $test $epochs $wall $note" >>"$results"
    if [ "$name" = pbt ] && [ "$seed" = 1 ]; then lineage_id=$id; fi
  done
done

/usr/bin/python3 - "$results" <<'PY'
import math, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f"median over {len(set(r[0] for r in rows))} seeds:  method  val error (20 epochs)  "
      "test error (best)  epochs  wall")
for name in ("pbt", "random", "asha"):
    mine = [r for r in rows if r[1] == name]
    med = lambda i: statistics.median(float(r[i]) for r in mine if not math.isnan(float(r[i])))
    cancelled = sum("CANCELLED" in r[7] for r in mine)
    note = f"  ({cancelled} of {len(mine)} cancelled, counted as they stood)" if cancelled else ""
    print(f"                         {name:7s} {med(3):<22.4f} {med(4):<18.4f} {med(5):<7.0f} "
          f"{med(6):.1f} s{note}")
PY

echo "rung lineage $lineage_id (seed 1, pbt: the best member's model):"
rung lineage "$lineage_id" || true
best=$(rung -o json lineage "$lineage_id" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["trial_id"])' 2>/dev/null || true)
if [ -n "$best" ] && rung checkpoint "$best" "$work/best-ckpt" >/dev/null; then
  echo "its checkpoint ($best), as pbt_digits.py traced it: trial, epochs from, to, lr, alpha"
  /usr/bin/python3 - "$work/best-ckpt/model.pkl" <<'PY'
import pickle, sys
s = pickle.load(open(sys.argv[1], "rb"))
for who, a, b, lr, alpha in s["trace"]:
    print(f"  {who:8s} {a:3d} {b:3d}  lr {lr:.6g}  alpha {alpha:.6g}")
print(f"  the optimizer's learning rate now: {s['model']._optimizer.learning_rate:.6g}, "
      f"epoch {s['epoch']}")
PY
fi
