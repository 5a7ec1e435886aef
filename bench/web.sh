#!/usr/bin/env bash
# The web page with a big experiment: N trials (default 10,000) of P reports each (default
# 100: a million points), run by a real rung-worker (each trial is an awk process printing its
# reports), then what the page asks of rungd and how long chromium takes to draw it
# (bench/web_page.mjs). The baseline is the same page's data without downsampling: every point
# (GetCurves with max_points 0).
#   bash bench/web.sh [BIN_DIR] [TRIALS] [REPORTS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}
trials=${2:-10000}
reports=${3:-100}
. bench/local_cluster.sh
work=$(mktemp -d /tmp/rung-web-bench-XXXXXX)
trap 'kill $worker_pid $rungd_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
bench_cluster "$work" 8
page=$(sed -n 's/.*page on \([^,]*\),.*/\1/p' "$work/rungd.out")
cat >"$work/spec.yaml" <<SPEC
name: web-bench
objective: {metric: loss, goal: minimize}
search_space:
  x: {type: float, min: 0.1, max: 10, log: true}
  depth: {type: int, min: 1, max: 8}
  opt: {type: categorical, values: [sgd, adam, rmsprop]}
algorithm: {name: random, seed: 1}
budget: {max_trials: $trials, max_concurrent: 8}
trial:
  command: [awk, -v, "x={x}", -v, "n=$reports", 'BEGIN { for (i = 1; i <= n; i++) printf "@rung {\"step\": %d, \"loss\": %.6f}\n", i, x * (1 + 3 / i) + 0.05 * sin(i) }']
SPEC
start=$(date +%s%N)
id=$("$bin/client/rung" --addr "$addr" submit "$work/spec.yaml")
"$bin/client/rung" --addr "$addr" watch "$id" >/dev/null
echo "web: $trials trials x $reports reports ran in $(( ($(date +%s%N) - start) / 1000000 )) ms"

api() {  # METHOD BODY: prints seconds and bytes of the answer (JSON; and gzipped, as sent)
  local plain gz
  plain=$(curl -sS -o "$work/answer" -w '%{http_code} %{time_total} s, %{size_download} bytes' -X POST \
    -H 'Content-Type: application/json' -d "$2" "${page}api/rung.v1.ExperimentService/$1")
  case $plain in 200*) ;; *) echo "web: $1 failed: $plain $(head -c 300 "$work/answer")" >&2; exit 1 ;; esac
  gz=$(curl -sS -o /dev/null -w '%{size_download}' -X POST -H 'Content-Type: application/json' \
    -H 'Accept-Encoding: gzip' -d "$2" "${page}api/rung.v1.ExperimentService/$1")
  echo "${plain#200 } ($gz gzipped)"
}
for i in 1 2 3; do
  echo "web: GetCurves max_points 200000 (the page's ask): $(api GetCurves "{\"experimentId\":\"$id\",\"maxPoints\":200000}")"
  echo "web: GetCurves max_points 0 (every point, the baseline): $(api GetCurves "{\"experimentId\":\"$id\",\"maxPoints\":0}")"
  echo "web: ListTrials: $(api ListTrials "{\"experimentId\":\"$id\"}")"
done
node bench/web_page.mjs "$page" "$id" "$trials"
