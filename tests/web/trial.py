"""A trial for the web page's test (standard library only), reporting through rung.report.

WEB_MODE=curve: "loss" falls with the step toward a floor set by x and opt, one report per
step up to RUNG_BUDGET (ASHA's rung). WEB_MODE=gated: reports steps 1 to 3, then waits for the
file WEB_GATE before it reports step 4 (the page's test opens the page first).
"""
import os
import time

import rung

p = rung.params()
floor = p.get("x", 1.0) + (0.5 if p.get("opt") == "sgd" else 0.0)
if os.environ.get("WEB_MODE") == "gated":
    for step in range(1, 4):
        rung.report(step=step, loss=floor + 1.0 / step)
    while not os.path.exists(os.environ["WEB_GATE"]):
        time.sleep(0.01)
    rung.report(step=4, loss=floor + 0.25)
else:
    for step in range(1, int(float(os.environ.get("RUNG_BUDGET", "9"))) + 1):
        if rung.report(step=step, loss=floor * (1 + 1.0 / step)):
            break
