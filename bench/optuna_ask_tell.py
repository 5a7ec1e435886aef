"""Optuna 3.1's ask and tell, the peer of bench/ask_tell_bench.cc: N trials on the same space
(x float in [0, 1], y int in [1, 8]), each asked, reported R times and told, in one process.

    /usr/bin/python3 bench/optuna_ask_tell.py [--trials N] [--reports R] [--storage inmemory|journal|sqlite]

inmemory keeps nothing; journal appends to a JournalFileStorage file (written, not fsynced);
sqlite is an SQLite file. Prints trials/s. Needs Debian's python3-optuna (/usr/bin/python3).
"""
import argparse
import os
import tempfile
import time

import optuna


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20000)
    ap.add_argument("--reports", type=int, default=1)
    ap.add_argument("--storage", default="inmemory", choices=["inmemory", "journal", "sqlite"])
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = tempfile.mkdtemp(prefix="optuna-ask-tell-")
    if args.storage == "journal":
        storage = optuna.storages.JournalStorage(
            optuna.storages.JournalFileStorage(os.path.join(folder, "journal.log")))
    elif args.storage == "sqlite":
        storage = f"sqlite:///{folder}/study.db"
    else:
        storage = None
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))
    space = {"x": optuna.distributions.FloatDistribution(0, 1),
             "y": optuna.distributions.IntDistribution(1, 8)}
    start = time.perf_counter()
    for _ in range(args.trials):
        t = study.ask(space)
        loss = t.params["x"] + t.params["y"]
        for step in range(1, args.reports + 1):
            t.report(loss + args.reports - step, step)
        study.tell(t, loss)
    seconds = time.perf_counter() - start
    print(f"optuna {optuna.__version__} ask/tell ({args.storage}): {args.trials} trials, "
          f"{args.reports} reports each, in {seconds:.2f} s; {args.trials / seconds:.0f} trials/s")


if __name__ == "__main__":
    main()
