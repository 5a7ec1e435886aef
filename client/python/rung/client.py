"""rung's gRPC client: submit and watch experiments, and run trials yourself (ask and tell).

    import rung
    c = rung.Client("127.0.0.1:7411")
    exp = c.create_experiment("spec.yaml")          # a path, a YAML string or a dict
    for t in c.suggest(exp.id, count=2, client_id="laptop"):
        stop = c.report(t.id, step=1, loss=0.9)     # True when rung says stop
        c.complete(t.id, loss=0.5)
    print(c.best(exp.id))

Needs grpcio and protobuf (Debian: python3-grpcio, python3-protobuf). Calls that are safe to
repeat (every read; ask, which returns the trials the client holds; report, which carries a
sequence number; complete) are retried while rungd is unreachable, for up to `retry_for`
seconds: they wait for the connection to come back (gRPC tries to reconnect at most about a
second apart), so they get through within about a second of rungd serving again. Errors
from rungd raise RungError with its words.
"""

import json
import os
import random
import socket
import time

import grpc

from rung.v1 import experiment_service_pb2 as pb
from rung.v1 import experiment_service_pb2_grpc as pb_grpc
from rung.v1 import types_pb2

__all__ = ["Client", "RungError", "Experiment", "Trial", "Report", "AblationResults", "AblationVariant"]


