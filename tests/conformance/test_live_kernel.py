"""Conformance with the live kernel of this machine: every executable
catalog case must agree with the model's design for this kernel, step by
step; the MAP_SHARED negative controls must disagree.  Skips, with the
reason, where the machine does not permit it (not root, no pagemap PFNs)."""
import os

import pytest

from cowlab import conformance

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for PFNs and /proc/kpageflags")


@pytest.fixture(scope="module")
def results():
    rel, dname, note, res, changed = conformance.run(swap=True, thp=True)
    return rel, dname, res, changed


def test_design_chosen_for_the_host(results):
    rel, dname, _, _ = results
    assert dname.startswith("linux-")
    assert conformance.design_for_release("6.18.3")[0] == "linux-6.18"
    assert conformance.design_for_release("5.10.200")[0] == "linux-5.9"
    assert conformance.design_for_release("6.1.0")[0] == "linux-5.19"
    # the designs' own ranges: linux-6.18 models v6.15 .. v6.18, linux-6.9 v6.9 .. v6.14, linux-6.5 v6.5 .. v6.8;
    # a 6.3 gets linux-5.19 (v5.19 .. v6.1) and is told it is newer
    assert conformance.design_for_release("6.15.0")[0] == "linux-6.18"
    assert conformance.design_for_release("6.10.2")[0] == "linux-6.9"
    assert conformance.design_for_release("6.8.0-45-generic")[0] == "linux-6.5"
    name, note = conformance.design_for_release("6.3.1")
    assert name == "linux-5.19" and "newer" in note
    assert "newer" not in conformance.design_for_release("6.18.44")[1]


def test_every_executed_case_agrees(results):
    _, _, res, _ = results
    ran = [r for r in res if not r.control and r.result != "skip"]
    if not ran:
        pytest.skip("no catalog case could be executed here: " + "; ".join(sorted({r.reason for r in res})[:3]))
    bad = [r.as_json() for r in ran if r.result != "agree"]
    assert not bad, bad
    assert all(r.steps_compared > 0 for r in ran)


def test_every_case_is_reported(results):
    from cowlab import catalog
    _, _, res, _ = results
    assert sorted(r.case for r in res if not r.control) == sorted(catalog.ids())


def test_the_thp_variants_ran(results):
    """--thp must run the THP variants (a sized run that silently did nothing would pass the test above)."""
    _, _, res, _ = results
    if not conformance.kernel_thp_nr():
        pytest.skip("this kernel has no PMD THP")
    thp = [r for r in res if r.case.endswith("-thp") and r.case.startswith("basic-cow-fork")]
    assert thp and all(r.result == "agree" for r in thp), [r.as_json() for r in thp]


def test_negative_controls_disagree(results):
    _, _, res, _ = results
    controls = [r for r in res if r.control]
    assert controls
    for r in controls:
        if r.result == "skip":
            pytest.skip(r.reason)
        assert r.result == "disagree", r.as_json()


def test_machine_left_as_found(results):
    _, _, _, changed = results
    if any("swapon" in c for c in changed):
        assert any("restored" in c for c in changed)
    for c in changed:
        if "->" in c and not c.startswith("zram0") and not c.startswith("swap"):
            path = c.split(" ")[0]
            assert any(x.startswith(path) and "restored" in x for x in changed), c
    if os.path.exists("/sys/block/zram0/disksize"):
        with open("/sys/block/zram0/disksize") as f:
            assert f.read().strip() == "0"


def test_an_older_design_disagrees_where_the_kernel_changed():
    """A second kind of control: the probe must see version differences.  From
    6.5 (a7e689dd1c06) an O_DIRECT write pins with FOLL_PIN and unshares a page
    shared with a child; the linux-5.19 design (FOLL_GET) must disagree on
    this kernel, while the host's design agrees."""
    import platform
    from cowlab import catalog, designs
    dname, _ = conformance.design_for_release(platform.release())
    if dname not in ("linux-6.5", "linux-6.9", "linux-6.18"):
        pytest.skip(f"the host's design is {dname}: O_DIRECT pins with FOLL_PIN from 6.5")
    case = catalog.get("odirect-write-after-fork")
    host = conformance.run_case(case, designs.load(dname))
    if host.result == "skip":
        pytest.skip(host.reason)
    assert host.result == "agree", host.as_json()
    old = conformance.runner.run_cases([case], designs.load("linux-5.19"), attempts=1)[0]
    assert old.result == "disagree" and "odirect_write" in old.reason, old.as_json()


def test_the_collapse_tests_ran(results):
    """cow.c's anon_thp_test_cases[] run at the kernel's THP size and agree step by step -- MADV_COLLAPSE's
    outcome included (6.18.44 on the 2026-12-02 machine: all four collapse; linux-6.9 disagrees on the fully
    shared one, where 6.18 dropped SCAN_PAGE_RO)."""
    _, _, res, _ = results
    if not conformance.kernel_thp_nr():
        pytest.skip("this kernel has no PMD THP")
    col = [r for r in res if r.case.startswith("collapse-")]
    assert len(col) == 4 and all(r.result == "agree" for r in col), [r.as_json() for r in col]
