"""The random run without the live kernel: what the kernel's data shows
(``DataSpec``), the verdict check, the shrinker, and a whole run against a
fake kernel -- the model's own states served as the kernel's lines, with one
deliberate difference -- down to the TOML reproducer and its replay."""
import pytest

from cowlab import designs, scenario_gen
from cowlab.conformance import random as cr
from cowlab.conformance import runner
from cowlab.kernel.types import PG_ksm
from cowlab.scenario_gen import Scenario, normalize
from cowlab.toml_format import load_case

D618 = designs.load("linux-6.18")


def _plan(steps, pages=2):
    procs = ["parent"] + [a["child"] for _, op, a in steps if op == "fork"]
    return {"pages": pages, "processes": procs,
            "steps": [{"process": p, "op": op, "args": a} for p, op, a in steps]}


def _lines(values):
    return [{"ok": True, "value": v, "snapshot": {}} for v in values]


# ----------------------------------------------------------------------------- DataSpec
def test_a_child_seeing_the_parents_later_write_is_a_leak():
    steps = [("parent", "mmap", {"addr": 0}), ("parent", "write", {"addr": 0, "value": [5]}),
             ("parent", "fork", {"child": "c1"}), ("parent", "write", {"addr": 0, "value": [6]}),
             ("c1", "read", {"addr": 0})]
    assert cr.observed(_plan(steps), _lines([None, None, None, None, [5]])) == []
    got = cr.observed(_plan(steps), _lines([None, None, None, None, [6]]))
    assert [(i, k) for i, k, _ in got] == [(4, "leak")]


def test_a_pin_reading_an_older_value_is_stale():
    steps = [("parent", "mmap", {"addr": 0}), ("parent", "write", {"addr": 0, "value": [5]}),
             ("parent", "io_uring_register", {"addr": 0, "buf": "b"}), ("parent", "write", {"addr": 0, "value": [7]}),
             ("parent", "io_uring_write_fixed", {"buf": "b"})]
    assert cr.observed(_plan(steps), _lines([None] * 4 + [[7]])) == []
    assert [k for _, k, _ in cr.observed(_plan(steps), _lines([None] * 4 + [[5]]))] == ["stale"]


def test_the_pin_follows_its_pages_through_mremap_and_keeps_them_after_munmap():
    # mremap: the fixed buffer holds the pages, not the address (move_ptes()); DMA after munmap lands in the
    # buffer's own pages, which nobody else sees
    moved = [("parent", "mmap", {"addr": 0, "pages": 2}), ("parent", "write", {"addr": 0, "value": [5]}),
             ("parent", "io_uring_register", {"addr": 0, "buf": "b"}), ("parent", "mremap", {"addr": 0, "new_addr": 1}),
             ("parent", "write", {"addr": 1, "value": [9]}), ("parent", "io_uring_write_fixed", {"buf": "b"})]
    assert cr.observed(_plan(moved), _lines([None] * 5 + [[9]])) == []
    gone = [("parent", "mmap", {"addr": 0}), ("parent", "io_uring_register", {"addr": 0, "buf": "b"}),
            ("parent", "munmap", {"addr": 0}), ("parent", "io_uring_read_fixed", {"buf": "b", "value": [3]}),
            ("parent", "io_uring_write_fixed", {"buf": "b"})]
    assert cr.observed(_plan(gone), _lines([None] * 4 + [[3]])) == []


def test_a_pipe_holding_another_processes_data_is_a_leak_but_an_old_value_is_not():
    steps = [("parent", "mmap", {"addr": 0}), ("parent", "write", {"addr": 0, "value": [5]}),
             ("parent", "fork", {"child": "c1"}), ("c1", "vmsplice", {"addr": 0, "pipe": "p"}),
             ("c1", "munmap", {"addr": 0}), ("parent", "write", {"addr": 0, "value": [8]}),
             ("c1", "pipe_read", {"pipe": "p"})]
    assert [k for _, k, _ in cr.observed(_plan(steps), _lines([None] * 6 + [[8]]))] == ["leak"]
    assert cr.observed(_plan(steps), _lines([None] * 6 + [[5]])) == []


# ----------------------------------------------------------------------------- the verdict check
class _Prep:
    def __init__(self, steps):
        self.plan = _plan(steps)
        self.case = Scenario("t", 2, steps, []).case()


LEAK = [("parent", "mmap", {"addr": 0}), ("parent", "write", {"addr": 0, "value": [5]}),
        ("parent", "fork", {"child": "c1"}), ("parent", "write", {"addr": 0, "value": [6]}),
        ("c1", "read", {"addr": 0})]


def test_every_missed_verdict_is_a_finding_and_says_whether_the_kernel_bears_it_out():
    prep = _Prep(LEAK)
    reason, sig = cr.check_verdicts(prep, [(3, "missed", "parent wrote page 0 into a page c1 still maps")],
                                    _lines([None] * 4 + [[6]]))
    assert sig == ("verdict-missed", "write", "confirmed") and "bears it out at step 5" in reason
    reason, sig = cr.check_verdicts(prep, [(3, "missed", "x")], _lines([None] * 4 + [[5]]))
    assert sig == ("verdict-missed", "write", "unconfirmed") and "shows no such thing" in reason


