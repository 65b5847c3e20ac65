"""The conformance runner's bookkeeping, without the live kernel: the order of
results with models computed ahead (in a pool or lazily), and the reruns of a
disagreeing case, which must keep the first disagreement in the reason."""
import pytest

from cowlab import catalog, designs
from cowlab.conformance import runner

CASES = ["basic-cow-fork", "basic-cow-fork-mprotect", "vmsplice-unmap-child", "race-fork-gup-fast"]


@pytest.fixture
def fake_kernel(monkeypatch):
    """Real programs replaced by a script of verdicts per case: each launch
    takes the next verdict of its case."""
    script = {}
    launched = []

    def launch(prep, server):
        launched.append(prep.case.id)
        return prep.case.id

    def judge(prep, proc, design):
        verdict = script.get(proc, ["agree"]).pop(0) if script.get(proc) else "agree"
        return runner.CaseResult(prep.case.id, verdict, 3, f"{verdict} by script", control=prep.shared)

    monkeypatch.setattr(runner, "_launch", launch)
    monkeypatch.setattr(runner, "_judge", judge)
    return script, launched


@pytest.mark.parametrize("jobs", [0, 1])
def test_results_keep_the_case_order(fake_kernel, jobs):
    d = designs.load("linux-6.18")
    res = runner.run_cases([catalog.get(c) for c in CASES], d, jobs=jobs)
    assert [r.case for r in res] == CASES
    assert [r.result for r in res] == ["agree", "agree", "agree", "skip"]     # a race cannot be run for real
    assert "race" in res[3].reason


def test_a_disagreement_is_rerun_and_kept_in_the_reason(fake_kernel):
    script, launched = fake_kernel
    script["basic-cow-fork"] = ["disagree", "agree"]
    d = designs.load("linux-6.18")
    r = runner.run_cases([catalog.get("basic-cow-fork")], d, jobs=0)[0]
    assert r.result == "agree"
    assert "attempt 2 of 3" in r.reason and "attempt 1 disagreed: disagree by script" in r.reason
    assert launched == ["basic-cow-fork", "basic-cow-fork"]


def test_a_steady_disagreement_stays_one(fake_kernel):
    script, launched = fake_kernel
    script["basic-cow-fork"] = ["disagree"] * 3
    d = designs.load("linux-6.18")
    r = runner.run_cases([catalog.get("basic-cow-fork")], d, jobs=0)[0]
    assert r.result == "disagree" and "no agreement in 3 attempts" in r.reason
    assert len(launched) == 3


def test_a_control_runs_once(fake_kernel):
    script, launched = fake_kernel
    script["basic-cow-fork"] = ["disagree", "agree"]
    d = designs.load("linux-6.18")
    r = runner.run_cases([catalog.get("basic-cow-fork")], d, shared=True, jobs=0)[0]
    assert r.result == "disagree" and r.control
    assert launched == ["basic-cow-fork"]


def test_a_rerun_that_skips_does_not_hide_the_disagreement(fake_kernel):
    script, launched = fake_kernel
    script["basic-cow-fork"] = ["disagree", "skip", "skip"]
    d = designs.load("linux-6.18")
    r = runner.run_cases([catalog.get("basic-cow-fork")], d, jobs=0)[0]
    assert r.result == "disagree" and r.reason.startswith("disagree by script")


def test_results_reach_the_callers_list_as_they_come(fake_kernel, monkeypatch):
    # an interrupted run keeps the cases already done
    seen = []
    d = designs.load("linux-6.18")

    def stop_after_two(r):
        if len(seen) == 2:
            raise KeyboardInterrupt
    out = []
    with pytest.raises(KeyboardInterrupt):
        runner.run_cases([catalog.get(c) for c in CASES], d, jobs=0, into=out,
                         log=lambda r: (seen.append(r), stop_after_two(r)))
    assert [r.case for r in out] == CASES[:2]


def test_a_user_design_file_goes_through_the_model_pool(fake_kernel, tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("from cowlab.designs.linux_6_18 import Linux618\n\n"
                 "class Mine(Linux618):\n    name: str = 'mine'\n\nDESIGN = Mine()\n")
    d = designs.load(str(f))
    res = runner.run_cases([catalog.get(c) for c in CASES], d, jobs=1)
    assert [r.result for r in res] == ["agree", "agree", "agree", "skip"]
