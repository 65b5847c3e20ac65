"""The exit-status policy (cowlab/exitcodes.py) and every command applying it."""
import pytest

from cowlab import exitcodes as ec


def test_policy():
    assert ec.status() == ec.OK == 0
    assert ec.status({"missed"}) == ec.FOUND == 1
    assert ec.status({"unnecessary"}) == 0
    assert ec.status({"unnecessary"}, ec.parse_fail_on("unnecessary")) == 1
    assert ec.status(inconclusive=True) == ec.INCONCLUSIVE == 3
    assert ec.status({"wrong"}, inconclusive=True) == 1          # found wins over inconclusive
    assert ec.status(failed=True) == 1
    assert ec.of_results([{"outcomes": {"missed": 0, "wrong": 0, "unnecessary": 2}, "status": "complete"}]) == 0
    assert ec.of_results([{"outcomes": {"missed": 0}, "status": "inconclusive"}]) == 3
    assert ec.of_results([{"outcomes": {"missed": 0}, "status": "complete", "model_bugs": ["x"]}]) == 3
    assert ec.of_results([], interrupted=True) == 3


def test_parse_fail_on():
    assert ec.parse_fail_on("missed, wrong") == {"missed", "wrong"}
    assert ec.parse_fail_on("all") == set(ec.KINDS)
    assert ec.parse_fail_on("none") == frozenset()
    for bad in ("mised", "", "none,missed"):
        with pytest.raises(ValueError):
            ec.parse_fail_on(bad)
    with pytest.raises(ValueError, match="allowed: missed, wrong, unnecessary"):
        ec.parse_fail_on("leak")


# ----------------------------------------------------------------------------- every command applies it
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from cowlab.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _code(*argv):
    r = CliRunner().invoke(main, list(argv))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code


def test_matrix_exit_status():
    assert _code("matrix", "-c", "basic-cow-fork", "-d", "linux-6.18", "-q") == 0
    assert _code("matrix", "-c", "cve-2020-29374", "-d", "linux-5.7", "-q") == 1
    for fmt in ("json", "junit"):          # the format does not change the status (junit wrote failures="1", exit 0)
        assert _code("matrix", "-c", "cve-2020-29374", "-d", "linux-5.7", "-q", "--format", fmt) == 1
    # lru-batch-fresh-page under linux-5.9: an unnecessary COW only (README's table)
    assert _code("matrix", "-c", "lru-batch-fresh-page", "-d", "linux-5.9", "-q") == 0
    assert _code("matrix", "-c", "lru-batch-fresh-page", "-d", "linux-5.9", "-q", "--fail-on", "unnecessary") == 1
    assert _code("matrix", "-c", "cve-2020-29374", "-d", "linux-5.7", "-q", "--fail-on", "wrong") == 0
    assert _code("matrix", "-c", "cve-2020-29374", "-d", "linux-5.7", "-q", "--fail-on", "none") == 0
    assert _code("matrix", "-c", "basic-cow-fork", "--fail-on", "leaks") == 2
    assert _code("matrix", "-c", "no-such-case") == 2


def test_junit_failures_follow_fail_on():
    import xml.etree.ElementTree as ET
    r = CliRunner().invoke(main, ["matrix", "-c", "lru-batch-fresh-page", "-d", "linux-5.9", "-q", "--format", "junit",
                                  "--fail-on", "unnecessary"])
    assert r.exit_code == 1 and ET.fromstring(r.stdout).attrib["failures"] == "1"


STUCK = """id = "waits-for-nobody"
title = "a thread waits for an event nobody signals"
{expect}
[[step]]
thread = "parent"
op = "mmap"
addr = 0

[[thread]]
name = "waiter"
process = "parent"
ops = [ {{ op = "wait", event = "never" }}, {{ op = "write", addr = 0 }} ]
"""


def test_inconclusive_is_3(tmp_path):
    f = tmp_path / "stuck.toml"
    f.write_text(STUCK.format(expect=""))
    for cmd in (["run"], ["explore", "-q"], ["matrix", "-q", "-c"], ["explain"]):
        argv = cmd[:1] + ([str(f)] if cmd[0] != "matrix" else []) + cmd[1:] + ([str(f)] if cmd[0] == "matrix" else [])
        assert _code(*argv, "-d", "linux-6.18") == 3, cmd
    f.write_text(STUCK.format(expect="expect_stuck = true"))          # declared expected: complete, nothing found
    assert _code("explore", str(f), "-d", "linux-6.18", "-q") == 0
    assert _code("matrix", "-c", str(f), "-d", "linux-6.18", "-q") == 0
    # a limit hit before anything was found
    assert _code("explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--max-states", "3") == 3
    # random walks never prove absence
    assert _code("explore", "basic-cow-fork", "-d", "linux-6.18", "-q", "--random", "3") == 3


