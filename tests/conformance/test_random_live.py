"""The random differential run against this machine's kernel (root): a
small run reports every scenario and puts the machine back; every
disagreement it reports has a shrunk reproducer that replays to the same
class; and a deliberately broken design makes it report disagreements, with
a shrunk reproducer that the host's design agrees with."""
import os
import subprocess
import sys

import pytest

from . import machine

from cowlab import scenario_gen
from cowlab.conformance import random as cr

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for PFNs and /proc/kpageflags")


MUTANT = '''from dataclasses import dataclass

from cowlab.designs.linux_6_18 import Linux618


@dataclass
class LosesSwapExclusive(Linux618):
    """A seeded bug: do_swap_page() never maps a swapped-in page
    PG_anon_exclusive (not even the fresh folio of a skip-swapcache swap-in
    from zram, which the kernel maps exclusive: folio != swapcache).  (The
    earlier mutant, try_to_unmap_one() dropping the swap pte's exclusive bit,
    is equivalent on zram since the model has that path: the fresh folio is
    exclusive whatever the bit.)"""
    name: str = "mutant-swapin-never-exclusive"

    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        super().do_swap_page_map(k, vmf, slot, swp_excl, fresh)
        return False


DESIGN = LosesSwapExclusive()
'''


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("findings")
    before = machine.values()
    rel, dname, note, results, changed, rep = cr.main_live(count=40, seed=1, out_dir=str(out))
    return rep, changed, before, out


def test_every_scenario_is_reported_and_compared(small_run):
    rep, _, _, _ = small_run
    c = rep.counts()
    assert c["scenarios"] == 40 and [r.case for r in rep.results] == [f"random-s1-{i}" for i in range(40)]
    assert c["agree"] + c["disagree"] + c["skip"] == 40
    assert c["agree"] > 0 and c["steps_compared"] >= 5 * c["agree"]


def test_scenarios_over_huge_pages_ran(small_run):
    """Where the host has PMD THP, the run's THP and hugetlb scenarios are built at the kernel's THP size and
    compared: a run that silently skipped them would pass the tests above."""
    rep, _, _, _ = small_run
    kinds, why = cr.large_kinds()
    if not kinds:
        pytest.skip("; ".join(f"{k}: {w}" for k, w in why.items()))
    large = {f"random-s1-{i}" for i in range(40) if scenario_gen.large_kind(1, i, kinds)}
    assert large
    ran = [r for r in rep.results if r.case in large and r.result != "skip"]
    assert ran and all(r.steps_compared > 0 for r in ran), [r.as_json() for r in rep.results if r.case in large]
    assert not any("THP size" in r.reason for r in rep.results if r.case in large)
    nr = cr.runner.kernel_thp_nr()
    some = next(s for s in scenario_gen.scenarios(1, 40, large=kinds, part="large", nr=nr))
    assert some.pages == 2 * nr and some.case().hpage_pmd_nr == nr


def test_the_machine_is_put_back(small_run):
    _, changed, before, _ = small_run
    assert machine.values() == before
    if any("swapon" in c for c in changed):
        assert "swapoff /dev/zram0 (restored)" in changed


def test_every_disagreement_has_a_reproducer_that_replays_to_its_class(small_run):
    rep, _, _, out = small_run
    files = []
    for sig, f in rep.findings.items():
        assert f.file and os.path.exists(f.file), f
        assert f.steps <= f.from_steps
        if sig[0] != "model":
            files.append(f.file)
    if not files:                       # nothing to replay: then the run had no disagreement at all
        assert rep.counts()["disagree"] == 0 and not rep.findings
        return
    *_, results, changed, _ = cr.main_live(files=files)
    assert [r.case for r in results] == files
    for r in results:
        assert r.result == "disagree", (r.case, r.reason)


def test_a_broken_design_is_caught_and_shrunk(tmp_path):
    """The seeded bug must show as a disagreement (swap-in maps the page
    PG_anon_exclusive on this kernel), shrunk to a few steps, whose file the
    host's design replays without that disagreement."""
    mutant = tmp_path / "mutant.py"
    mutant.write_text(MUTANT)
    out = tmp_path / "findings"
    p = subprocess.run([sys.executable, "-m", "cowlab.cli", "conformance", "--random", "40", "--seed", "3", "-q",
                        "--design", str(mutant), "--exclude", "known", "--findings", str(out), "--format", "json"],
                       capture_output=True, text=True, timeout=900, cwd=os.path.dirname(os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__)))))
    assert p.returncode == 1, p.stderr[-2000:]
    import json
    d = json.loads(p.stdout)
    assert d["random"]["disagree"] > 0
    excl = [f for f in d["random"]["findings"] if f["class"][0] == "exclusive"]
    assert excl, d["random"]["findings"]
    f = excl[0]
    assert f["steps"] <= 6 and os.path.exists(f["file"]) and f["reproduced"] == "3/3"
    assert "PG_anon_exclusive" in open(f["file"]).read()
    host = cr.run_files([f["file"]], cr.designs.load(cr.runner.design_for_release(os.uname().release)[0]), True,
                        cr.runner.host_facts())[0]
    assert not (host.result == "disagree" and "PG_anon_exclusive" in host.reason), host.reason
    assert set(scenario_gen.KNOWN_CLASSES) == set(d["random"]["excluded"])
