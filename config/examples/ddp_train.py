"""A distributed (DDP) training script for rung's multi-rank examples (config/examples/ddp.yaml,
ddp_ablation.yaml): scikit-learn's bundled digits (1797 8x8 images, 10 classes), a small MLP
trained with torch's DistributedDataParallel, validation loss and accuracy reported each epoch.

- Ranks: with `resources: {ranks: N}` rung starts N processes with torchrun's variables (RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, ...). Each trains on its shard of the
  training data and DDP averages the gradients. Backend nccl when the rank has a GPU, else gloo.
- Stopping: every rank reports, and every rank hears rung's stop, but not always at the same
  epoch, so the ranks agree on it (all_reduce MAX of a stop flag) before the next epoch.
- Budget and resume: with RUNG_BUDGET (ASHA) it trains up to that many epochs. Rank 0 saves
  model, optimizer and epoch to RUNG_CHECKPOINT_DIR/ckpt.pt after each epoch; at start rank 0
  loads it and broadcasts it to every rank, so a promoted trial goes on where it stopped.
- Ablation: `hidden2` drops the second hidden layer, `dropout` sets dropout to 0.
- RUNG_DDP_CHECK=1 (for tests): each rank all-reduces (SUM) rank+1 once and every report
  carries `allreduce_sum` (WORLD_SIZE*(WORLD_SIZE+1)/2 when all ranks took part) and `world_size`.

Runs by hand (one process, no process group): PYTHONPATH=client/python /usr/bin/python3 ddp_train.py
or as N local ranks: ... /usr/bin/python3 -m torch.distributed.run --nproc_per_node 2 ddp_train.py
(Debian's torch 1.13 on Python 3.11 needs `--redirects 1 --tee 1` there: its default fails in to_map).
Needs Debian's python3-torch and python3-sklearn (for /usr/bin/python3).
"""
import datetime
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data.distributed import DistributedSampler

import rung
from rung import ablation

p = rung.params()
lr = float(p.get("lr", 0.05))
hidden = int(p.get("hidden", 64))
epochs = int(p.get("epochs", 10))
dropout = 0.0 if ablation.is_dropped("dropout") else float(p.get("dropout", 0.0))
budget = os.environ.get("RUNG_BUDGET")
last_epoch = int(float(budget)) if budget else epochs
seed = ablation.seed() or 1
ckpt_dir = rung.checkpoint_dir()
ckpt_path = os.path.join(ckpt_dir, "ckpt.pt") if ckpt_dir else None

# Process group: only when launched as ranks (torchrun or rung); by hand it is one process.
distributed = "WORLD_SIZE" in os.environ
rank = int(os.environ.get("RANK", 0))
world = int(os.environ.get("WORLD_SIZE", 1))
local_rank = int(os.environ.get("LOCAL_RANK", 0))
if torch.cuda.is_available():
    # rung sets CUDA_VISIBLE_DEVICES per rank (its GPU is cuda:0); torchrun on one host does not.
    device = torch.device("cuda", local_rank if torch.cuda.device_count() > local_rank else 0)
    torch.cuda.set_device(device)
else:
    device = torch.device("cpu")
if distributed:
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            timeout=datetime.timedelta(seconds=60))  # a dead peer fails fast


def all_reduce(t, op=dist.ReduceOp.SUM):
    if distributed:
        dist.all_reduce(t, op=op)
    return t


check = {}
if os.environ.get("RUNG_DDP_CHECK"):
    total = all_reduce(torch.tensor([rank + 1.0], device=device))
    check = {"allreduce_sum": total.item(), "world_size": world}

# The same split in every run; pixels 0..16 scaled to 0..1.
X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
X_train, X_val = (torch.tensor(a, dtype=torch.float32, device=device) for a in (X_train, X_val))
y_train, y_val = (torch.tensor(a, dtype=torch.long, device=device) for a in (y_train, y_val))

torch.manual_seed(seed)
layers = [nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout)]
if not ablation.is_dropped("hidden2"):
    layers += [nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout)]
net = nn.Sequential(*layers, nn.Linear(hidden, 10)).to(device)
opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)

# Resume: rank 0 reads the checkpoint (ranks may sit on hosts that do not share its folder).
start = 1
found = rank == 0 and ckpt_path and os.path.exists(ckpt_path)
state = [torch.load(ckpt_path, map_location="cpu") if found else None]
if distributed:
    dist.broadcast_object_list(state, src=0)
if state[0] is not None:
    net.load_state_dict(state[0]["model"])
    opt.load_state_dict(state[0]["opt"])
    start = state[0]["epoch"] + 1
model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None) if distributed else net
loss_fn = nn.CrossEntropyLoss()
sampler = DistributedSampler(range(len(y_train)), num_replicas=world, rank=rank, shuffle=True, seed=seed)


def evaluate():
    # Every rank holds the same weights, so each scores the whole (small) validation set.
    net.eval()
    with torch.no_grad():
        out = net(X_val)
    net.train()
    return loss_fn(out, y_val).item(), (out.argmax(1) == y_val).float().mean().item()


val_loss, val_acc = evaluate()
if start > last_epoch:  # a rerun after the last epoch: report the checkpoint's result again
    rung.report(step=start - 1, val_loss=val_loss, val_acc=val_acc, **check)
for epoch in range(start, last_epoch + 1):
    sampler.set_epoch(epoch)
    idx = torch.tensor(list(sampler), device=device)
    for b in idx.split(32):
        opt.zero_grad()
        loss_fn(model(X_train[b]), y_train[b]).backward()
        opt.step()
    val_loss, val_acc = evaluate()
    if rank == 0 and ckpt_path:
        tmp = ckpt_path + ".tmp"
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch}, tmp)
        os.replace(tmp, ckpt_path)
    stop = rung.report(step=epoch, val_loss=val_loss, val_acc=val_acc, **check)
    # Ranks may hear stop at different epochs: stop together, or DDP waits forever.
    if all_reduce(torch.tensor([float(stop)], device=device), dist.ReduceOp.MAX).item():
        break

if rank == 0:
    print(f"world_size {world}, layers {len(layers) // 3}, dropout {dropout}: "
          f"val_acc {val_acc:.4f}, val_loss {val_loss:.4f}")
if distributed:
    dist.barrier()
    dist.destroy_process_group()
