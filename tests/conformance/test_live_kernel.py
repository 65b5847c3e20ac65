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
    # the designs' own ranges: linux-6.18 models v6.15 .. v6.18; a 6.10 gets 5.19 and is told it is newer
    assert conformance.design_for_release("6.15.0")[0] == "linux-6.18"
    name, note = conformance.design_for_release("6.10.2")
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
