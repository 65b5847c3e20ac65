"""The matrix never says "no" on results it does not have: after Ctrl-C, or over runs that ended stuck."""
import json

from click.testing import CliRunner

from cowlab import matrix
from cowlab.cli import main
from cowlab.explore import Report

CASES = ["basic-cow-fork", "cve-2020-29374", "ro-pin-exclusive", "vmsplice-unmap-child"]
DESIGNS = ["linux-5.7", "linux-6.18"]


def _interrupt_at(monkeypatch, n):
    """Ctrl-C during the n-th unit of work (as a real Ctrl-C would arrive inside a run)."""
    real, calls = matrix.run_unit, []

    def run_unit(*unit):
        calls.append(unit)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*unit)
    monkeypatch.setattr(matrix, "run_unit", run_unit)
    return calls


def test_interrupted_matrix_says_unknown_not_no(monkeypatch):
    calls = _interrupt_at(monkeypatch, 4)     # units go case by case: linux-6.18 has 1 result of 4
    m = matrix.compute(DESIGNS, CASES, jobs=1)
    assert len(calls) == 4 and len(m.results) == 3
    assert m.interrupted and not m.complete and "interrupted after 3 of 8 runs" in m.note
    table = {row["design"]: row for row in m.table()}
    for d in DESIGNS:
        for kind in matrix.KINDS:
            # no run of these designs showed these outcomes, but most runs were never computed: unknown
            if not table[d][kind]["occurs"]:
                assert table[d][kind]["occurs"] is None, (d, kind)
    assert table["linux-5.7"]["missed"]["occurs"] is True       # what was computed still counts (cve-2020-29374)
    j = m.as_json()
    assert j["interrupted"] is True and j["status"] == "inconclusive"
    assert json.loads(json.dumps(j))["table"][1]["wrong"]["occurs"] is None


def test_uninterrupted_matrix_still_says_no():
    m = matrix.compute(["linux-6.18"], ["basic-cow-fork", "cve-2020-29374"], jobs=1)
    assert m.complete and not m.interrupted
    row = m.table()[0]
    assert row["missed"]["occurs"] is False and row["wrong"]["occurs"] is False
    assert m.as_json()["interrupted"] is False


def test_matrix_command_after_ctrl_c(monkeypatch):
    _interrupt_at(monkeypatch, 2)
    args = ["matrix", "-j", "1", "-q"] + [a for d in DESIGNS for a in ("-d", d)] + [a for c in CASES for a in ("-c", c)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0
    assert "interrupted after 1 of 8 runs" in r.output and "inconclusive" in r.output
    summary = r.output.split("case x design")[0]
    assert "unknown" in summary and " no " not in summary.replace("│", " ")
    _interrupt_at(monkeypatch, 2)
    r = CliRunner().invoke(main, args + ["--format", "json"])
    assert r.exit_code != 0
    d = json.loads(r.output[:r.output.rindex("}") + 1])
    assert d["interrupted"] is True and d["status"] == "inconclusive"
    assert all(row[k]["occurs"] in (True, None) for row in d["table"] for k in matrix.KINDS)


def test_ctrl_c_inside_an_exploration_stops_the_sweep(monkeypatch):
    import cowlab.explore
    explored = []

    def interrupted_explore(model, *a, **kw):
        explored.append(model.case.id)
        return Report(status="inconclusive", reason="interrupted", states=7, transitions=9)
    monkeypatch.setattr(cowlab.explore, "explore", interrupted_explore)
    m = matrix.compute(["linux-5.9"], ["basic-cow-fork", "race-fork-gup-fast", "cve-2020-29374"], jobs=1)
    assert explored == ["race-fork-gup-fast"]
    assert m.interrupted and [r.case for r in m.results] == ["basic-cow-fork", "race-fork-gup-fast"]
    assert m.results[1].status == "inconclusive" and m.results[1].explored["states"] == 7   # what it covered
    assert all(m.table()[0][k]["occurs"] is None for k in matrix.KINDS)


STUCK = """id = "waits-for-nobody"
title = "a thread waits for an event nobody signals"
tags = [{tags}]
{expect}
[[step]]
thread = "parent"
op = "mmap"
addr = 0

[[step]]
thread = "parent"
op = "write"
addr = 0

[[thread]]
name = "waiter"
process = "parent"
ops = [ {{ op = "wait", event = "never" }}, {{ op = "write", addr = 0 }} ]
"""


def test_stuck_runs_are_unknown_in_the_matrix(tmp_path):
    for tags in ('"race"', ""):          # explored, and run on the sequential schedule
        f = tmp_path / f"stuck{len(tags)}.toml"
        f.write_text(STUCK.format(tags=tags, expect=""))
        m = matrix.compute(["linux-6.18"], [str(f)], jobs=1)
        (r,) = m.results
        assert r.status == "inconclusive" and ("stuck" in r.reason or "deadlock" in r.reason), r.reason
        assert not m.complete
        assert all(m.table()[0][k]["occurs"] is None for k in matrix.KINDS)
        r = CliRunner().invoke(main, ["explore", str(f), "-d", "linux-6.18", "--format", "json"])
        assert json.loads(r.output)["status"] == "inconclusive"


def test_stuck_runs_the_case_expects(tmp_path):
    for tags in ('"race"', ""):
        f = tmp_path / f"stuck{len(tags)}.toml"
        f.write_text(STUCK.format(tags=tags, expect="expect_stuck = true"))
        m = matrix.compute(["linux-6.18"], [str(f)], jobs=1)
        (r,) = m.results
        assert r.status == "complete", r.reason
        assert all(m.table()[0][k]["occurs"] is False for k in matrix.KINDS)
        r = CliRunner().invoke(main, ["explore", str(f), "-d", "linux-6.18", "--format", "json"])
        assert json.loads(r.output)["status"] == "complete"
