"""The Optuna side of bench/digits.sh: the same model, data and search space as
bench/digits_trial.py, TPE with Optuna's successive-halving pruner (min_resource 1,
reduction_factor 3), trials in-process. Run one per slot against a shared journal file:
    /usr/bin/python3 bench/digits_optuna.py DB SECONDS SEED
after creating the study once (DB --create). Prints nothing; bench/digits.sh reads the
study back with DB --summary (trials started, best error at 27 epochs and at any epoch).
"""
import json
import os
import sys
import warnings

import optuna

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.WARNING)
# The processes share a journal file (Optuna's fastest storage for processes on one host), or
# SQLite with OPTUNA_STORAGE=sqlite. Optuna 3.1's journal reader can meet a line the other
# process is still writing: the trial that read it fails (catch=) and the study goes on.
if os.environ.get("OPTUNA_STORAGE") == "sqlite":
    storage = optuna.storages.RDBStorage(f"sqlite:///{sys.argv[1]}",
                                         engine_kwargs={"connect_args": {"timeout": 60}})
else:
    storage = optuna.storages.JournalStorage(optuna.storages.JournalFileStorage(sys.argv[1]))

if sys.argv[2] == "--create":
    optuna.create_study(study_name="digits", storage=storage, direction="minimize")
    sys.exit(0)
if sys.argv[2] == "--summary":
    study = optuna.load_study(study_name="digits", storage=storage)
    started = len(study.trials)
    # The best of the trials that trained all 27 epochs, and the best at any epoch.
    any_epoch = min((v for t in study.trials for v in t.intermediate_values.values()), default=1.0)
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    print(f"{started} {study.best_value:.6f} {any_epoch:.6f} {epochs}")
    sys.exit(0)

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

warnings.filterwarnings("ignore", category=ConvergenceWarning)
X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
classes = np.unique(y)


def objective(trial):
    model = MLPClassifier(
        hidden_layer_sizes=(trial.suggest_int("hidden", 16, 256),),
        learning_rate_init=trial.suggest_float("lr", 1e-4, 0.3, log=True),
        alpha=trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
        batch_size=trial.suggest_int("batch", 16, 128), random_state=0)
    error = 1.0
    for epoch in range(1, 28):
        model.partial_fit(X_train, y_train, classes=classes)
        error = 1.0 - model.score(X_val, y_val)
        trial.report(error, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return error


study = optuna.load_study(
    study_name="digits", storage=storage,
    sampler=optuna.samplers.TPESampler(seed=int(sys.argv[3])),
    pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
study.optimize(objective, timeout=float(sys.argv[2]), catch=(json.JSONDecodeError,))
