"""Every numeric option of every command is checked by click's types: 0, -1,
a huge number, NaN, infinity and a non-number either run or are a one-line
usage error (exit status 2), never a traceback (issue 13, item 7)."""
import click
import pytest
from click.testing import CliRunner

from cowlab.cli import main

HUGE = "1" + "0" * 30
VALUES = ["0", "-1", HUGE, "abc", "nan", "inf", "1e999", "2.5"]

#: a cheap invocation of each command the test may run for real (the tested option goes last and wins)
BASE = {
    "matrix": ["-c", "basic-cow-fork", "-d", "linux-6.18", "-q"],
    "explore": ["basic-cow-fork", "-d", "linux-6.18", "-q", "--max-seconds", "5", "--max-states", "5000"],
}
NOT_INT = ["abc", "nan", "inf", "1e999", "2.5"]
#: must fail to parse (the option's value is refused before anything runs)
REFUSED = {
    ("matrix", "jobs"): ["0", "-1", HUGE] + NOT_INT,              # 1..1024 worker processes
    ("explore", "max_states"): ["0", "-1", HUGE] + NOT_INT,       # 1..10**9
    ("explore", "max_depth"): ["0", "-1", HUGE] + NOT_INT,
    ("explore", "max_seconds"): ["0", "-1", "abc", "nan"],        # > 0; inf is no limit
    ("explore", "walks"): ["-1", HUGE] + NOT_INT,                 # 0 (exhaustive) .. 10**9
    ("explore", "seed"): ["-1", HUGE] + NOT_INT,                  # 0 .. 2**63-1
    ("plots", "walks"): ["0", "-1", HUGE] + NOT_INT,              # 1..100000 (0 was a ZeroDivisionError)
    ("plots", "seed"): ["-1", HUGE] + NOT_INT,
    ("conformance", "random_n"): ["0", "-1", HUGE] + NOT_INT,
    ("conformance", "seed"): ["-1", HUGE] + NOT_INT,
    ("diff", "jobs"): ["0", "-1", HUGE] + NOT_INT,                # 1..1024
    ("diff", "show"): ["0", "-1", HUGE] + NOT_INT,                # 1..10**6 steps shown before the divergence
}


def _numeric(cmd):
    for p in cmd.params:
        if isinstance(p, click.Option) and isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType)):
            yield p


def _required_args(name):
    return {"explore": ["basic-cow-fork", "-d", "linux-6.18"], "run": ["basic-cow-fork", "-d", "linux-6.18"]}.get(
        name, [])


def test_every_numeric_option_is_known_here():
    """A new numeric option gets its refusals listed here (so this test drives it)."""
    found = {(n, p.name) for n, c in main.commands.items() for p in _numeric(c)}
    assert set(REFUSED) <= found
    assert found - set(REFUSED) == set(), f"list the refused values of {sorted(found - set(REFUSED))}"


@pytest.mark.parametrize("name, param", sorted(REFUSED))
def test_numeric_option_values_parse_or_are_usage_errors(name, param):
    cmd = main.commands[name]
    p = next(x for x in _numeric(cmd) if x.name == param)
    flag = max(p.opts, key=len)
    for v in VALUES:
        try:
            cmd.make_context(name, _required_args(name) + [flag, v])
            parsed = True
        except click.UsageError as e:          # BadParameter: one line naming the option
            parsed = False
            assert flag in e.format_message() or p.name in e.format_message(), e.format_message()
        except Exception as e:                 # anything else would be a traceback
            pytest.fail(f"{name} {flag} {v}: {type(e).__name__}: {e}")
        assert parsed == (v not in REFUSED[(name, param)]), (name, flag, v)


@pytest.mark.parametrize("name, param", sorted(REFUSED))
def test_numeric_option_values_through_the_command(name, param):
    """The values run through the whole command (the accepted ones only where
    a run is cheap and touches nothing: never conformance, never plots)."""
    cmd = main.commands[name]
    p = next(x for x in _numeric(cmd) if x.name == param)
    flag = max(p.opts, key=len)
    for v in VALUES:
        refused = v in REFUSED[(name, param)]
        if not refused and name not in BASE:
            continue
        r = CliRunner().invoke(main, [name] + BASE.get(name, _required_args(name)) + [flag, v])
        assert r.exception is None or isinstance(r.exception, SystemExit), (name, flag, v, r.exc_info)
        assert "Traceback" not in r.output
        if refused:
            assert r.exit_code == 2, (name, flag, v, r.output)
            assert r.stderr.strip().splitlines()[-1].startswith("Error: Invalid value"), r.stderr
        else:
            assert r.exit_code in (0, 1, 3), (name, flag, v, r.output)


def test_the_issue_examples_are_one_line_usage_errors():
    for argv in (["plots", "--walks", "0"], ["explore", "basic-cow-fork", "-d", "linux-6.18", "--max-states", "-5"],
                 ["matrix", "-j", "-1"], ["conformance", "--random", "-3"]):
        r = CliRunner().invoke(main, argv)
        assert r.exit_code == 2, (argv, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit)
        assert "Traceback" not in r.output
        assert "Invalid value for" in r.stderr, r.stderr


def test_unwritable_output_paths_are_one_line(tmp_path):
    bad = str(tmp_path / "no" / "such" / "dir" / "f")
    for argv in (["explain", "cve-2020-29374", "-d", "linux-5.7", "--html", bad + ".html"],
                 ["explore", "cve-2020-29374", "-d", "linux-5.7", "-q", "--save-trace", bad + ".json"]):
        r = CliRunner().invoke(main, argv)
        assert r.exit_code == 2, (argv, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit)
        assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith(f"cowlab: error: {bad}"), r.stderr