def test_explore_ctrl_c_is_3(monkeypatch):
    import cowlab.explore
    from cowlab.explore import Report
    monkeypatch.setattr(cowlab.explore, "explore",
                        lambda *a, **kw: Report(status="inconclusive", reason="interrupted", states=3))
    r = CliRunner().invoke(main, ["explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--format", "json"])
    assert r.exit_code == 3 and json.loads(r.stdout)["status"] == "inconclusive"


def test_ctrl_c_in_a_command_is_3(monkeypatch):
    import cowlab.model

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(cowlab.model, "CowModel", interrupted)
    r = CliRunner().invoke(main, ["run", "basic-cow-fork", "-d", "linux-6.18"])
    assert r.exit_code == 3 and r.stderr == "cowlab: interrupted: the result is inconclusive\n"


def test_run_explore_explain_replay_selftest(tmp_path):
    assert _code("run", "basic-cow-fork", "-d", "linux-6.18") == 0
    assert _code("run", "cve-2020-29374", "-d", "linux-5.7") == 1
    assert _code("run", "cve-2020-29374", "-d", "linux-5.7", "--fail-on", "unnecessary") == 0
    assert _code("explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q") == 1
    assert _code("explore", "race-fork-gup-fast", "-d", "linux-5.11", "-q") == 0
    assert _code("explain", "cve-2020-29374", "-d", "linux-5.7") == 1
    assert _code("explain", "basic-cow-fork", "-d", "linux-6.18") == 0
    t = tmp_path / "t.json"
    assert _code("explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--save-trace", str(t)) == 1
    assert _code("replay", str(t)) == 0         # the shortest trace (15 steps) shows the unnecessary COW only
    assert _code("replay", str(t), "--fail-on", "unnecessary") == 1
    assert _code("explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--save-trace", str(t), "--kind",
                 "missed") == 1
    assert _code("replay", str(t)) == 1
    assert _code("selftest", "-d", "linux-6.18") == 0
    assert _code("selftest", "-d", "linux-5.7") == 1
    assert _code("selftest", "-d", "linux-5.77") == 2


def _conf_result(result, control=False):
    return SimpleNamespace(result=result, control=control, case="basic-cow-fork", steps_compared=3, reason="",
                           as_json=lambda: {"case": "basic-cow-fork", "result": result})


def test_conformance_exit_status(monkeypatch):
    """The live run replaced by its results (no machine is touched here)."""
    from cowlab import conformance as conf
    for results, want in (([_conf_result("agree")], 0), ([_conf_result("disagree")], 1),
                          ([_conf_result("agree"), _conf_result("agree", control=True)], 1)):
        monkeypatch.setattr(conf, "run", lambda *a, _r=results, **kw: ("6.18", "linux-6.18", "note", _r, []),
                            raising=False)
        assert _code("conformance", "basic-cow-fork", "--no-controls") == want, results

    def interrupted(*a, **kw):
        raise conf.Interrupted("6.18", "linux-6.18", "note", [_conf_result("agree")], ["swap off"])
    monkeypatch.setattr(conf, "run", interrupted, raising=False)
    r = CliRunner().invoke(main, ["conformance", "basic-cow-fork"])
    assert r.exit_code == 3 and "inconclusive" in r.stderr


def test_every_command_documents_the_exit_statuses():
    from cowlab import exitcodes
    for name, cmd in main.commands.items():
        r = CliRunner().invoke(main, [name, "--help"], terminal_width=200)
        assert r.exit_code == 0
        text = " ".join(r.output.split())
        assert " ".join(exitcodes.EPILOG.split()) in text, name
    readme = (ROOT / "README.md").read_text()
    for line in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "--fail-on"):
        assert line in readme, line


def test_the_readme_ci_script():
    """`cowlab explore ... || echo broken` behaves as the README says."""
    def ci(design):
        p = subprocess.run(f"{sys.executable} -m cowlab.cli explore race-fork-gup-fast -d {design} -q > /dev/null "
                           f"|| echo broken", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
        return p.stdout.strip()
    assert ci("linux-5.9") == "broken"
    assert ci("linux-5.11") == ""
