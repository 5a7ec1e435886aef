"""Population-based training on a real model: an MLP on scikit-learn's digits, as a rung trial.

The model is a scikit-learn MLPClassifier (one hidden layer of 64, SGD with momentum 0.9,
minibatches of 32) on the digits (1797 images of 8x8; a fixed split, stratified, random_state
0: 60% to train, 20% to validate, 20% held out; features standardised on the training rows).
It trains one epoch at a time with partial_fit and reports, with `epoch`, `val_error` (1 -
validation accuracy: the objective, which the search sees and selects on) and `test_error`
(on the held-out rows, which no search looks at, so that the model a search picks can be
judged without the optimism of having been picked on the validation rows). Its parameters:
`lr` (the SGD learning rate) and `alpha` (the L2 penalty); `momentum` if given.
bench/pbt.sh runs it under pbt, asha and random search.

What every PBT training script must do, each segment (a segment is one run of the loop body
below, from the epoch its checkpoint reached to RUNG_BUDGET):
  1. load the checkpoint in RUNG_CHECKPOINT_DIR if there is one. It may be another member's:
     when a member exploits, rung puts the donor's checkpoint there;
  2. read the parameters afresh (trial.params / rung.params()): explore may have changed them,
     and they must take effect on the loaded model. Here that means the live optimizer too:
     sklearn's SGDOptimizer keeps its own copy of the learning rate (`_optimizer.learning_rate`,
     used by every update) beside the estimator's `learning_rate_init`, and its own
     `momentum`. Setting only `learning_rate_init` on a loaded model would change nothing;
  3. train from the checkpoint's epoch up to int(float(RUNG_BUDGET)) epochs, reporting the
     objective with the resource (epoch) after each one;
  4. save the checkpoint (model and the epoch it reached) atomically: a temporary file, then
     os.replace, so that a segment killed half-way leaves the last whole checkpoint.
Without RUNG_CHECKPOINT_DIR (by hand, or a search without checkpoints) it trains from scratch
and saves nothing. Run by hand, e.g.
    RUNG_BUDGET=20 RUNG_PARAMS='{"lr": 0.05, "alpha": 1e-4}' python3 pbt_digits.py
it prints each epoch's errors.

Under trial: {reuse_process: true} one process runs trial after trial (rung.trials()), so the
imports and the data are paid for once. Needs Debian's python3-sklearn (for /usr/bin/python3).
"""
import os
import pickle
import sys
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

HIDDEN = 64
BATCH = 32
MOMENTUM = 0.9
CLASSES = np.arange(10)

_data = {}


def dataset():
    """(x_train, y_train), (x_val, y_val), (x_test, y_test): the same split in every process."""
    if "split" not in _data:
        x, y = load_digits(return_X_y=True)
        x_train, x_rest, y_train, y_rest = train_test_split(
            x, y, test_size=0.4, random_state=0, stratify=y)
        x_val, x_test, y_val, y_test = train_test_split(
            x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
        scaler = StandardScaler().fit(x_train)
        _data["split"] = ((scaler.transform(x_train), y_train), (scaler.transform(x_val), y_val),
                          (scaler.transform(x_test), y_test))
    return _data["split"]


def new_model(p):
    return MLPClassifier(hidden_layer_sizes=(HIDDEN,), solver="sgd", learning_rate="constant",
                         learning_rate_init=float(p["lr"]), alpha=float(p["alpha"]),
                         momentum=float(p.get("momentum", MOMENTUM)), batch_size=BATCH,
                         shuffle=True, random_state=0)


def set_hyperparameters(clf, p):
    """Puts this segment's parameters on a model, the live optimizer included."""
    clf.learning_rate_init = float(p["lr"])
    clf.alpha = float(p["alpha"])  # read by every backprop (the L2 term of the gradient)
    clf.momentum = float(p.get("momentum", MOMENTUM))
    opt = getattr(clf, "_optimizer", None)  # absent before the first partial_fit
    if opt is not None:
        opt.learning_rate_init = clf.learning_rate_init
        opt.learning_rate = clf.learning_rate_init  # what SGDOptimizer's updates use
        opt.momentum = clf.momentum


def errors(clf):
    """(validation error, test error)."""
    _, (x_val, y_val), (x_test, y_test) = dataset()
    return 1.0 - float(clf.score(x_val, y_val)), 1.0 - float(clf.score(x_test, y_test))


def load(path):
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    return None


def save(path, state):
    with open(path + ".tmp", "wb") as f:
        pickle.dump(state, f)
    os.replace(path + ".tmp", path)


def run_segment(trial):
    p = trial.params
    ckpt = trial.checkpoint_dir
    path = os.path.join(ckpt, "model.pkl") if ckpt else ""
    state = load(path) or {"model": new_model(p), "epoch": 0, "diverged": False, "trace": []}
    clf = state["model"]
    set_hyperparameters(clf, p)
    budget = int(float(trial.budget if trial.budget is not None else 20))
    start = state["epoch"]
    (x_train, y_train), _, _ = dataset()
    for epoch in range(start + 1, budget + 1):
        if not state["diverged"]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.partial_fit(x_train, y_train, classes=CLASSES)
            except ValueError as e:  # "Solver produced non-finite parameter weights"
                if "non-finite" not in str(e):
                    raise
                state["diverged"] = True
        err, test = (1.0, 1.0) if state["diverged"] else errors(clf)
        state["epoch"] = epoch
        if not trial.id:  # by hand (report() does nothing there): print it
            print(f"epoch {epoch}: val_error {err:.4f} test_error {test:.4f}", file=sys.stderr)
        if trial.report(step=epoch, epoch=epoch, val_error=err, test_error=test):
            break
    state["trace"] = state["trace"] + [[trial.id, start, state["epoch"], float(p["lr"]),
                                        float(p["alpha"])]]
    if path:
        save(path, state)


if __name__ == "__main__":
    import rung  # on PYTHONPATH in every trial rung-worker starts

    for t in rung.trials():
        run_segment(t)
