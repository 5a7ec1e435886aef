"""A stand-in training script for the quickstart: standard library only.

Its "loss" after each epoch decays toward the Branin function of (x1, x2), shifted a little
by lr, depth and act, so the search has a real optimum (Branin's minimum is 0.397887).
It reports through the rung module; run by hand it just prints.
"""
import argparse
import math
import os
import time

import rung


def branin(x1, x2):
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1 ** 2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--x1", type=float, required=True)
    ap.add_argument("--x2", type=float, required=True)
    # Under early stopping rung sets the budget to train to in RUNG_BUDGET.
    ap.add_argument("--epochs", type=int,
                    default=int(float(os.environ.get("RUNG_BUDGET", os.environ.get("EPOCHS", "5")))))
    ap.add_argument("--epoch-seconds", type=float, default=float(os.environ.get("EPOCH_SECONDS", "0.2")))
    args = ap.parse_args()
    p = rung.params()
    lr = p.get("lr", 1e-3)
    depth = p.get("depth", 4)
    penalty = 0.05 * abs(math.log10(lr) + 3) + 0.02 * abs(depth - 4) + {"relu": 0.0, "tanh": 0.03, "gelu": 0.01}.get(p.get("act"), 0)
    floor = branin(args.x1, args.x2) + penalty
    for epoch in range(1, args.epochs + 1):
        time.sleep(args.epoch_seconds)  # the "training"
        loss = floor * (1 + 2.0 / epoch)
        if epoch == args.epochs:
            loss = floor
        print(f"epoch {epoch}: loss {loss:.4f}", flush=True)
        if rung.report(step=epoch, loss=loss):
            print("rung asked us to stop", flush=True)
            return


if __name__ == "__main__":
    main()
