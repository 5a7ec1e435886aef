# Sourced by bench scripts: a rungd and one rung-worker on loopback, in a folder of their own.
#   bench_cluster DIR SLOTS     starts them (BIN_DIR in $bin); sets $addr, $rungd_pid, $worker_pid
#   wait_for FILE TEXT          until FILE holds TEXT (30 s at most), else exits
wait_for() {
  for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "$(basename "$0"): '$2' never appeared in $1" >&2
  exit 1
}

bench_cluster() {
  local d=$1 slots=$2
  mkdir -p "$d"
  "$bin/server/rungd" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --web-listen 127.0.0.1:0 --data-dir "$d/data" \
    >"$d/rungd.out" 2>"$d/rungd.log" &
  rungd_pid=$!
  wait_for "$d/rungd.out" "listening on"
  addr=$(sed -n 's/.*listening on \([0-9.:]*\),.*/\1/p' "$d/rungd.out")
  "$bin/worker/rung-worker" --controller "$addr" --slots "$slots" --gpus none --name bench \
    --work-dir "$d/worker" >/dev/null 2>"$d/worker.log" &
  worker_pid=$!
  wait_for "$d/worker.log" "registered with"
}
