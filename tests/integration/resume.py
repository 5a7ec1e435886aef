"""Integration-test trial for promote mode (standard library only).

Resumes from $RUNG_CHECKPOINT_DIR/state.json, trains epochs last+1 .. RUNG_BUDGET, saves a
checkpoint after each, and appends every epoch it actually trains to trained.log there.
"""
import json
import os
import time

import rung

x = rung.params()["x"]
ckpt = os.environ["RUNG_CHECKPOINT_DIR"]
state_path = os.path.join(ckpt, "state.json")
start = 0
if os.path.exists(state_path):
    with open(state_path) as f:
        start = json.load(f)["epoch"]
budget = int(float(os.environ["RUNG_BUDGET"]))
for epoch in range(start + 1, budget + 1):
    time.sleep(0.01)  # the "training"
    with open(os.path.join(ckpt, "trained.log"), "a") as f:
        f.write(f"{epoch}\n")
    with open(state_path + ".tmp", "w") as f:
        json.dump({"epoch": epoch}, f)
    os.replace(state_path + ".tmp", state_path)
    if rung.report(epoch=epoch, loss=(x - 0.3) ** 2 + 1.0 / epoch):
        break
