"""A trial for warm_test.cc that loops over rung.trials() (trial: {reuse_process: true}).

Each trial trains `epochs` steps (RUNG_BUDGET when ASHA sets one, else 3), resuming after the
last step saved in its checkpoint folder; each report carries the process's pid and the step
it resumed from. With CRASH_TRIAL=e1-2 that trial's first attempt kills the process midway.
"""
import os

import rung

for trial in rung.trials():
    x = float(trial.params.get("x", 0.5))
    saved = os.path.join(trial.checkpoint_dir, "step") if trial.checkpoint_dir else None
    start = 0
    if saved and os.path.exists(saved):
        with open(saved) as f:
            start = int(f.read())
    for step in range(start + 1, int(trial.budget or 3) + 1):
        if os.environ.get("CRASH_TRIAL") == trial.id and trial.attempt == 1 and step == 2:
            os._exit(3)
        if saved:
            with open(saved, "w") as f:
                f.write(str(step))
        if trial.report(step=step, loss=(x - 0.3) ** 2 + 1.0 / step, pid=os.getpid(),
                        resumed_from=start):
            break
