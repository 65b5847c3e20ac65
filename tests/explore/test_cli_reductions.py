"""`cowlab explore --dpor / --fingerprints`: the reductions of issue 14 from the command line give the verdicts of
plain search, and hash compaction says what "complete" rests on."""
import json

from click.testing import CliRunner

from cowlab.cli import main


def _explore(*args):
    r = CliRunner().invoke(main, ["explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--format", "json", *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code, json.loads(r.output)


def test_dpor_and_fingerprints_find_what_plain_search_finds():
    code, plain = _explore("--no-por")
    for flag in ("--dpor", "--fingerprints"):
        c, red = _explore(flag)
        assert (c, red["status"]) == (code, "complete") == (1, "complete"), flag     # 5.9 misses this COW
        assert {k for k, n in red["outcomes"].items() if n} == {k for k, n in plain["outcomes"].items() if n}, flag
        assert set(red["verdicts"]) == set(plain["verdicts"]) == {"missed", "unnecessary", "wrong"}, flag


def test_fingerprints_report_the_omission_probability():
    _, rep = _explore("--fingerprints")
    assert 0 < rep["omission_probability"] < 1e-6
    assert "probability that a state was missed" in rep["reason"]
    _, plain = _explore()
    assert "omission_probability" not in plain
