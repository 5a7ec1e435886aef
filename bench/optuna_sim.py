#!/usr/bin/python3
"""Optuna on rung's simulated cluster: the outside reference for bench/sim_bench.

Runs Optuna 3.1 (Debian's python3-optuna, hence /usr/bin/python3) with its RandomSampler and
its SuccessiveHalvingPruner or HyperbandPruner, through ask/tell, on the learning curves of
bench/curves.h (the same formulas, repeated here) and the same discrete-event model of K
workers: an epoch is an event, a worker that frees up asks for a trial at once.
Prints the same columns as sim_bench.
"""
import argparse
import heapq
import math
import statistics

import optuna

DIMS = 4
MAX_EPOCHS = 81


def floor_loss(x):
    center = (0.2, 0.7, 0.5, 0.35)
    weight = (1.0, 0.8, 0.6, 0.4)
    return 0.1 + sum(w * (xi - c) ** 2 for xi, c, w in zip(x, center, weight))


def noise(x, epoch):
    s = math.sin(12.9898 * x[0] + 78.233 * x[1] + 37.719 * x[2] + 4.581 * x[3] + 0.917 * epoch) * 43758.5453
    return 2 * (s - math.floor(s)) - 1


def mean_loss(x, epoch):
    a = 0.5 + 1.5 * x[3]
    b = 0.3 + 1.2 * x[0]
    return floor_loss(x) + a * epoch ** (-b)


def loss(x, epoch):
    return mean_loss(x, epoch) + 0.02 * noise(x, epoch) / math.sqrt(epoch)


def epoch_seconds(x):
    return 1.0 + 2.0 * x[1]


def simulate(pruner_name, seed, workers, horizon, target, reference):
    if pruner_name == "sha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    else:
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_EPOCHS, reduction_factor=3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner)
    events = []  # (time, worker)
    running = {}  # worker -> [trial, x, epoch]
    busy = 0.0
    created = 0
    best_observed = math.inf
    regret = None
    reached_at = None

    def start(worker, now):
        nonlocal created
        trial = study.ask()
        x = [trial.suggest_float(f"x{i}", 0, 1) for i in range(DIMS)]
        created += 1
        running[worker] = [trial, x, 0]
        heapq.heappush(events, (now + epoch_seconds(x), worker))

    for w in range(workers):
        start(w, 0.0)
    while events and events[0][0] <= horizon:
        now, w = heapq.heappop(events)
        trial, x, epoch = running[w]
        busy += epoch_seconds(x)
        epoch += 1
        running[w][2] = epoch
        value = loss(x, epoch)
        trial.report(value, epoch)
        if epoch >= MAX_EPOCHS:
            study.tell(trial, value)
            if value < best_observed:
                best_observed = value
                regret = mean_loss(x, MAX_EPOCHS) - reference
                if reached_at is None and regret <= target:
                    reached_at = now
            start(w, now)
        elif trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            start(w, now)
        else:
            heapq.heappush(events, (now + epoch_seconds(x), w))
    for t, w in events:
        busy += max(0.0, horizon - (t - epoch_seconds(running[w][1])))
    return busy / (workers * horizon), reached_at, created, regret


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--target", type=float, default=0.002)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--work", type=float, default=800000)
    ap.add_argument("--reference", type=float, required=True,
                    help="best expected loss at 81 epochs, as sim_bench prints it")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"optuna {optuna.__version__}: RandomSampler + pruner, ask/tell; target regret {args.target}; "
          f"median of {args.seeds} seeds; horizon = {args.work:.0f} worker-seconds / K")
    print(f"{'K':<6} {'method':<18} {'utilisation':>12} {'time-to-target':>16} {'trials':>10} {'end-regret':>12}")
    for k in args.workers:
        horizon = args.work / k
        for name in ("sha", "hyperband"):
            runs = [simulate(name, s, k, horizon, args.target, args.reference) for s in range(1, args.seeds + 1)]
            util = statistics.median(r[0] for r in runs)
            times = sorted(r[1] if r[1] is not None else math.inf for r in runs)
            t = times[len(times) // 2]
            trials = statistics.median(r[2] for r in runs)
            regrets = sorted(r[3] if r[3] is not None else math.inf for r in runs)
            missed = sum(r[1] is None for r in runs)
            print(f"{k:<6} {'optuna-' + name:<18} {100 * util:11.2f}% {('not reached' if t == math.inf else str(int(t))):>16} "
                  f"{trials:10.0f} {regrets[len(regrets) // 2]:12.4f}")
            if missed:
                print(f"{'':<6}   ({missed} of {args.seeds} seeds did not reach the target)")


if __name__ == "__main__":
    main()
