"""The trial of bench/warm.sh: what a PyTorch trial pays before it trains (import torch, load
scikit-learn's digits), then one small training step and one report. With
trial.reuse_process the loading happens once per runner; without it, once per trial.
Debian's /usr/bin/python3 with python3-torch and python3-sklearn.
"""
import time

import torch
from sklearn.datasets import load_digits

import rung

X, y = load_digits(return_X_y=True)
X = torch.tensor(X, dtype=torch.float32) / 16
y = torch.tensor(y)
torch.manual_seed(0)

for trial in rung.trials():
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=float(trial.params.get("lr", 0.1)))
    loss = torch.nn.functional.cross_entropy(model(X), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    # `at`: when the trial's first (and only) report was made, for the slot-to-report gap.
    trial.report(step=1, loss=float(loss), at=time.time())
