"""rung's in-trial reporter: standard library only.

    import rung
    p = rung.params()                 # {"lr": 0.01, "depth": 4, ...}
    for epoch in range(1, 11):
        loss = train_one_epoch(p)
        if rung.report(step=epoch, loss=loss):
            break                     # rung says stop: save a checkpoint and exit

Outside rung (no RUNG_REPORT_SOCKET) params() reads RUNG_PARAMS or returns {} and report()
does nothing and returns False, so the same script runs by hand.

A script that loads once and trains many trials (trial: {reuse_process: true}) loops:

    for trial in rung.trials():       # by hand, or without reuse_process: one trial
        p = trial.params
        for epoch in range(1, int(trial.budget or 27) + 1):
            if trial.report(step=epoch, loss=train_one_epoch(p)):
                break

rung.Client (rung/client.py, installed by `pip install ./client/python`) drives rungd over
gRPC: experiments, and ask and tell for trials that rung's workers do not run.
"""

import json
import os
import socket
import threading

__all__ = ["params", "report", "should_stop", "trial_id", "experiment_id", "checkpoint_dir",
           "in_trial", "trials", "CurrentTrial", "Client", "RungError"]

_lock = threading.Lock()
_sock = None
_file = None
_stop = False


def in_trial():
    """True when this process runs as a rung trial."""
    return bool(os.environ.get("RUNG_REPORT_SOCKET"))


def params():
    """The trial's parameters as a dict (RUNG_PARAMS_FILE, else RUNG_PARAMS, else {})."""
    path = os.environ.get("RUNG_PARAMS_FILE")
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    text = os.environ.get("RUNG_PARAMS")
    return json.loads(text) if text else {}


def trial_id():
    return os.environ.get("RUNG_TRIAL_ID")


def experiment_id():
    return os.environ.get("RUNG_EXPERIMENT_ID")


def checkpoint_dir():
    """A folder that survives restarts of this trial on the same worker."""
    return os.environ.get("RUNG_CHECKPOINT_DIR")


def should_stop():
    """What the last report() answered."""
    return _stop


def _connect():
    global _sock, _file
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.environ["RUNG_REPORT_SOCKET"])
    _sock, _file = s, s.makefile("rb")


def report(step=None, final=False, **metrics):
    """Reports metrics (numbers) at `step`; returns True when rung wants the trial to stop.

    final=True marks these values as the trial's result; otherwise the result is the last
    reported value of the objective metric.
    """
    global _stop
    if not in_trial():
        return False
    msg = {"trial_id": os.environ.get("RUNG_TRIAL_ID", ""),
           "attempt": int(os.environ.get("RUNG_ATTEMPT", "1"))}
    if "RANK" in os.environ:
        # A distributed trial: rank 0's reports are the trial's; every rank hears stop.
        msg["rank"] = int(os.environ["RANK"])
    for k, v in metrics.items():
        msg[k] = float(v)
    if step is not None:
        msg["step"] = float(step)
    if final:
        msg["final"] = True
    line = (json.dumps(msg) + "\n").encode()
    with _lock:
        for attempt in range(2):
            try:
                if _sock is None:
                    _connect()
                _sock.sendall(line)
                answer = _file.readline()
                if not answer:
                    raise ConnectionError("rung-worker closed the report socket")
                break
            except OSError:
                _close()
                if attempt == 1:
                    raise
        reply = json.loads(answer)
    if reply.get("error") and not reply.get("stop"):
        raise ValueError("rung: " + reply["error"])
    _stop = bool(reply.get("stop"))
    return _stop


class CurrentTrial:
    """One trial of rung.trials(): its parameters, budget, checkpoint folder and ablation.

    (rung.Trial is the client's record of a trial, from rungd.)"""

    def __init__(self):
        self.id = trial_id()
        self.experiment_id = experiment_id()
        self.attempt = int(os.environ.get("RUNG_ATTEMPT", "1"))
        self.params = params()
        budget = os.environ.get("RUNG_BUDGET")
        self.budget = float(budget) if budget else None  # the resource to train up to
        self.checkpoint_dir = checkpoint_dir()
        text = os.environ.get("RUNG_ABLATION")
        self.ablation = json.loads(text) if text else None  # what an ablation leaves out
        seed = os.environ.get("RUNG_SEED")
        self.seed = int(seed) if seed else None
        # execution: hopper: the unit to train (see the README, "Model hopper mode").
        partition = os.environ.get("RUNG_PARTITION")
        self.partition = int(partition) if partition else None
        self.partitions = int(os.environ.get("RUNG_PARTITIONS", "1"))
        self.epoch = int(os.environ.get("RUNG_EPOCH", "1"))  # 1, 2, ...
        self.epochs = int(os.environ.get("RUNG_EPOCHS", "1"))
        self.validate = os.environ.get("RUNG_VALIDATE", "1") == "1"  # the epoch's last unit

    def report(self, step=None, final=False, **metrics):
        """As rung.report(): True when rung wants this trial to stop."""
        return report(step=step, final=final, **metrics)

    def __repr__(self):
        return f"CurrentTrial({self.id}, attempt {self.attempt}, params={self.params})"


# What a runner keeps of its own environment when the next trial's replaces the last one's.
_RUNNER_KEEP = ("RUNG_RUNNER", "RUNG_REPORT_SOCKET", "RUNG_WORKER")


def trials():
    """The trials this process runs, one after another.

    With trial: {reuse_process: true} rung-worker keeps this process and hands it the next
    trial of its experiment on its stdin (one JSON line each), so imports, data and warm-up
    are paid once. Each trial sets the environment that a process of its own would have had,
    so params(), report(), checkpoint_dir() and rung.ablation work as usual. When the loop's
    body returns, the trial is done (`@rung-end` on stdout); an exception ends the process and
    fails only the trial it was in. Without reuse_process, or run by hand, it yields one
    trial, from the environment or the defaults.
    """
    global _stop
    if not os.environ.get("RUNG_RUNNER"):
        yield CurrentTrial()
        return
    import sys
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        env = msg.get("env", {})
        for key in [k for k in os.environ if k.startswith("RUNG_") and k not in _RUNNER_KEEP]:
            if key not in env:
                del os.environ[key]
        os.environ.update(env)
        _stop = False
        yield CurrentTrial()
        sys.stdout.write("@rung-end " + json.dumps(
            {"trial_id": msg.get("trial_id"), "attempt": msg.get("attempt")}) + "\n")
        sys.stdout.flush()


def _close():
    global _sock, _file
    try:
        if _sock is not None:
            _sock.close()
    finally:
        _sock, _file = None, None


def __getattr__(name):
    # The gRPC client loads on first use: the reporter above needs only the standard library.
    import importlib
    if name == "ablation":
        return importlib.import_module("rung.ablation")
    if name in ("Client", "RungError", "Experiment", "Trial", "Report", "AblationResults", "AblationVariant"):
        return getattr(importlib.import_module("rung.client"), name)
    raise AttributeError(f"module 'rung' has no attribute '{name}'")