def test_kernel_data_no_verdict_explains_is_a_finding():
    reason, sig = cr.check_verdicts(_Prep(LEAK), [], _lines([None] * 4 + [[6]]))
    assert sig == ("unflagged-leak", "read") and "no verdict" in reason
    assert cr.check_verdicts(_Prep(LEAK), [], _lines([None] * 4 + [[5]])) is None


def test_model_verdicts_counts_each_incident_once_at_its_operation():
    # cve-2020-29374 shape: under linux-5.7 the parent's write after the child's vmsplice + unmap is seen in the pipe
    steps = [("parent", "mmap", {"addr": 0}), ("parent", "write", {"addr": 0}), ("parent", "fork", {"child": "c1"}),
             ("c1", "vmsplice", {"addr": 0, "pipe": "p"}), ("c1", "munmap", {"addr": 0}),
             ("parent", "write", {"addr": 0}), ("c1", "pipe_read", {"pipe": "p"})]
    case = Scenario("t", 1, steps, []).case()
    v = cr.model_verdicts(case, designs.load("linux-5.7"))
    assert v and {i for i, _, _ in v} <= {5, 6} and all(k == "missed" for _, k, _ in v)
    assert cr.model_verdicts(case, D618) == []


# ----------------------------------------------------------------------------- the shrinker
def _has_pageout_then_read(scn):
    seen = set()
    for p, op, a in scn.steps:
        if op == "pageout":
            seen.add((p, a["addr"]))
        if op == "read" and any((p, x) in seen for x in range(a["addr"], a["addr"] + a.get("pages", 1))):
            return True
    return False


def test_the_shrinker_finds_a_minimal_failing_scenario():
    scns = [s for s in scenario_gen.scenarios(7, 200) if _has_pageout_then_read(s) and len(s.body) > 8]
    assert scns
    calls = []

    def still(c):
        calls.append(c)
        return _has_pageout_then_read(c)
    small, tests = cr.shrink(scns[0], still)
    assert _has_pageout_then_read(small)
    assert tests == len(calls) <= cr.SHRINK_BUDGET
    # what remains is a mapping, a pageout and the read of that page (the sweep's read, or the body's)
    assert len(small.steps) <= 3, small.steps
    assert [op for _, op, _ in small.steps][0] == "mmap"
    # and it is a valid scenario (normalize keeps every step), and 1-minimal: without any one of its steps the
    # scenario passes
    assert normalize(small.pages, small.body)[0] == small.body
    for k in range(len(small.body)):
        b, sw = normalize(small.pages, small.body[:k] + small.body[k + 1:])
        assert not _has_pageout_then_read(Scenario("x", small.pages, b, sw))


def test_the_shrinker_stays_within_its_budget():
    scn = next(scenario_gen.scenarios(7, 1))
    small, tests = cr.shrink(scn, lambda c: True, budget=5)
    assert tests <= 5


# ----------------------------------------------------------------------------- a fake kernel
def _kernel_lines(prep, bug):
    """The lines a kernel that does what the model does would give; ``bug``
    may change the snapshot of a step (step index, plan step, snapshot)."""
    m, out = prep.m, []
    pagesn = prep.case.pages
    names = list(prep.case.processes)
    for i, ((proc, op, s, stores, loads, thread, res), step) in enumerate(zip(prep.msteps, prep.plan["steps"])):
        snap = {}
        for pi, name in enumerate(names):
            if not s.mms[pi].alive:
                continue
            ents = []
            for kind, key, excl, mapc, zero, _ in runner._model_view(m, s, pi, pagesn):
                e = {"present": kind == "present", "swapped": kind == "swap"}
                if kind == "present":
                    pfn = 7 if zero else 1000 + key[0] * 64 + key[1]
                    e.update(pfn=pfn, count=mapc or 0, anon=not zero, exclusive=bool(excl),
                             ksm=bool(not zero and s.folios[key[0]].flags & PG_ksm))
                ents.append(e)
            snap[name] = ents
        value = [runner._token_byte(t) for t in loads] if op.name in runner.DATA_READ_BY else None
        if op.name == "vmsplice" and res.kind == "ok":
            value = res.pages
        line = {"ok": True, "value": value, "snapshot": snap}
        # (a refused call, a kill, a step of a dead process: the worker's lines for them)
        if res.kind == "error":
            line = {"ok": False, "errno": res.errno, "error": "OSError", "snapshot": snap}
        elif res.kind == "killed":
            line = {"ok": False, "killed": "SIGSEGV", "error": "killed", "snapshot": snap}
        elif res.kind == "not_run":
            line = {"ok": False, "not_run": True, "error": "not run", "snapshot": snap}
        bug(i, step, line, prep.plan["steps"][:i])
        out.append(line)
    return out


