"""A real training script for rung's ablation example (config/examples/ablation.yaml):
scikit-learn's bundled diabetes data (442 patients, 10 features), a small neural network
(MLPRegressor) trained for a few epochs, validation mean squared error reported each epoch.

It really leaves out what rung.ablation says:
- a feature (bmi, bp, s5, ...): that column is removed from the data;
- a layer (hidden2): the network is built without its second hidden layer;
- the group `serum` (s1, s2, s3, s4, s6): all those columns at once;
- the custom switch `no_scaling`: the features are not standardised.

Run by hand (PYTHONPATH=client/python, no RUNG_ABLATION) it trains the full model, so the same script serves a plain
run, a search over lr and width (see RUNG_PARAMS), and the ablation study.
Needs Debian's python3-sklearn (for /usr/bin/python3).
"""
import warnings

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

import rung
from rung import ablation

p = rung.params()
lr = float(p.get("lr", 0.001))
width = int(p.get("width", 16))
epochs = int(p.get("epochs", 100))
alpha = float(p.get("alpha", 1.0))  # L2 penalty: 442 patients overfit a network quickly
seed = ablation.seed() or 1

data = load_diabetes()
names = list(data.feature_names)  # age sex bmi bp s1 s2 s3 s4 s5 s6
keep = [i for i, n in enumerate(names) if not ablation.is_dropped(n)]
X, y = data.data[:, keep], data.target
# The split stays the same in every run, so variants differ only in what they leave out and
# in their seed (which drives the network's initialisation and shuffling).
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0)
if not ablation.is_dropped("no_scaling"):
    scaler = StandardScaler().fit(X_train)
    X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)
y_mean, y_std = y_train.mean(), y_train.std()

layers = (width,) if ablation.is_dropped("hidden2") else (width, width // 2)
model = MLPRegressor(hidden_layer_sizes=layers, learning_rate_init=lr, alpha=alpha, random_state=seed, max_iter=1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)
for epoch in range(1, epochs + 1):
    model.partial_fit(X_train, (y_train - y_mean) / y_std)
    pred = model.predict(X_val) * y_std + y_mean
    val_loss = float(np.mean((pred - y_val) ** 2))
    if rung.report(step=epoch, val_loss=val_loss):
        break
print(f"features {[names[i] for i in keep]}, layers {layers}: val_loss {val_loss:.1f}")
