#!/usr/bin/env bash
# Restart, memory and reads at a million trials (issue 18). bench/store_gen writes a data
# folder the way rungd does (TRIALS trials of random search with ASHA, about 37 reports of
# three metrics each, the last round still running, the last writes only in the write-ahead
# log, as a killed rungd leaves them); it is made once and kept in $RUNG_SCALE_DIR
# (/var/tmp/rung-scale). Each round copies it, starts rungd on the copy and measures:
#   - ms from the start until `rung ls` answers (and until rungd says it listens),
#   - rungd's resident memory then, and per ended trial,
#   - ms of `rung show e1`, `rung trials e1 --sort loss --top 10` and `rung best e1`
#     (medians of 5, the CLI's own start included),
# then kill -9 and a second start on the same folder, then SIGTERM and a clean start.
#   bash bench/scale.sh [TRIALS [ROUNDS]]     (default 1000000 trials, 1 round)
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-1000000}
rounds=${2:-1}
bin=${RUNG_BUILD_DIR:-build}
base=${RUNG_SCALE_DIR:-/var/tmp/rung-scale}/$trials
[ -n "${RUNG_NO_BUILD:-}" ] || bash scripts/build.sh >/dev/null
mkdir -p "$base"
if [ ! -f "$base/made" ]; then
  rm -rf "$base/pristine"
  echo "making the data folder ($trials trials) in $base/pristine ..."
  "$bin/bench/store_gen" --data-dir "$base/pristine" --trials "$trials" | tee "$base/made.tmp"
  mv "$base/made.tmp" "$base/made"
fi
echo "machine: $(nproc) cores, $(uname -srm); $(date -u +%F)"
echo "data folder: $(cat "$base/made"); $(du -sh "$base/pristine" | cut -f1) on disk"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

rungd=""
start() {  # LABEL: starts rungd on $run and prints its figures
  local t0 label=$1
  t0=$(date +%s%N)
  "$bin/server/rungd" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --web-listen 127.0.0.1:0 \
    --data-dir "$run" --log-level warning >"$work/rungd.out" 2>>"$work/rungd.log" &
  rungd=$!
  until grep -q "listening on" "$work/rungd.out" 2>/dev/null; do
    kill -0 "$rungd" 2>/dev/null || { echo "rungd exited:"; tail -5 "$work/rungd.log"; exit 1; }
    sleep 0.01
  done
  local listening
  listening=$(ms "$t0")
  addr=$(sed -n 's/.*listening on \([0-9.:]*\),.*/\1/p' "$work/rungd.out")
  until "$bin/client/rung" --addr "$addr" ls >/dev/null 2>&1; do sleep 0.01; done
  local serving rss
  serving=$(ms "$t0")
  rss=$(rss_kb "$rungd")
  echo "$label: listening after ${listening} ms, \`rung ls\` answers after ${serving} ms;" \
    "resident $((rss / 1024)) MiB, $((rss * 1024 / trials)) bytes per ended trial"
}
reads() {
  local name cmd t times
  for name in show trials best; do
    case $name in
      show) cmd=(show e1) ;;
      trials) cmd=(trials e1 --sort loss --top 10) ;;
      best) cmd=(best e1) ;;
    esac
    times=()
    for _ in 1 2 3 4 5; do
      t=$(date +%s%N)
      "$bin/client/rung" --addr "$addr" "${cmd[@]}" >/dev/null
      times+=("$(ms "$t")")
    done
    echo "  rung ${cmd[*]}: $(printf '%s\n' "${times[@]}" | median) ms (median of 5)"
  done
  t=$(date +%s%N)
  "$bin/client/rung" --addr "$addr" ls >/dev/null
  echo "  rung ls: $(ms "$t") ms; resident now $(($(rss_kb "$rungd") / 1024)) MiB"
}

for round in $(seq 1 "$rounds"); do
  work=$(mktemp -d "$base/round-XXXXXX")
  run=$work/data
  cp -a "$base/pristine" "$run"
  sync  # the copy's writeback is not rungd's start
  echo "round $round:"
  start "  after the generator's crash (write-ahead log to replay)"
  reads
  kill -KILL "$rungd"
  wait "$rungd" 2>/dev/null || true
  start "  after kill -9 of rungd"
  kill -TERM "$rungd"
  wait "$rungd" 2>/dev/null || true
  start "  after a clean stop"
  reads
  kill -TERM "$rungd"
  wait "$rungd" 2>/dev/null || true
  rm -rf "$work"
done
