"""Integration-test trial with a learning curve (standard library only).

Trains up to RUNG_BUDGET epochs; loss(epoch) = (x - 0.3)^2 + 1/epoch, so a worse x stays
worse at every epoch. Reports {"epoch": e, "loss": ...} and stops when rung says so.
"""
import os
import time

import rung

x = rung.params()["x"]
budget = int(float(os.environ["RUNG_BUDGET"]))
for epoch in range(1, budget + 1):
    time.sleep(0.01)  # the "training"
    if rung.report(epoch=epoch, loss=(x - 0.3) ** 2 + 1.0 / epoch):
        break
