"""Integration-test trial: reports with @rung lines on stdout, no library at all."""
import argparse
import json
import time

ap = argparse.ArgumentParser()
ap.add_argument("--x", type=float, required=True)
ap.add_argument("--depth", type=int, required=True)
args = ap.parse_args()
final = (args.x - 0.3) ** 2 + 0.1 * args.depth
for step in range(1, 5):
    time.sleep(0.02)
    print("training noise that is not a report", flush=True)
    print("@rung " + json.dumps({"step": step, "loss": final + (4 - step) * 0.5}), flush=True)
