#!/usr/bin/python3
"""Optuna on rung's regret benchmark: the outside reference for bench/regret_bench.

Runs Optuna 3.1 (Debian's python3-optuna, hence /usr/bin/python3): TPESampler (multivariate,
constant liar, as the issue asks; also its default univariate form) and RandomSampler,
through ask/tell with 4 trials in flight: the oldest running trial reports, then one new
trial is asked for, the protocol of regret_bench. The functions repeat regret_bench.cc's
formulas; `--check` prints the same lines as `regret_bench --check`.
"""
import argparse
import collections
import math
import statistics
import time
import warnings

import optuna

PI = math.pi


def branin(x1, x2):
    b, c, r, s, t = 5.1 / (4 * PI * PI), 5 / PI, 6, 10, 1 / (8 * PI)
    return (x2 - b * x1 * x1 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


HART_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
HART_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
          [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]


def hartmann6(x):
    f = 0.0
    for alpha, a, p in zip([1.0, 1.2, 3.0, 3.2], HART_A, HART_P):
        f -= alpha * math.exp(-sum(aj * (xj - 1e-4 * pj) ** 2 for aj, xj, pj in zip(a, x, p)))
    return f


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def ackley(x):
    d = len(x)
    return (-20 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / d))
            - math.exp(sum(math.cos(2 * PI * v) for v in x) / d) + 20 + math.e)


def levy(x):
    w = [1 + (v - 1) / 4 for v in x]
    f = math.sin(PI * w[0]) ** 2
    for i in range(len(x) - 1):
        f += (w[i] - 1) ** 2 * (1 + 10 * math.sin(PI * w[i] + 1) ** 2)
    return f + (w[-1] - 1) ** 2 * (1 + math.sin(2 * PI * w[-1]) ** 2)


ACT = {"relu": 0.3, "tanh": 0.6, "gelu": 0.0, "elu": 0.15}


class Box:
    def __init__(self, d, lo, hi, f):
        self.d, self.lo, self.hi, self.f = d, lo, hi, f

    def __call__(self, s):
        return self.f([s.float(f"x{i}", self.lo, self.hi) for i in range(self.d)])


# Each problem evaluates through `s`, which either asks an Optuna trial or, for --check,
# returns fixed points of each range.
def branin_p(s):
    return branin(s.float("x0", -5, 10), s.float("x1", 0, 15))


def mixed_p(s):
    x = s.float("x", 0, 1)
    lr = s.float("lr", 1e-5, 1, log=True)
    layers = s.int("layers", 1, 12)
    act = s.cat("act", ["relu", "tanh", "gelu", "elu"])
    return (x - 0.3) ** 2 + 0.1 * (math.log10(lr) + 2.5) ** 2 + 0.02 * (layers - 7) ** 2 + ACT[act]


def conditional_p(s):
    if s.cat("optimizer", ["sgd", "adam"]) == "sgd":
        m = s.float("momentum", 0, 0.99)
        lr = s.float("lr_sgd", 1e-4, 1, log=True)
        return 0.1 + (m - 0.9) ** 2 + 0.1 * (math.log10(lr) + 1.5) ** 2
    b = s.float("beta1", 0.8, 0.999)
    lr = s.float("lr_adam", 1e-5, 1e-1, log=True)
    return 10 * (b - 0.95) ** 2 + 0.1 * (math.log10(lr) + 3) ** 2


PROBLEMS = [
    ("branin", branin_p, 0.397887357729739),
    ("hartmann6", Box(6, 0, 1, hartmann6), -3.32236801141551),
    ("rosenbrock5", Box(5, -5, 10, rosenbrock), 0.0),
    ("ackley10", Box(10, -32.768, 32.768, ackley), 0.0),
    ("levy8", Box(8, -10, 10, levy), 0.0),
    ("mixed", mixed_p, 0.0),
    ("conditional", conditional_p, 0.0),
]


class Ask:
    def __init__(self, trial):
        self.t = trial

    def float(self, name, lo, hi, log=False):
        return self.t.suggest_float(name, lo, hi, log=log)

    def int(self, name, lo, hi):
        return self.t.suggest_int(name, lo, hi)

    def cat(self, name, values):
        return self.t.suggest_categorical(name, values)


class Fixed:
    def __init__(self, where):
        self.w = where

    def float(self, name, lo, hi, log=False):
        if log:
            return math.exp(math.log(lo) + self.w * (math.log(hi) - math.log(lo)))
        return lo + self.w * (hi - lo)

    def int(self, name, lo, hi):
        return int(math.floor(lo + self.w * (hi - lo) + 0.5))

    def cat(self, name, values):
        return values[0]


def run(problem, minimum, sampler, evals, in_flight):
    study = optuna.create_study(sampler=sampler)
    running = collections.deque()
    for _ in range(in_flight):
        running.append(study.ask())
    best, out = math.inf, []
    while running:
        t = running.popleft()
        v = problem(Ask(t))
        study.tell(t, v)
        best = min(best, v)
        out.append(best - minimum)
        if len(out) + len(running) < evals:
            running.append(study.ask())
    return out


def quantile(v, q):
    v = sorted(v)
    pos = q * (len(v) - 1)
    i = int(pos)
    frac = pos - i
    return v[i] * (1 - frac) + v[i + 1] * frac if i + 1 < len(v) else v[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--evals", type=int, default=100)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--functions", nargs="*")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if a.check:
        for name, f, _ in PROBLEMS:
            print(f"check {name:<12} {f(Fixed(0)):.10g} {f(Fixed(0.5)):.10g} {f(Fixed(1)):.10g}")
        return
    samplers = [
        ("optuna-random", lambda seed: optuna.samplers.RandomSampler(seed=seed)),
        ("optuna-tpe", lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True)),
        ("optuna-tpe-mv", lambda seed: optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True)),
    ]
    print(f"{'function':<12} {'sampler':<14} {'evals':>6} {'median':>12} {'q25':>12} {'q75':>12} {'s/run':>10}")
    for name, f, minimum in PROBLEMS:
        if a.functions and name not in a.functions:
            continue
        for sname, make in samplers:
            t0 = time.time()
            runs = [run(f, minimum, make(seed), a.evals, a.in_flight) for seed in range(1, a.seeds + 1)]
            secs = (time.time() - t0) / a.seeds
            for at in (25, 50, 100):
                if at > a.evals:
                    continue
                r = [x[at - 1] for x in runs]
                print(f"{name:<12} {sname:<14} {at:>6} {quantile(r, 0.5):>12.4g} {quantile(r, 0.25):>12.4g} "
                      f"{quantile(r, 0.75):>12.4g} {secs:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
