"""Item 11: cowlab diff DESIGN_A DESIGN_B [CASE...] -- the cases whose verdicts differ, and for one case the
first step where the two designs' states diverge on the same schedule, side by side."""
import json

from click.testing import CliRunner

from cowlab import catalog, designs
from cowlab.cli import main
from cowlab.matrix import compute
from cowlab.report.trace import snapshot, transitions_for


def cli(*args):
    r = CliRunner().invoke(main, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r


def test_diff_over_the_catalog_lists_exactly_the_cases_that_differ():
    r = cli("diff", "linux-5.7", "linux-6.18", "--format", "json")
    assert r.exit_code == 1                                   # they differ: "found"
    d = json.loads(r.output)
    m = compute(["linux-5.7", "linux-6.18"], None, jobs=2)    # both designs in one sweep, compared here
    by = {(x.case, x.design): x.outcomes for x in m.results}
    want = [c for c in catalog.ids() if by[(c, "linux-5.7")] != by[(c, "linux-6.18")]]
    assert [x["case"] for x in d["differ"]] == want and len(want) > 50
    assert d["cases"] == len(catalog.ids()) and d["status"] == "complete"
    # cve-2020-29374 leaks on 5.7 (mapcount reuse), not on 6.18
    cve = next(x for x in d["differ"] if x["case"] == "cve-2020-29374")
    assert cve["a"]["missed"] > 0 and cve["b"]["missed"] == 0


def test_a_design_against_itself_differs_nowhere():
    r = cli("diff", "linux-6.18", "linux-6.18", "race-*", "--tag", "race", "--format", "json")
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert d["differ"] == [] and d["divergence"] is None


def test_the_first_divergence_on_the_sequential_schedule():
    """5.18 -> 5.19 (PageAnonExclusive): the states first differ where the write fault maps the new
    anonymous page, exclusive under 5.19 only; checked against the two sequential runs made apart."""
    r = cli("diff", "linux-5.18", "linux-5.19", "cve-2020-29374", "--format", "json")
    f = json.loads(r.output)["divergence"]
    assert f["schedule"] == "the sequential schedule" and f["step"] is not None
    i = f["step"]
    case = catalog.get("cve-2020-29374")
    ma, ta, _ = transitions_for(case, designs.load("linux-5.18"), "sequential")
    mb, tb, _ = transitions_for(case, designs.load("linux-5.19"), "sequential")
    sa = [snapshot(ma, t.state) for t in ta]
    sb = [snapshot(mb, t.state) for t in tb]
    assert sa[:i] == sb[:i] and sa[i] != sb[i]
    assert [t.label for t in ta[:i + 1]] == [t.label for t in tb[:i + 1]]
    diff = {x["what"]: (x["a"], x["b"]) for x in f["state_diff"]}
    pfn = next(k for k in diff if k.startswith("pfn"))
    assert "excl 0" in diff[pfn][0] and "excl 1" in diff[pfn][1]
    text = cli("diff", "linux-5.18", "linux-5.19", "cve-2020-29374").output
    assert f"the states diverge at step {i}" in text and "A: linux-5.18" in text and "B: linux-5.19" in text


def test_a_race_diverges_on_the_explored_witness():
    """race-fork-gup-fast: 5.9 misses the COW (gup-fast races fork's pin check), 5.11's write_protect_seq
    (57efa1fe5957) makes gup-fast back off: on 5.9's witness schedule, 5.11 cannot take the same step."""
    r = cli("diff", "linux-5.9", "linux-5.11", "race-fork-gup-fast", "--format", "json")
    assert r.exit_code == 1
    d = json.loads(r.output)
    assert d["differ"][0]["cell_a"] == "MUW" and d["differ"][0]["cell_b"] == "U"
    f = d["divergence"]
    assert "explored" in f["schedule"] and "missed" in f["schedule"]
    i = f["step"]
    assert all(s["a"] == s["b"] for s in f["steps"][:i])
    assert f["steps"][i]["thread"] == "parent.cpu1" and "gup_fast" in f["steps"][i]["a"]
    assert f["steps"][i]["a"] != f["steps"][i]["b"]


def test_diff_takes_kernel_versions_as_the_other_commands_do():
    by_name = cli("diff", "linux-5.7", "linux-6.18", "cve-2020-29374", "--format", "json")
    by_version = cli("diff", "5.7", "6.18.44", "cve-2020-29374", "--format", "json")
    assert by_version.exit_code == by_name.exit_code == 1
    a, b = json.loads(by_name.stdout), json.loads(by_version.stdout)
    assert "linux-5.7" in by_version.stderr                            # it says which design the version chose
    assert (b["design_a"], b["design_b"]) == ("linux-5.7", "linux-6.18")
    assert b["differ"] == a["differ"]
