"""Integration-test trial with two objectives and a constrained metric: one @rung line.

loss is lowest at x = 0.3, latency_ms falls as x grows, and mem = 20 x breaks max 16 above
x = 0.8: the feasible Pareto set is x in [0.3, 0.8].
"""
import json
import os

x = json.loads(os.environ["RUNG_PARAMS"])["x"]
print("@rung " + json.dumps({"loss": (x - 0.3) ** 2, "latency_ms": 10 * (1 - x), "mem": 20 * x}), flush=True)
