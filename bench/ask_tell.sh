#!/usr/bin/env bash
# Ask and tell against the peer, in one run (issue 18): rung's ask_tell_bench against a real
# rungd on loopback (every call durable: fsynced before it is answered), one call per
# operation with 4 clients and batched (ask for B trials, tell their reports and completions
# in one TellTrials call), beside Optuna 3.1 in memory and with its journal file, the same
# trials each (ask, one report, complete).
#   bash bench/ask_tell.sh [BIN_DIR [TRIALS [BATCH]]]     (default build, 20000, 100)
# Needs Debian's python3-optuna (for /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build}")
trials=${2:-20000}
batch=${3:-100}
echo "ask/tell: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(date +%F)"
"$bin/bench/ask_tell_bench" --bin-dir "$bin" --trials "$trials" --clients 4 --reports 1
"$bin/bench/ask_tell_bench" --bin-dir "$bin" --trials "$trials" --clients 1 --reports 1 --batch "$batch"
"$bin/bench/ask_tell_bench" --bin-dir "$bin" --trials "$trials" --clients 2 --reports 1 --batch "$batch"
/usr/bin/python3 bench/optuna_ask_tell.py --trials "$trials" --reports 1 --storage inmemory
/usr/bin/python3 bench/optuna_ask_tell.py --trials "$((trials / 10))" --reports 1 --storage journal 2>/dev/null
