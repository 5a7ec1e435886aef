"""Fault-test trial (standard library only): an ASHA learning curve that keeps a ledger.

Trains up to RUNG_BUDGET epochs; loss(epoch) = (x - 0.3)^2 + 1/epoch. Appends to
$RUNG_TRIAL_DIR/launches.jsonl when it starts (attempt, pid, the worker's pid) and to
made.jsonl before each report (attempt, epoch, loss), so the test can check that no attempt
ran twice and that no report was lost or invented.
"""
import json
import os
import time

import rung

x = rung.params()["x"]
attempt = int(os.environ["RUNG_ATTEMPT"])
budget = int(float(os.environ["RUNG_BUDGET"]))
pause = float(os.environ.get("EPOCH_SECONDS", "0.02"))
folder = os.environ["RUNG_TRIAL_DIR"]


def ledger(name, **fields):
    with open(os.path.join(folder, name), "a") as f:
        f.write(json.dumps(fields) + "\n")


ledger("launches.jsonl", attempt=attempt, pid=os.getpid(), worker_pid=os.getppid())
for epoch in range(1, budget + 1):
    time.sleep(pause)  # the "training"
    loss = (x - 0.3) ** 2 + 1.0 / epoch
    ledger("made.jsonl", attempt=attempt, epoch=epoch, loss=loss)
    if rung.report(epoch=epoch, loss=loss):
        break
