"""Item 10: the live-kernel tests are opt-in (COWLAB_LIVE=1): the README's test command alone never
changes the machine, as root or not."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIVE = ["tests/conformance/test_live_kernel.py", "tests/conformance/test_interrupt.py",
        "tests/conformance/test_random_live.py", "tests/conformance/test_findings_live.py",
        "tests/conformance/test_mthp_live.py", "tests/conformance/test_swap_large_live.py",
        "tests/conformance/test_fork_race_live.py"]


def _pytest(*args, live=None):
    env = {k: v for k, v in os.environ.items() if k != "COWLAB_LIVE"}
    if live is not None:
        env["COWLAB_LIVE"] = live
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_live_tests_are_skipped_without_the_opt_in():
    r = _pytest(*LIVE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" not in r.stdout and " failed" not in r.stdout and "error" not in r.stdout.lower()
    assert "skipped" in r.stdout and "COWLAB_LIVE=1" in r.stdout
    # every test of the three files was collected and skipped (none ran)
    collected = _pytest("--co", *LIVE).stdout
    n = sum(1 for line in collected.splitlines() if "::" in line)
    assert n >= 10 and f"{n} skipped" in r.stdout


def test_live_marker_selects_exactly_the_live_files():
    r = _pytest("--co", "-m", "live", "tests/conformance")
    files = {line.split("::")[0] for line in r.stdout.splitlines() if "::" in line}
    assert files == set(LIVE), r.stdout
    r = _pytest("--co", "-m", "not live", "tests/conformance")
    assert not {line.split("::")[0] for line in r.stdout.splitlines() if "::" in line} & set(LIVE)


def test_ci_opts_in_where_it_is_root():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "COWLAB_LIVE=1" in ci and "id -u" in ci
