"""A call retried across a restart of rungd: run by clients_test with the venv's interpreter.

    python python_reconnect.py ADDRESS FLAG_DIR

Connects, writes "connected" to FLAG_DIR/connected, waits for the test to kill rungd (the
file FLAG_DIR/killed), then lists experiments, which is retried until rungd serves again on
the same port, and prints when it got through (time.time()) and what it got.
"""
import os
import sys
import time

import rung

addr, flags = sys.argv[1], sys.argv[2]
c = rung.Client(addr, retry_for=60)
before = [e.id for e in c.list()]
with open(os.path.join(flags, "connected"), "a") as f:
    f.write("connected\n")
while not os.path.exists(os.path.join(flags, "killed")):
    time.sleep(0.01)
after = [e.id for e in c.list()]  # rungd is down now: retried until it is back
print(f"through at {time.time():.6f}", flush=True)
assert after == before, (before, after)
print("python reconnect: OK")
