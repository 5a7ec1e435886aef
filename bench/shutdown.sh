#!/usr/bin/env bash
# How long rungd takes to exit after SIGTERM while it serves: a worker's stream (with a trial
# running), a `rung watch`, and an idle gRPC client connection (a Python client kept open).
# systemd's stop, Kubernetes' termination and scripts/quickstart.sh's cleanup wait on it.
#   bash bench/shutdown.sh [BIN_DIR [ROUNDS]]     (default build, 5 rounds)
# Prints each round's milliseconds from kill -TERM to rungd's exit, then min/median/max.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}
rounds=${2:-5}
work=$(mktemp -d /tmp/rung-shutdown-XXXXXX)
cleanup() { pkill -KILL -P $$ 2>/dev/null || true; [ -n "${RUNG_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

wait_for() {  # FILE TEXT: until FILE holds TEXT (10 s at most)
  for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "shutdown bench: '$2' never appeared in $1" >&2
  exit 1
}

cat >"$work/spec.yaml" <<'EOF'
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 1}
trial: {command: [sleep, "60"]}
EOF
times=()
for round in $(seq 1 "$rounds"); do
  d="$work/$round"
  mkdir -p "$d"
  "$bin/server/rungd" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --web-listen 127.0.0.1:0 --data-dir "$d/data" \
    >"$d/rungd.out" 2>"$d/rungd.log" &
  rungd=$!
  wait_for "$d/rungd.out" "listening on"
  addr=$(sed -n 's/.*listening on \([0-9.:]*\),.*/\1/p' "$d/rungd.out")
  "$bin/worker/rung-worker" --controller "$addr" --slots 1 --gpus none --name "bench-$round" \
    --work-dir "$d/worker" >/dev/null 2>"$d/worker.log" &
  wait_for "$d/worker.log" "registered with"
  "$bin/client/rung" --addr "$addr" submit "$work/spec.yaml" >/dev/null 2>&1
  wait_for "$d/worker.log" "started, pid"
  "$bin/client/rung" --addr "$addr" watch e1 >"$d/watch.out" 2>&1 &
  wait_for "$d/watch.out" "e1"
  /usr/bin/python3 -c "import grpc, sys, time
channel = grpc.insecure_channel(sys.argv[1]); grpc.channel_ready_future(channel).result(timeout=10)
print('connected', flush=True); time.sleep(120)" "$addr" >"$d/idle.out" 2>&1 &
  wait_for "$d/idle.out" "connected"
  start=$(date +%s%N)
  kill -TERM "$rungd"
  wait "$rungd" || true
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  times+=("$ms")
  echo "round $round: rungd exited ${ms} ms after SIGTERM"
  pkill -KILL -P $$ 2>/dev/null || true
  wait 2>/dev/null || true
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
echo "shutdown ($bin): min ${sorted[0]} ms, median ${sorted[$(( ${#sorted[@]} / 2 ))]} ms, max ${sorted[-1]} ms over $rounds rounds"
