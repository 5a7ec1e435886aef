"""Drives a real rungd through rung.Client (installed with pip): ask and tell, watch, pause,
resume, cancel, a worker-run experiment from a spec file, and errors. Run by clients_test
with the interpreter of a venv made from Debian's /usr/bin/python3 (python3-grpcio):

    python python_client.py ADDRESS SPEC_FILE
"""
import sys

import rung

addr, spec_file = sys.argv[1], sys.argv[2]
c = rung.Client(addr)
assert "site-packages" in rung.client.__file__, rung.client.__file__  # the installed package


def loss_of(t):
    return (t.params["x"] - 0.3) ** 2 + 0.1


# ---- ask and tell: the example, to the end of the experiment ----
exp = c.create_experiment({
    "name": "ask-tell",
    "execution": "external",
    "objective": {"metric": "loss", "goal": "minimize"},
    "search_space": {"x": {"type": "float", "min": 0, "max": 1}},
    "budget": {"max_trials": 6, "max_concurrent": 2},
})
assert exp.state == "pending", exp
seen = []
while True:
    trials = c.suggest(exp.id, count=2, client_id="laptop")
    if not trials:
        break
    again = c.suggest(exp.id, count=2, client_id="laptop")  # a retried ask: the same trials
    assert [t.id for t in again] == [t.id for t in trials], (again, trials)
    for t in trials:
        assert t.state == "running" and t.client_id == "laptop", t
        assert c.report(t.id, step=1, loss=loss_of(t) + 1) is False
        done = c.complete(t.id, loss=loss_of(t))
        assert done.state == "completed" and done.result == loss_of(t), done
        seen.append(done)
assert len(seen) == 6, seen
final = c.get(exp.id)
assert final.state == "completed" and final.done, final
best = c.best(exp.id)
assert best.id == min(seen, key=lambda t: t.result).id, (best, seen)
assert [t.id for t in c.best(exp.id, count=3)][0] == best.id
assert len(c.trials(exp.id)) == 6
assert c.metrics(best.id)[-1].final
assert exp.id in [e.id for e in c.list()]
# An ended experiment's watch: its state and trials, then the end of the stream.
events = list(c.watch(exp.id))
exps = [e for e in events if isinstance(e, rung.Experiment)]
assert exps and exps[-1].state == "completed", events
assert sum(isinstance(e, rung.Trial) for e in events) == 6, events
print("ask-tell:", final, "best", best)


# ---- pause, resume and cancel reach an ask-and-tell client through report ----
exp2 = c.create_experiment("""
execution: external
client_lease_seconds: 300
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 3, max_concurrent: 1}
""")
[t] = c.suggest(exp2.id, count=1)
assert c.pause(exp2.id).state == "paused"
assert c.report(t, step=1, loss=0.5) is True  # rung says stop
assert c.complete(t).state == "paused"
assert c.suggest(exp2.id, wait=False) == []
c.resume(exp2.id)
[t2] = c.suggest(exp2.id, count=1)
assert t2.id == t.id and t2.attempt == 2, t2
assert c.cancel(exp2.id).state == "cancelled"
assert c.report(t2, step=1, loss=0.4) is True
assert c.suggest(exp2.id) == []  # done: nothing more will come

# ---- a worker-run experiment from a spec file, watched to its end ----
exp3 = c.create_experiment(spec_file)
reports = 0
for event in c.watch(exp3.id):
    reports += isinstance(event, rung.Report)
done3 = c.get(exp3.id)
assert done3.state == "completed" and done3.counts["completed"] == 2, done3
assert reports >= 2, reports
try:
    c.suggest(exp3.id)
    raise AssertionError("a worker-run experiment handed a trial to a client")
except rung.RungError as e:
    assert e.code == "FAILED_PRECONDITION" and "execution: external" in e.message, e

# ---- an ablation study run by this client: rungd ranks what matters ----
study = c.create_experiment({
    "name": "py-ablation",
    "kind": "ablation",
    "execution": "external",
    "objective": {"metric": "loss", "goal": "minimize"},
    "base": {"params": {"lr": 0.01}},
    "components": {"features": ["area", "floors"]},
    "repeats": 3,
})
COST = {"area": 1.0, "floors": 0.0}
runs = 0
while True:
    trials = c.suggest(study.id, count=3)
    if not trials:
        break
    for t in trials:
        dropped = t.ablation["dropped"] if t.ablation else []
        noise = 0.01 * ((t.index * 7) % 5)  # differs between runs, so the t-test has a spread
        c.complete(t, loss=0.5 + sum(COST[d] for d in dropped) + noise)
        runs += 1
assert runs == 9, runs  # (base + 2 features) x 3 repeats
a = c.ablation(study.id)
assert isinstance(a, rung.AblationResults), a
assert (a.experiment_id, a.name, a.state, a.objective, a.goal, a.repeats) == \
    (study.id, "py-ablation", "completed", "loss", "minimize", 3), a
assert [v.name for v in a.variants] == ["base", "area", "floors"], a.variants
base, area, floors = a.variants
assert base.kind == "base" and base.rank == 0 and base.runs == 3 and base.delta is None, base
assert area.kind == "feature" and area.dropped == ["area"] and area.rank == 1 and area.runs == 3, area
assert abs(area.delta - 1.0) < 0.05 and area.harm > 0 and area.test == "paired t" and area.p is not None, area
assert floors.rank == 2 and abs(floors.delta) < 0.05, floors
try:
    c.ablation(exp.id)
    raise AssertionError("a search gave ablation results")
except rung.RungError as e:
    assert e.code == "FAILED_PRECONDITION" and "not an ablation study" in e.message, e
print("ablation:", a, a.variants)

# ---- errors name the problem ----
try:
    c.get("e99")
    raise AssertionError("no error for an unknown experiment")
except rung.RungError as e:
    assert e.code == "NOT_FOUND" and "e99" in e.message, e
try:
    c.create_experiment({"objective": {"metric": "loss"}})
    raise AssertionError("no error for a bad spec")
except rung.RungError as e:
    assert e.code == "INVALID_ARGUMENT" and "goal" in e.message, e
try:
    c.create_experiment("objective: {metric: loss, goal: minimize}\n# " + "x" * (1 << 20))
    raise AssertionError("no error for an oversized spec")
except rung.RungError as e:
    assert e.code == "INVALID_ARGUMENT" and e.message == "spec: 1048620 bytes of YAML; at most 1048576", e
assert len(c.list()) == 4  # it was never sent

# ---- many at once: ask for four, tell their reports and completions in one call ----
batch = c.create_experiment({
    "execution": "external",
    "objective": {"metric": "loss", "goal": "minimize"},
    "search_space": {"x": {"type": "float", "min": 0, "max": 1}},
    "budget": {"max_trials": 4},
})
four = c.suggest(batch.id, count=4, client_id="farm")
assert len(four) == 4, four
stops, ended = c.tell(batch.id,
                      reports=[(t, 1, {"loss": loss_of(t) + 1}) for t in four] + [(batch.id + "-9", 1, {"loss": 0})],
                      completions=[(t, {"loss": loss_of(t)}) for t in four])
assert stops[:4] == [False] * 4, stops
assert isinstance(stops[4], rung.RungError) and stops[4].code == "NOT_FOUND", stops[4]
assert [t.state for t in ended] == ["completed"] * 4, ended
assert c.get(batch.id).state == "completed"
print("tell: 4 trials in one call")
print("python client: OK")
