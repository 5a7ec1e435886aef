#!/usr/bin/env bash
# The README's first command: install what is missing, build, then run rungd, one worker and
# the quickstart experiment on loopback, print the best trial, and stop what it started.
# Data stays in .rung/ (the controller's RocksDB and the worker's trial folders and logs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bin=${RUNG_BUILD_DIR:-build}
data=.rung
mkdir -p "$data"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$bin/server/rungd" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --web-listen 127.0.0.1:0 --data-dir "$data/data" \
  >"$data/rungd.out" 2>"$data/rungd.log" &
pids+=($!)
# rungd prints "rungd: listening on HOST:PORT, metrics on URL, data in DIR" once it serves.
for _ in $(seq 100); do
  grep -q 'listening on' "$data/rungd.out" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$data/rungd.log" >&2; exit 1; }
  sleep 0.1
done
cat "$data/rungd.out"
export RUNG_ADDR=$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$data/rungd.out")
metrics=$(sed -n 's/.*metrics on \([^,]*\),.*/\1/p' "$data/rungd.out")

"$bin/worker/rung-worker" --controller "$RUNG_ADDR" --slots 4 --gpus none --name quickstart-worker \
  --work-dir "$data/worker" >/dev/null 2>"$data/worker.log" &
pids+=($!)
# Registered before the experiment comes, so that nothing waits (submit would say so).
for _ in $(seq 100); do
  grep -q 'registered with' "$data/worker.log" 2>/dev/null && break
  sleep 0.1
done

rung="$bin/client/rung"
id=$("$rung" submit config/examples/quickstart.yaml)
echo "submitted experiment $id (config/examples/quickstart.yaml): 20 random trials, 4 at a time"
"$rung" watch "$id"
echo
echo "top 3 trials:"
"$rung" best "$id" -n 3
echo
echo "a few figures from $metrics:"
curl -s "$metrics" | grep -E '^rung_(trials|metric_reports_received_total|workers_connected)' | grep -v ' 0$' || true
echo
echo "logs: .rung/rungd.log, .rung/worker.log, trial output under .rung/worker/trials/"
