"""``cowlab selftest --compare`` on the real cow.c runs of tests/fixtures/cow_c/ (three runs of the kernel's own
tools/testing/selftests/mm/cow.c on this machine's 6.18.44 kernel: see that folder's README.md): every test the
kernel ran (pass / fail / xfail) agrees with the model's prediction under linux-6.18, the model has a case for all
but a few (file pages), and the tests whose kernel result changes from run to run are reported as such."""
from __future__ import annotations

import json
import os

from click.testing import CliRunner

from cowlab import designs, ktap, selftest as st
from cowlab.cli import main

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "cow_c")
RUNS = sorted(os.path.join(FIXTURES, f) for f in os.listdir(FIXTURES) if f.endswith(".ktap"))


def _cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_every_kernel_result_agrees_with_the_model():
    assert len(RUNS) == 3
    d = designs.load("linux-6.18")
    results = [{k.name: k.status for k in ktap.read(p).tests} for p in RUNS]
    varying = {name for name in results[0] if len({r[name] for r in results}) > 1}
    for path in RUNS:
        run = ktap.read(path)
        assert run.plan == 778 and len(run.tests) == 778
        pairs, missing = ktap.compare(run, d)
        n = ktap.counts(pairs)
        ran = [p for p in pairs if p.kernel.status in ("pass", "fail", "xfail")]
        assert {p.outcome for p in ran} <= {ktap.AGREE, ktap.DISAGREE, ktap.NONE}
        # a disagreement can only be a test the kernel itself varies on: in the run where it did not leak
        assert {p.kernel.name for p in ran if p.outcome == ktap.DISAGREE} <= varying
        assert n[ktap.AGREE] >= len(ran) - n[ktap.NONE] - len(varying)
        assert n[ktap.NONE] <= 0.05 * len(pairs), n
        assert not missing


def test_the_model_has_a_case_for_at_least_95_percent_of_the_tests():
    """Issue 12's target: a counterpart for >= 95% of the 778 tests cow.c runs here (the rest are file pages)."""
    rows = st.run(designs.load("linux-6.18"))
    none = [r for r in rows if r.verdict == "none"]
    assert len(rows) == 778 and len(none) <= 0.05 * 778
    assert all("file pages" in r.message for r in none)


def test_several_runs_report_the_tests_the_kernel_varies_on():
    """The tests whose results differ between the fixtures are found from the files (not named here): each is
    'kernel varies' with the model's verdict among the kernel's; nothing disagrees, so the exit status is 0."""
    results = [{k.name: k.status for k in ktap.read(p).tests} for p in RUNS]
    varying = {name for name in results[0] if len({r[name] for r in results}) > 1}
    assert varying, "the fixtures differ on the 1 GiB hugetlb vmsplice() tests (README.md)"
    assert all("hugetlb (1048576 kB)" in name and "vmsplice" in name for name in varying)
    args = ["selftest", "-d", "linux-6.18", "--format", "json"]
    for p in RUNS:
        args += ["--compare", p]
    r = _cli(*args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["runs"] == 3 and out["totals"]["disagree"] == 0
    got = {t["name"]: t for t in out["tests"] if t["outcome"] == ktap.VARIES}
    assert set(got) == varying
    assert all(t["model"] in t["kernel"] for t in got.values())


def test_a_run_the_model_disagrees_with_exits_1(tmp_path):
    """The same comparison with one result turned round (a pass the model predicts as XFAIL made 'ok ... pass'
    elsewhere): the comparison says disagree and exits 1."""
    text = open(RUNS[-1]).read().splitlines()
    for i, line in enumerate(text):
        if line.startswith("ok ") and "# XFAIL" in line and "(2048 kB)" in line:
            text[i] = line.split(" # XFAIL")[0]
            break
    else:
        raise AssertionError("no 2 MiB XFAIL in the fixture")
    f = tmp_path / "turned.ktap"
    f.write_text("\n".join(text) + "\n")
    r = _cli("selftest", "-d", "linux-6.18", "--compare", str(f), "--format", "json")
    assert r.exit_code == 1
    assert json.loads(r.output)["totals"]["disagree"] == 1
