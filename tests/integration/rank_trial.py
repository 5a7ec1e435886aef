"""One rank of a distributed trial for ranks_test.cc (Debian's /usr/bin/python3 with torch).

Writes what it was given to RUNG_TRIAL_DIR/attempt-N/rank-R.json (its variables and pid),
joins the others with gloo (env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE), all-reduces
rank + 1, and reports the sum. With HOLD=1 the first attempt reports `reduced` and then waits
for ever, so that the test can kill one of its ranks or workers.
"""
import datetime
import json
import os
import time

import torch
import torch.distributed as dist

import rung

env = {k: os.environ.get(k) for k in (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
    "MASTER_PORT", "TF_CONFIG", "CUDA_VISIBLE_DEVICES", "RUNG_TRIAL_ID", "RUNG_ATTEMPT",
    "RUNG_WORKER", "RUNG_PARAMS")}
env["pid"] = os.getpid()
folder = os.path.join(os.environ["RUNG_TRIAL_DIR"], "attempt-" + os.environ["RUNG_ATTEMPT"])
os.makedirs(folder, exist_ok=True)
path = os.path.join(folder, "rank-%s.json" % env["RANK"])
with open(path + ".tmp", "w") as f:
    json.dump(env, f)
os.rename(path + ".tmp", path)

dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=60))
rank = dist.get_rank()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total, op=dist.ReduceOp.SUM)
if os.environ.get("HOLD") == "1" and os.environ["RUNG_ATTEMPT"] == "1":
    rung.report(step=0, reduced=total.item())
    # Until the test says go (GO_FILE), or for ever.
    while not (os.environ.get("GO_FILE") and os.path.exists(os.environ["GO_FILE"])):
        time.sleep(0.2)
rung.report(step=1, loss=float(rung.params().get("x", 0.5)), sum=total.item(),
            world=float(dist.get_world_size()), final=True)
dist.barrier()
dist.destroy_process_group()
