"""Integration-test trial for the stop path (standard library only).

polite: reports every 50 ms and exits when rung.report() says stop.
stubborn: ignores SIGTERM, reports once, then never reports again; only SIGKILL ends it.
"""
import os
import signal
import sys
import time

import rung

mode = sys.argv[1]
with open(os.path.join(os.environ["RUNG_TRIAL_DIR"], "pid"), "w") as f:
    f.write(str(os.getpid()))
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    rung.report(step=1, loss=1.0)
    while True:
        time.sleep(3600)
step = 0
while True:
    step += 1
    if rung.report(step=step, loss=1.0 / step):
        print("rung asked us to stop", flush=True)
        sys.exit(0)
    time.sleep(0.05)
