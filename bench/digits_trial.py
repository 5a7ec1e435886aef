"""The rung side of bench/digits.sh: a scikit-learn MLP on the digits data, one epoch
(partial_fit) at a time up to RUNG_BUDGET (27 by default), the validation error reported
after each. It loops over rung.trials(), so with trial.reuse_process one process loads
scikit-learn and the data once and trains trial after trial. Debian's /usr/bin/python3.
"""
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import rung

warnings.filterwarnings("ignore", category=ConvergenceWarning)
X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
classes = np.unique(y)

for trial in rung.trials():
    p = trial.params
    model = MLPClassifier(hidden_layer_sizes=(int(p["hidden"]),), learning_rate_init=p["lr"],
                          alpha=p["alpha"], batch_size=int(p["batch"]), random_state=0)
    for epoch in range(1, int(trial.budget or 27) + 1):
        model.partial_fit(X_train, y_train, classes=classes)
        error = 1.0 - model.score(X_val, y_val)
        if trial.report(step=epoch, error=error):
            break
