"""Model hopper example: an MLP on scikit-learn's digits, trained one partition at a time.

Under `execution: {mode: hopper}` every run of this script is one unit: it trains the model
named by the trial's parameters for one pass over partition RUNG_PARTITION (of
RUNG_PARTITIONS), starting from the model state in RUNG_CHECKPOINT_DIR, saves it there, and,
on the epoch's last unit (RUNG_VALIDATE=1), reports the validation accuracy for the epoch.
rung moves the model state between workers; the data partition stays where it is (here each
worker "holds" a partition by loading only its share of the rows, and a warm runner keeps it
in memory across units).

Without hopper mode (execution: workers) each run trains its model for EPOCHS passes over all
PARTITIONS partitions (task parallelism, for the benchmark beside it).

Replay: `hopper_train.py --replay '{"params": {...}, "order": [0, 2, 1, ...]}'` trains the
same model sequentially over the partitions in that order in this one process and prints its
accuracy, which equals what the hopping run reported (the test checks it).
Needs Debian's python3-sklearn (for /usr/bin/python3).
"""
import json
import os
import pickle
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

_data = {}


def dataset():
    if "all" not in _data:
        x, y = load_digits(return_X_y=True)
        x = x / 16.0
        _data["all"] = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return _data["all"]


def partition(p, count):
    """Rows p, p + count, p + 2 * count, ... of the training set: partition p of count."""
    key = (p, count)
    if key not in _data:
        x_train, _, y_train, _ = dataset()
        _data[key] = (x_train[p::count], y_train[p::count])
    return _data[key]


def new_model(params):
    return MLPClassifier(hidden_layer_sizes=(int(params["hidden"]),),
                         learning_rate_init=float(params["lr"]), alpha=float(params["alpha"]),
                         batch_size=64, shuffle=False, random_state=int(params.get("seed", 0)))


def train_unit(model, p, count):
    x, y = partition(p, count)
    model.partial_fit(x, y, classes=np.arange(10))
    return model


def accuracy(model):
    _, x_test, _, y_test = dataset()
    return float(model.score(x_test, y_test))


def run_unit(trial):
    path = os.path.join(trial.checkpoint_dir, "model.pkl")
    if os.path.exists(path):
        with open(path, "rb") as f:
            model = pickle.load(f)
    else:
        model = new_model(trial.params)
    train_unit(model, trial.partition, trial.partitions)
    with open(path + ".tmp", "wb") as f:
        pickle.dump(model, f)
    os.replace(path + ".tmp", path)
    with open(os.path.join(trial.checkpoint_dir, "order.txt"), "a") as f:
        f.write(f"{trial.partition}\n")
    if trial.validate:
        trial.report(epoch=trial.epoch, accuracy=accuracy(model), loss=float(model.loss_))


def run_whole(trial):
    """Task parallelism, for comparison (execution: workers): the worker holds all the data and
    trains the whole model here, EPOCHS passes over the partitions 0, 1, ... in order."""
    count = int(os.environ.get("PARTITIONS", "4"))
    model = new_model(trial.params)
    for epoch in range(1, int(os.environ.get("EPOCHS", "1")) + 1):
        for p in range(count):
            train_unit(model, p, count)
        if trial.report(epoch=epoch, accuracy=accuracy(model), loss=float(model.loss_)):
            break


def replay(spec):
    model = new_model(spec["params"])
    count = int(spec.get("partitions", 4))
    for p in spec["order"]:
        train_unit(model, int(p), count)
    print(json.dumps({"accuracy": accuracy(model)}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--replay":
        replay(json.loads(sys.argv[2]))
        sys.exit(0)
    import rung  # on PYTHONPATH in every trial rung-worker starts

    for t in rung.trials():
        if t.partition is None:
            run_whole(t)
        else:
            run_unit(t)
