"""Integration-test trial for ablation studies (standard library only): a "model" whose loss
rises by a fixed amount for each part left out, plus noise from RUNG_SEED. Leaving out the
feature `area` hurts most (+1.0), then the group `attention` (+0.4), the layer `conv2`
(+0.2); `floors` does nothing. Reports 3 epochs through rung.report.
"""
import random

import rung
from rung import ablation

COST = {"area": 1.0, "rooms": 0.3, "floors": 0.0, "conv2": 0.2, "attn1": 0.25, "attn2": 0.15}
params = rung.params()
loss = 0.5 + 0.01 * params.get("depth", 0)
for part, cost in COST.items():
    if ablation.is_dropped(part):
        loss += cost
# Noise: a part shared by every variant of one repeat (the same seed: a lucky initialisation
# helps them all), which the paired test cancels, and a part of each run's own.
seed = ablation.seed() or 0
name = ablation.dropped().name if ablation.dropped() else "base"
loss += random.Random(seed).gauss(0, 0.2) + random.Random(f"{seed}/{name}").gauss(0, 0.05)
for epoch in range(1, 4):
    rung.report(step=epoch, loss=loss + (3 - epoch) * 0.1)