@pytest.fixture
def fake_kernel(monkeypatch):
    state = {"bug": lambda i, step, line, before: None, "runs": 0}

    class Handle:
        def __init__(self, prep):
            self.prep = prep

        def collect(self):
            state["runs"] += 1
            return _kernel_lines(self.prep, state["bug"]), ""

    monkeypatch.setattr(runner, "_launch", lambda prep, server: Handle(prep))
    return state


HOST = {"ksm": "", "cpus": 2, "gup_test": "needs gup_test"}


def test_a_kernel_that_does_what_the_model_does_agrees(fake_kernel):
    rep = cr.run_random(30, 5, D618, True, HOST, None, exclude=scenario_gen.KNOWN_CLASSES, jobs=0)
    c = rep.counts()
    assert c["scenarios"] == 30 and c["disagree"] == 0 and c["agree"] == 30
    assert c["steps_compared"] == sum(len(s.steps) for s in scenario_gen.scenarios(
        5, 30, scenario_gen.KNOWN_CLASSES, cr.host_unavailable(HOST, True)))
    assert [r.case for r in rep.results] == [f"random-s5-{i}" for i in range(30)]


def _swapin_not_exclusive(i, step, line, before):
    """A kernel bug: after a pageout, a read sees PG_anon_exclusive flipped."""
    if step["op"] == "read" and any(b["op"] == "pageout" and b["process"] == step["process"] for b in before):
        for ents in line["snapshot"].values():
            for e in ents:
                if e.get("anon"):
                    e["exclusive"] = not e["exclusive"]


def test_a_disagreement_is_shrunk_written_as_toml_and_replayed(fake_kernel, tmp_path, monkeypatch):
    fake_kernel["bug"] = _swapin_not_exclusive
    rep = cr.run_random(60, 5, D618, True, HOST, str(tmp_path), exclude=scenario_gen.KNOWN_CLASSES, jobs=0)
    c = rep.counts()
    assert c["disagree"] > 0
    assert all(r.result in ("agree", "disagree") for r in rep.results)
    (sig, f), = [(s, f) for s, f in rep.findings.items() if s[0] == "exclusive"]
    assert sig == ("exclusive", "read")
    assert f.count == 1 + sum("(class exclusive / read: see" in r.reason for r in rep.results)
    assert f.reproduced == "3/3" and f.at_end == "3/3" and f.steps <= 5 and f.from_steps > f.steps
    text = open(f.file).read()
    assert "class: exclusive / read" in text and "PG_anon_exclusive" in text
    case = load_case(f.file)
    ops = [op.name for t in case.threads for op in t.ops]
    assert {"mmap", "write", "pageout", "read"} <= set(ops)
    # the replay of the file disagrees in the same way, and agrees once the kernel is fixed
    r, = cr.run_files([f.file], D618, True, HOST)
    assert r.result == "disagree" and "PG_anon_exclusive" in r.reason and r.case == f.file
    fake_kernel["bug"] = lambda *a: None
    r, = cr.run_files([f.file], D618, True, HOST)
    assert r.result == "agree"


def test_the_json_report_has_conformances_schema_and_the_counts(fake_kernel):
    rep = cr.run_random(5, 1, D618, True, HOST, None, jobs=0)
    d = rep.as_json()
    for k in ("scenarios", "steps_compared", "agree", "disagree", "skip", "skipped_scenarios_by_reason",
              "ops_not_generated_by_reason", "scenarios_per_minute", "findings", "design_verdicts"):
        assert k in d
    assert all(set(r.as_json()) >= {"case", "result", "steps_compared", "reason"} for r in rep.results)


def test_the_same_seed_gives_the_same_run(fake_kernel):
    a = cr.run_random(8, 11, D618, True, HOST, None, jobs=0)
    b = cr.run_random(8, 11, D618, True, HOST, None, jobs=0)
    assert [(r.case, r.result, r.steps_compared, r.reason) for r in a.results] == \
        [(r.case, r.result, r.steps_compared, r.reason) for r in b.results]


def test_models_computed_in_the_pool_give_the_same_results(fake_kernel):
    a = cr.run_random(8, 12, D618, True, HOST, None, jobs=0)
    b = cr.run_random(8, 12, D618, True, HOST, None, jobs=1)
    assert [(r.case, r.result, r.steps_compared) for r in a.results] == \
        [(r.case, r.result, r.steps_compared) for r in b.results]


def test_a_reproducer_id_fits_the_scenario_format():
    """A long class (dma-after-unmap / verdict-missed / io_uring_write_fixed / unconfirmed once gave a 70-character
    id that `cowlab run` refused): the id is cut to the name limit, kebab-case, and two long classes stay apart."""
    from cowlab.toml_format import KEBAB, MAX_NAME
    long_a = "dma-after-unmap-verdict-missed-io-uring-write-fixed-unconfirmed"
    long_b = "dma-after-unmap-verdict-missed-io-uring-read-fixed-unconfirmed"
    a, b = cr._finding_id(long_a), cr._finding_id(long_b)
    assert len(a) <= MAX_NAME and len(b) <= MAX_NAME and a != b
    assert KEBAB.match(a) and KEBAB.match(b)
    assert cr._finding_id("exclusive-read") == "random-exclusive-read"
