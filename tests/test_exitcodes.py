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
