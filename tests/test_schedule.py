"""The one scheduler (sequential schedule, seeded random walk) and the one verdict enum."""
import json
import random

from cowlab import catalog, designs, model, oracle, verdict
from cowlab.model import CowModel
from cowlab.run import run_sequential
from cowlab.scenario import Script
from cowlab.schedule import in_operation, random_walk, sequential


def test_sequential_runs_each_operation_to_completion():
    m = CowModel(catalog.get("cve-2020-29374"), designs.load("linux-5.7"))
    run = sequential(m)
    trs = list(run)
    assert run.end == "done" and run.steps == len(trs) and m.is_done(run.state)
    # a thread inside an operation keeps the CPU: the next step is its own
    for a, b in zip(trs, trs[1:]):
        if in_operation(a.state, a.tid):
            assert b.tid == a.tid
    # run uses this very schedule
    r = run_sequential(m)
    assert [(s["thread"], s["label"]) for s in r.trace] == [(m.thread_name(t.tid), t.label) for t in trs]


def test_ends_stuck_and_at_the_step_limit():
    s = Script("wait", pages=1)
    s.process("parent").mmap(0)
    s.thread("parent", [("wait", {"event": "never"})], name="w")
    m = CowModel(s.build(), designs.load("linux-5.19"))
    run = sequential(m)
    list(run)
    assert run.end == "stuck" and run.unfinished() == [1]
    run = sequential(CowModel(catalog.get("cve-2020-29374"), designs.load("linux-5.7")), max_steps=3)
    assert len(list(run)) == 3 and run.end == "limit"


def test_random_walk_is_seeded():
    m = CowModel(catalog.get("race-reclaim-pin"), designs.load("linux-5.11"))
    walks = [[(t.tid, t.label) for t in random_walk(m, random.Random(seed))] for seed in (5, 5, 6)]
    assert walks[0] == walks[1]
    w = random_walk(m, random.Random(5))
    list(w)
    assert w.end == "done"


def test_one_verdict_enum():
    assert verdict.VERDICTS == tuple(verdict.Verdict) == ("missed", "unnecessary", "wrong")
    assert model.VERDICTS is verdict.VERDICTS
    assert oracle.MISSED is verdict.Verdict.MISSED and oracle.WRONG is verdict.Verdict.WRONG
    assert oracle.UNNECESSARY is verdict.Verdict.UNNECESSARY
    # str-valued: JSON, text and dict lookups read as plain strings did
    assert json.dumps({verdict.MISSED: verdict.WRONG}) == '{"missed": "wrong"}'
    assert f"{verdict.UNNECESSARY} COW" == "unnecessary COW"
    r = run_sequential(CowModel(catalog.get("cve-2020-29374"), designs.load("linux-5.7")))
    assert r.outcomes["missed"] == 1 and all(type(k) is verdict.Verdict for k in r.outcomes)
    assert json.loads(json.dumps(r.as_json()))["outcomes"] == {"missed": 1, "unnecessary": 0, "wrong": 0}
