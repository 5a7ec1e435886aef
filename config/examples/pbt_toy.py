"""The toy problem of the PBT paper (Jaderberg et al., 2017, section 4.1) as a rung trial.

theta = (theta0, theta1) climbs the surrogate Q^(theta|h) = 1.2 - (h0 theta0^2 + h1 theta1^2)
by gradient steps; its true score is Q(theta) = 1.2 - (theta0^2 + theta1^2), at most 1.2. The
hyperparameters h weigh the coordinates: with h = (1, 0) only theta0 shrinks. Population-based
training copies theta from the better member and changes h as it goes, and so shrinks both.

What every PBT training script does, each segment:
  1. load the checkpoint in RUNG_CHECKPOINT_DIR if there is one (it may be another member's),
  2. read the parameters afresh (rung.params(), RUNG_PARAMS): they may have changed,
  3. train from the checkpoint's step to RUNG_BUDGET, reporting the objective with the step,
  4. save the checkpoint.
The checkpoint also carries the trace of who trained which steps, so the lineage can be checked.
It runs in a warm runner too (trial: {reuse_process: true}). Standard library only.
"""
import json
import os

import rung

STEP = 0.05  # the gradient step


def hyperparameters(p):
    if "h" in p:  # categorical, "1,0"
        return [float(v) for v in str(p["h"]).split(",")]
    return [float(p["h0"]), float(p["h1"])]


def segment():
    h = hyperparameters(rung.params())
    ckpt = os.environ.get("RUNG_CHECKPOINT_DIR", "")
    path = os.path.join(ckpt, "theta.json") if ckpt else ""
    state = {"step": 0, "theta": [0.9, 0.9], "trace": []}
    if path and os.path.exists(path):
        with open(path) as f:
            state = json.load(f)
    budget = int(float(os.environ.get("RUNG_BUDGET", "40")))
    start = state["step"]
    theta = state["theta"]
    for step in range(start + 1, budget + 1):
        theta = [t - STEP * 2 * hk * t for t, hk in zip(theta, h)]
        q = 1.2 - (theta[0] ** 2 + theta[1] ** 2)
        if rung.report(step=step, Q=q):
            break
    state = {"step": step if budget > start else start, "theta": theta,
             "trace": state["trace"] + [[os.environ.get("RUNG_TRIAL_ID", ""), start, budget, h]]}
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    # One segment a process, or, with trial: {reuse_process: true}, one after another in a
    # warm runner (whose environment rung sets afresh for each).
    for _ in rung.trials():
        segment()
