"""Stop-path benchmark trial: reports an epoch every 5 ms up to RUNG_BUDGET.

Default: stops when rung.report() says so (the cooperative path). With --ignore-stop it
keeps going and is ended by the worker's SIGTERM (the forced path).
"""
import os
import sys
import time

import rung

x = rung.params()["x"]
ignore = "--ignore-stop" in sys.argv
for epoch in range(1, int(float(os.environ["RUNG_BUDGET"])) + 1):
    time.sleep(0.005)
    if rung.report(epoch=epoch, loss=(x - 0.3) ** 2 + 1.0 / epoch) and not ignore:
        sys.exit(0)
