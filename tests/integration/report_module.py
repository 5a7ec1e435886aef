"""Integration-test trial: reports through the rung module (standard library only).

loss(step) decays to (x - 0.3)^2 + 0.1 * depth at the last step. Every report it makes is
also appended to $RUNG_TRIAL_DIR/made.jsonl so the test can check that none was lost.
"""
import json
import os
import sys
import time

import rung

p = rung.params()
steps = int(os.environ.get("STEPS", "6"))
pause = float(os.environ.get("STEP_SECONDS", "0.05"))
final = (p["x"] - 0.3) ** 2 + 0.1 * p["depth"]
log = os.path.join(os.environ["RUNG_TRIAL_DIR"], "made.jsonl")
for step in range(1, steps + 1):
    time.sleep(pause)  # the "training"
    loss = final + (steps - step) * 0.5
    stop = rung.report(step=step, loss=loss)
    with open(log, "a") as f:
        f.write(json.dumps({"attempt": int(os.environ["RUNG_ATTEMPT"]), "step": step, "loss": loss}) + "\n")
    if stop:
        sys.exit(0)