class RungError(Exception):
    """rungd refused a call, or could not be reached. `code` is the gRPC status name."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _state(enum_type, value, prefix):
    return enum_type.Name(value)[len(prefix):].lower()


def _value(v):
    kind = v.WhichOneof("kind")
    return None if kind is None else getattr(v, kind)


class Experiment:
    """An experiment as rungd last described it; `proto` is the full rung.v1.Experiment."""

    def __init__(self, proto):
        self.proto = proto
        self.id = proto.id
        self.name = proto.spec.name
        self.state = _state(types_pb2.ExperimentState, proto.state, "EXPERIMENT_")
        self.best_trial_id = proto.best_trial_id or None
        self.best_value = proto.best_value if proto.has_best else None
        c = proto.counts
        self.counts = {"pending": c.pending, "running": c.running, "completed": c.completed,
                       "failed": c.failed, "stopped": c.stopped, "waiting": c.waiting}
        self.message = proto.message

    @property
    def done(self):
        return self.state in ("completed", "cancelled", "failed")

    def __repr__(self):
        best = "" if self.best_value is None else f", best {self.best_trial_id}={self.best_value:g}"
        return f"Experiment({self.id} {self.name!r}, {self.state}{best})"


class Trial:
    """A trial; `params` is a plain dict, `metrics` the last reported values."""

    def __init__(self, proto):
        self.proto = proto
        self.id = proto.id
        self.experiment_id = proto.experiment_id
        self.index = proto.index
        self.state = _state(types_pb2.TrialState, proto.state, "TRIAL_")
        self.params = {k: _value(v) for k, v in sorted(proto.params.items())}
        self.attempt = proto.attempt
        self.result = proto.result if proto.has_result else None
        self.results = list(proto.results)
        self.metrics = dict(proto.last_metrics)
        self.budget = proto.budget or None
        self.client_id = proto.client_id or None
        self.worker_id = proto.worker_id or None
        # A distributed trial: every rank's worker, node 0 (rank 0's) first.
        self.workers = [p.worker_id for p in proto.placements]
        self.message = proto.message
        # kind: ablation: what the trial leaves out ({"kind", "name", "dropped"}) and its seed.
        self.ablation = json.loads(proto.ablation) if proto.ablation else None
        self.seed = proto.seed or None

    def __repr__(self):
        result = "" if self.result is None else f", result={self.result:g}"
        return f"Trial({self.id}, {self.state}{result}, params={self.params})"


class Report:
    """A metric report, as WatchExperiment streams it."""

    def __init__(self, proto):
        self.proto = proto
        self.trial_id = proto.trial_id
        self.attempt = proto.attempt
        self.step = proto.step
        self.values = dict(proto.values)
        self.final = proto.final

    def __repr__(self):
        return f"Report({self.trial_id}, step={self.step:g}, {self.values})"


class AblationVariant:
    """One variant of an ablation study: the base with `dropped` left out. mean, stddev,
    delta (against the base), harm (delta signed so that positive is worse) and p are None
    when too few runs give them; rank 1 is the removal that hurts most, 0 the base or a
    variant with no completed run."""

    def __init__(self, proto):
        self.proto = proto
        self.kind = proto.kind
        self.name = proto.name
        self.dropped = list(proto.dropped)
        self.runs = proto.runs
        for field in ("mean", "stddev", "delta", "harm", "p"):
            setattr(self, field, getattr(proto, field) if proto.HasField(field) else None)
        self.test = proto.test or None  # "paired t", "Welch t", or None when untested
        self.significant = proto.significant
        self.rank = proto.rank

    def __repr__(self):
        delta = "" if self.delta is None else f", delta={self.delta:+.4g}"
        return f"AblationVariant({self.name!r}, rank {self.rank}, {self.runs} runs{delta})"


class AblationResults:
    """An ablation study's results, as rungd computes them (rung.v1.AblationResults):
    `variants` holds the base first, then the variants by rank, then those without runs."""

    def __init__(self, proto):
        self.proto = proto
        self.experiment_id = proto.experiment
        self.name = proto.name
        self.state = proto.state
        self.objective = proto.objective
        self.goal = proto.goal
        self.repeats = proto.repeats
        self.alpha = proto.alpha
        self.variants = [AblationVariant(v) for v in proto.variants]

    def __repr__(self):
        return f"AblationResults({self.experiment_id} {self.name!r}, {self.state}, {len(self.variants)} variants)"


# gRPC reconnects a lost channel with exponential backoff, by default from 1 s up to 2
# minutes, so a client could go on failing for seconds after rungd came back. These keep the
# first attempts close together and at most about a second apart (gRPC adds 20% jitter).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 << 20),  # a large experiment's trials
]
# The most YAML a spec may have (rungd's limit, common/spec.h's kMaxSpecBytes).
_MAX_SPEC_BYTES = 1 << 20
# Between tries of a call that rungd itself answered UNAVAILABLE ("shutting down; ask again").
_FIRST_PAUSE, _MAX_PAUSE = 0.05, 1.0


class Client:
    """A connection to rungd.

    address: host:port (default RUNG_ADDR, else 127.0.0.1:7411). token, ca, cert, key: as the
    CLI's --token/--ca/--cert/--key (defaults RUNG_TOKEN, RUNG_CA, RUNG_CERT, RUNG_KEY); TLS
    when ca is set. timeout: seconds per call. retry_for: seconds to keep retrying a call
    that is safe to repeat while rungd is unreachable.
    """

    def __init__(self, address=None, token=None, ca=None, cert=None, key=None, timeout=30.0,
                 retry_for=60.0):
        self.address = address or os.environ.get("RUNG_ADDR") or "127.0.0.1:7411"
        token = token if token is not None else os.environ.get("RUNG_TOKEN") or None
        ca = ca or os.environ.get("RUNG_CA") or None
        cert = cert or os.environ.get("RUNG_CERT") or None
        key = key or os.environ.get("RUNG_KEY") or None
        if bool(cert) != bool(key):
            raise ValueError("rung: cert and key go together (mutual TLS)")
        if ca:
            read = lambda path: open(path, "rb").read()
            creds = grpc.ssl_channel_credentials(read(ca), read(key) if key else None,
                                                 read(cert) if cert else None)
            self._channel = grpc.secure_channel(self.address, creds, options=_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.ExperimentServiceStub(self._channel)
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        self.timeout = timeout
        self.retry_for = retry_for
        self.client_id = f"{socket.gethostname()}-{os.getpid()}"
        self._last_seq = 0  # of the last report
        self._holder = {}   # trial id -> the client_id that asked for it

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- calls ----

    def _call(self, method, request, retry=True, timeout=None):
        """Calls `method`. With retry, a call that is safe to repeat waits for a connection
        (wait_for_ready) instead of failing at once while rungd is down, and is tried again
        when rungd answers UNAVAILABLE itself, until `retry_for` seconds have passed."""
        stub = getattr(self._stub, method)
        timeout = timeout or self.timeout
        if not retry or self.retry_for <= 0:
            return self._once(stub, request, timeout)
        give_up = time.monotonic() + self.retry_for
        pause = _FIRST_PAUSE
        while True:
            left = give_up - time.monotonic()
            try:
                return stub(request, timeout=max(min(timeout, left), 0.001), metadata=self._metadata,
                            wait_for_ready=True)
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() < give_up:
                    continue  # it waited a whole timeout for the connection or the answer
                if code == grpc.StatusCode.UNAVAILABLE and time.monotonic() + pause < give_up:
                    time.sleep(pause * random.uniform(0.5, 1.5))  # rungd said so; jittered
                    pause = min(pause * 2, _MAX_PAUSE)
                    continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    # Out of time: one try without waiting, for gRPC's words on why it cannot
                    # connect (or rungd's answer, if it came back just now).
                    return self._once(stub, request, timeout)
                raise _error(e, self.address) from None

    def _once(self, stub, request, timeout):
        try:
            return stub(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e, self.address) from None

    # ---- experiments ----

    def create_experiment(self, spec, base_dir=None):
        """Submits a spec: a path to a YAML file, a YAML string, or a dict. A relative
        trial.workdir is relative to the file's folder (else to base_dir, else the cwd)."""
        if isinstance(spec, dict):
            text, folder = json.dumps(spec), os.getcwd()  # JSON is YAML
        elif isinstance(spec, (str, os.PathLike)) and "\n" not in str(spec) and os.path.isfile(spec):
            with open(spec) as f:
                text = f.read()
            folder = os.path.dirname(os.path.abspath(spec))
        elif isinstance(spec, str):
            if "\n" not in spec and spec.endswith((".yaml", ".yml")):
                raise FileNotFoundError(f"rung: no spec file {spec}")
            text, folder = spec, os.getcwd()
        else:
            raise TypeError("rung: spec is a path, a YAML string or a dict")
        size = len(text.encode())
        if size > _MAX_SPEC_BYTES:  # refused here, as rungd would, before it is sent
            raise RungError("INVALID_ARGUMENT", f"spec: {size} bytes of YAML; at most {_MAX_SPEC_BYTES}")
        req = pb.CreateExperimentRequest(spec_yaml=text, base_dir=base_dir or folder)
        return Experiment(self._call("CreateExperiment", req, retry=False))

    def get(self, experiment_id):
        return Experiment(self._call("GetExperiment", pb.GetExperimentRequest(id=experiment_id)))

    def list(self):
        return [Experiment(e) for e in self._call("ListExperiments", pb.ListExperimentsRequest()).experiments]

    def cancel(self, experiment_id):
        return Experiment(self._call("CancelExperiment", pb.ExperimentRequest(id=experiment_id), retry=False))

    def pause(self, experiment_id):
        return Experiment(self._call("PauseExperiment", pb.ExperimentRequest(id=experiment_id), retry=False))

    def resume(self, experiment_id):
        return Experiment(self._call("ResumeExperiment", pb.ExperimentRequest(id=experiment_id), retry=False))

    def trials(self, experiment_id, sort="", limit=0):
        """The experiment's trials: all of them in index order, or the first `limit` ordered
        by the metric `sort` (best first for an objective, "-NAME" reverses)."""
        out, page = [], ""
        while True:
            req = pb.ListTrialsRequest(experiment_id=experiment_id, sort=sort, page=page)
            if limit > 0:
                req.limit = limit - len(out)
            resp = self._call("ListTrials", req)
            out.extend(Trial(t) for t in resp.trials)
            page = resp.next_page
            if not page or (limit > 0 and len(out) >= limit):
                return out

    def trial(self, trial_id):
        return Trial(self._call("GetTrial", pb.GetTrialRequest(id=trial_id)))

    def metrics(self, trial_id):
        resp = self._call("GetTrialMetrics", pb.GetTrialMetricsRequest(trial_id=_id(trial_id)))
        return [Report(r) for r in resp.reports]

    def best(self, experiment_id, count=None):
        """The best completed trial (None before one completes); with count, a list, best first."""
        resp = self._call("GetBestTrials", pb.GetBestTrialsRequest(experiment_id=experiment_id, count=count or 1))
        trials = [Trial(t) for t in resp.trials]
        if count is not None:
            return trials
        return trials[0] if trials else None

    def ablation(self, experiment_id):
        """An ablation study's results (AblationResults), as rungd computes them from the
        completed runs; RungError FAILED_PRECONDITION for an experiment that is a search."""
        return AblationResults(self._call("GetAblation", pb.GetAblationRequest(experiment_id=experiment_id)))

    def watch(self, experiment_id, timeout=None):
        """Yields the experiment and its trials now, then every change (Experiment, Trial or
        Report) until the experiment has ended and none of its trials runs any more."""
        call = self._stub.WatchExperiment(pb.WatchExperimentRequest(id=experiment_id), timeout=timeout,
                                          metadata=self._metadata)
        try:
            for event in call:
                kind = event.WhichOneof("event")
                if kind == "experiment":
                    yield Experiment(event.experiment)
                elif kind == "trial":
                    yield Trial(event.trial)
                elif kind == "report":
                    yield Report(event.report)
        except grpc.RpcError as e:
            raise _error(e, self.address) from None
        finally:
            call.cancel()

    def wait(self, experiment_id, timeout=None):
        """Blocks until the experiment ends; returns it."""
        for _ in self.watch(experiment_id, timeout=timeout):
            pass
        return self.get(experiment_id)

    # ---- ask and tell (execution: external) ----

    def suggest(self, experiment_id, count=1, client_id=None, wait=True, timeout=None):
        """Up to `count` trials to run, RUNNING and held by `client_id` (default: this host
        and process). Asking again returns the trials the client still holds first, so a
        retry never leaks trials. With wait, waits (up to timeout seconds, default forever)
        until at least one trial comes or the experiment is done; [] means done."""
        req = pb.AskTrialsRequest(experiment_id=experiment_id, client_id=client_id or self.client_id,
                                  count=count)
        give_up = None if timeout is None else time.monotonic() + timeout
        pause = 0.1
        while True:
            resp = self._call("AskTrials", req)
            if resp.trials or resp.done or not wait:
                for t in resp.trials:
                    self._holder[t.id] = req.client_id
                return [Trial(t) for t in resp.trials]
            if give_up is not None and time.monotonic() + pause > give_up:
                return []
            time.sleep(pause)  # rungd said why (resp.why): no trial can go out yet
            pause = min(pause * 2, 2.0)

    def report(self, trial, step=None, client_id=None, **metrics):
        """Reports metrics of a trial this client holds (client_id: by default the one that
        asked for it). True when rung says stop: a stopping rule, a pause or a cancel, or the
        trial is no longer this client's."""
        trial_id = _id(trial)
        # Increasing across calls and across Client objects (microseconds since the epoch), so
        # rungd stores a retried report once and never mistakes a new one for a retry.
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
        req = pb.ReportTrialRequest(trial_id=trial_id, client_id=client_id or self._client_of(trial),
                                    step=float(step or 0), seq=self._last_seq,
                                    values={k: float(v) for k, v in metrics.items()})
        resp = self._call("ReportTrial", req)
        return resp.stop

    def complete(self, trial, client_id=None, failed=False, message="", **metrics):
        """Ends a trial this client holds: completed with these final metrics (or those it
        reported), or failed=True (rung retries it while trial.max_restarts allows)."""
        req = pb.CompleteTrialRequest(trial_id=_id(trial), client_id=client_id or self._client_of(trial),
                                      failed=failed, message=message,
                                      values={k: float(v) for k, v in metrics.items()})
        return Trial(self._call("CompleteTrial", req))

    def tell(self, experiment_id, reports=(), completions=(), client_id=None):
        """Many reports and completions of one experiment's trials in one call (TellTrials),
        for a client that runs many trials at once: the reports first, in order, then the
        completions, all durable when it returns.

        reports: (trial, step, {metric: value}) each; completions: (trial, {metric: value}),
        or (trial, {}, failed, message). Returns (stops, trials): per report, True when rung
        says stop, or the RungError refusing it; per completion, the Trial, or the RungError.
        """
        reports, completions = list(reports), list(completions)
        first = (reports or completions or [(None,)])[0][0]
        req = pb.TellTrialsRequest(
            experiment_id=experiment_id,
            client_id=client_id or (self._client_of(first) if first is not None else self.client_id))
        for trial, step, values in reports:
            self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
            req.reports.add(trial_id=_id(trial), step=float(step or 0), seq=self._last_seq,
                            values={k: float(v) for k, v in values.items()})
        for item in completions:
            trial, values = item[0], item[1]
            failed = bool(item[2]) if len(item) > 2 else False
            message = item[3] if len(item) > 3 else ""
            req.completions.add(trial_id=_id(trial), failed=failed, message=message,
                                values={k: float(v) for k, v in values.items()})
        resp = self._call("TellTrials", req)

        def refused(r):
            return RungError(_code_name(r.code), r.message)
        stops = [r.stop if r.code == 0 else refused(r) for r in resp.reports]
        trials = [Trial(r.trial) if r.code == 0 else refused(r) for r in resp.completions]
        return stops, trials

    def _client_of(self, trial):
        """The client_id that asked for `trial` (through this Client, or as the Trial says)."""
        if isinstance(trial, Trial) and trial.client_id:
            return trial.client_id
        return self._holder.get(_id(trial), self.client_id)


def _code_name(code):
    """The gRPC status name of a numeric code (TellResult.code)."""
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c.name
    return str(code)


def _error(e, address):
    """RungError for a failed call: rungd's words, or why it could not be reached."""
    code, details = e.code(), e.details() or ""
    # rungd's own UNAVAILABLE answers start with "rungd " ("rungd is not accepting changes").
    if (code == grpc.StatusCode.UNAVAILABLE and not details.startswith("rungd ")) or \
            code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"cannot reach rungd at {address} ({details})"
    return RungError(code.name, details)


def _id(trial):
    return trial.id if isinstance(trial, Trial) else str(trial)
