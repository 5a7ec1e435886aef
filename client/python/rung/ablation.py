"""What this trial leaves out, when it runs in an ablation study (kind: ablation).

    from rung import ablation
    features = [f for f in FEATURES if not ablation.is_dropped(f)]
    if not ablation.is_dropped("conv2"):
        layers.append(conv2)
    np.random.seed(ablation.seed() or 0)

RUNG_ABLATION (JSON) names the removed component: its kind (feature, layer, group, custom),
its name, and what it drops (a group's members). The base configuration, and any run outside
a study, drops nothing, so the same script runs by hand, in a search and in a study.
Standard library only.
"""

import json
import os
from collections import namedtuple

__all__ = ["dropped", "is_dropped", "seed", "Dropped"]

Dropped = namedtuple("Dropped", ["kind", "name", "members"])


def _variant():
    text = os.environ.get("RUNG_ABLATION")
    if not text:
        return None
    v = json.loads(text)
    if v.get("kind") == "base":
        return None
    return Dropped(v["kind"], v["name"], tuple(v.get("dropped", [])))


def dropped():
    """The component this trial leaves out (kind, name, members), or None for the base."""
    return _variant()


def is_dropped(name):
    """True when `name` is the removed component or one of its members (a group's)."""
    v = _variant()
    return v is not None and (name == v.name or name in v.members)


def seed():
    """This run's seed (RUNG_SEED: 1, 2, ... one per repeat, shared by every variant), or None."""
    text = os.environ.get("RUNG_SEED")
    return int(text) if text else None
