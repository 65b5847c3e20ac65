"""The THP/hugetlb geometry travels with the case (issue 10, item 5): cases of
several sizes run side by side in one process and give the verdicts the
expectation tables give (cow.c's, the CVE table's, the races'), which do not
depend on the size; nothing reads the size from the environment; conformance
builds its THP variants at the kernel's size in-process."""
import contextlib
import pickle
from pathlib import Path

import pytest

from cowlab import catalog, designs
from cowlab.catalog import cow_c
from cowlab.conformance import runner
from cowlab.explore import explore
from cowlab.model import CowModel
from cowlab.report import trace
from cowlab.run import run_sequential
from cowlab.scenario import ScenarioError, Script
from cowlab.selftest import judge
from cowlab.toml_format import parse_case
from tests.catalog.test_cow_c_variants import DESIGNS, expect
from tests.catalog.test_history import EXPECT as HISTORY
from tests.explore.test_races import EXPECT as RACES
from tests.explore.test_races import _design

ROOT = Path(__file__).parent.parent
HUGE_VARIANTS = [v for v in cow_c.VARIANTS if cow_c.VARIANTS[v][1]]


def test_nothing_reads_the_size_from_the_environment():
    readers = [str(p.relative_to(ROOT)) for p in (ROOT / "cowlab").rglob("*.py")
               if "COWLAB_HPAGE_PMD_NR" in p.read_text()]
    assert not readers, readers
    assert not (ROOT / "cowlab" / "conformance" / "sized.py").exists()
    assert "cowlab.conformance.sized" not in (ROOT / "cowlab" / "conformance" / "runner.py").read_text()


@pytest.mark.parametrize("nr", [2, 4, 8, 512])
def test_the_catalog_is_built_at_any_size(nr):
    cases = catalog.all_cases(nr)
    assert [c.id for c in cases] == catalog.ids()
    # cow.c's mTHP cases keep their 4-subpage folio under a PMD of at least 8 (HELPERS.md "Model geometry")
    mthp = [c for c in cases if "mthp" in c.tags and "trust" not in c.tags]
    assert len(mthp) == 84 and all(c.hpage_pmd_nr == max(nr, 8) and c.setting("thp_sizes") == (4,) for c in mthp)
    # ... and the trust case of mTHP swap-in keeps the live geometry it was checked in (a 512-page PMD)
    assert [(c.id, c.hpage_pmd_nr) for c in cases if "mthp" in c.tags and "trust" in c.tags] == \
        [("mthp-swapin-offsets", 512), ("swap-offsets-continue", 512)]
    cases = [c for c in cases if "mthp" not in c.tags]
    assert all(c.hpage_pmd_nr == nr for c in cases)
    for c in cases:
        small = catalog.get(c.id)
        assert small.hpage_pmd_nr == 2
        if not catalog.uses_huge(c):     # a base-page case differs only in its geometry field
            assert catalog.sized(small, nr) == c
    for v in HUGE_VARIANTS:
        c = catalog.get(cow_c.case_id("basic-cow-fork", v), hpage_pmd_nr=nr)
        assert c.pages == cow_c.VARIANTS[v][1] * nr
        mmap = dict(c.threads[0].ops[0].args)
        assert mmap["pages"] == nr and (mmap.get("thp") or mmap.get("hugetlb"))
    assert catalog.get("cve-2020-29374-thp", hpage_pmd_nr=nr).pages == nr
    assert catalog.get("race-thp-split", hpage_pmd_nr=nr).pages == nr


def test_sized_rebuilds_a_catalog_case_and_cases_pickle():
    c = catalog.get("iouring-fork-partial-mremap-thp")
    big = catalog.sized(c, 8)
    assert big == catalog.get(c.id, hpage_pmd_nr=8) and big.pages == 16 and big.hpage_pmd_nr == 8
    assert catalog.sized(big, 2) == c
    assert pickle.loads(pickle.dumps(big)) == big        # the conformance model pool pickles cases
    with pytest.raises(ScenarioError, match="power of two"):
        catalog.sized(c, 6)


def test_a_scenario_file_keeps_its_size():
    text = ('id = "thp-file"\npages = 4\nhpage_pmd_nr = 4\n\n'
            '[[step]]\nthread = "parent"\nop = "mmap"\naddr = 0\npages = 4\nthp = true\n\n'
            '[[step]]\nthread = "parent"\nop = "write"\naddr = 0\npages = 4\n')
    import tomllib
    c = parse_case(tomllib.loads(text), text, "thp-file.toml")
    assert c.hpage_pmd_nr == 4
    r = run_sequential(CowModel(c, designs.load("linux-6.18")))
    assert not r.bugs and r.status == "complete"
    s = list(_states(CowModel(c, designs.load("linux-6.18"))))[-1]
    assert s.mms[0].pmds[0] is not None and s.folios[s.mms[0].pmds[0].pfn].nr == 4
    with pytest.raises(catalog.CatalogError, match="cannot be rebuilt"):
        catalog.sized(c, 8)
    # the default is the model's 2
    plain = text.replace("hpage_pmd_nr = 4\n", "")
    assert parse_case(tomllib.loads(plain), plain, "x.toml").hpage_pmd_nr == 2
    bad = text.replace("hpage_pmd_nr = 4", "hpage_pmd_nr = 3")
    with pytest.raises(ScenarioError, match=r"x.toml:3: hpage_pmd_nr: .*power of two"):
        parse_case(tomllib.loads(bad), bad, "x.toml")


def test_script_checks_pages_against_its_own_size():
    s = Script("s", pages=2, hpage_pmd_nr=4)
    s.process("p").mmap(0, pages=2, thp=True)
    with pytest.raises(ScenarioError, match="multiple of 4"):
        s.build()


# cow.c's verdicts at 2 and at a larger size, in one process: every THP/hugetlb variant of every test under
# five designs at 4 subpages, and a handful of cases under every design at 8
SAMPLE_4 = [(t[0], v, d) for v in HUGE_VARIANTS for t in cow_c.TESTS
            for d in ("linux-5.7", "linux-5.9", "linux-5.18", "linux-6.18", "rfc-mapcount")]
SAMPLE_8 = [(t, v, d) for t, v in [("vmsplice-unmap-child", "thp"), ("vmsplice-before-fork", "partial-mremap-thp"),
                                   ("iouring-fork", "pte-thp-swap"), ("ro-pin-exclusive", "thp"),
                                   ("iouring-ro-mapping", "partial-shared-thp"), ("vmsplice-after-fork", "hugetlb")]
            for d in DESIGNS]


@pytest.mark.parametrize("test,variant,design,nr", [s + (4,) for s in SAMPLE_4] + [s + (8,) for s in SAMPLE_8])
def test_cow_c_verdict_does_not_depend_on_the_size(test, variant, design, nr):
    want, source = expect(test, variant, design)
    d = designs.load(design)
    for size in (2, nr):
        c = catalog.get(cow_c.case_id(test, variant), hpage_pmd_nr=size)
        r = run_sequential(CowModel(c, d))
        assert not r.bugs, (size, r.bugs)
        assert judge(c, r) == want, f"{c.id} at {size} subpages under {design}: expected {want} ({source})"


@pytest.mark.parametrize("case,design", [(c, d) for c in ("cve-2020-29374-thp", "cve-2020-29374-hugetlb")
                                         for d in HISTORY[c]])
def test_cve_verdict_does_not_depend_on_the_size(case, design):
    kinds, source = HISTORY[case][design]
    for size in (2, 8):
        r = run_sequential(CowModel(catalog.get(case, hpage_pmd_nr=size), designs.load(design)))
        assert r.status == "complete" and not r.bugs
        assert {k for k, n in r.outcomes.items() if n} == set(kinds.split()), (size, design, source)


@pytest.mark.parametrize("design", sorted(d for c, d in RACES if c == "race-thp-split"))
def test_race_verdict_does_not_depend_on_the_size(design):
    kinds, source = RACES[("race-thp-split", design)]
    for size in (2, 4):
        r = explore(CowModel(catalog.get("race-thp-split", hpage_pmd_nr=size), _design(design)))
        assert r.status == "complete" and not r.bugs
        assert set(r.found) == set(kinds.split()), (size, design, source)


def _states(m):
    """The states of the first enabled thread's schedule."""
    s = m.init_state()
    while not m.is_done(s):
        s = next(t for tid in range(m.nthreads) if (t := m.step(s, tid)) is not None).state
        yield s


def test_a_trace_places_the_pmd_by_the_case_size():
    s = Script("second-thp", pages=16, hpage_pmd_nr=8)
    p = s.process("parent")
    p.mmap(8, pages=8, thp=True)
    p.write(8, pages=8)
    m = CowModel(s.build(), designs.load("linux-6.18"))
    last = list(_states(m))[-1]
    assert [p["addr"] for p in trace.snapshot(m, last)["processes"][0]["pmds"]] == [8]


# conformance: the THP variants at the kernel's size, in this process (no live kernel: the real programs and
# the machine changes are replaced)

def test_unsupported_compares_the_case_size_with_the_kernel(monkeypatch):
    monkeypatch.setattr(runner, "kernel_thp_nr", lambda: 8)
    host = {"ksm": "", "cpus": 2, "gup_test": "needs gup_test"}
    small = catalog.get("basic-cow-fork-thp")
    assert "the case's THP has 2 subpages, the kernel's 8" in runner.unsupported(small, False, host)
    assert runner.unsupported(catalog.sized(small, 8), False, host) == ""


def test_the_model_pool_prepares_sized_cases(monkeypatch):
    monkeypatch.setattr(runner, "kernel_thp_nr", lambda: 8)
    host = {"ksm": "", "cpus": 2, "gup_test": "needs gup_test"}
    ids = ["basic-cow-fork-thp", "vmsplice-unmap-child-pte-thp", "basic-cow-fork-partial-mremap-thp"]
    cases = [catalog.get(i, hpage_pmd_nr=8) for i in ids]
    preps = list(runner._preparations(cases, designs.load("linux-6.18"), False, False, 2, host))
    assert [p.case.id for p in preps] == ids
    assert all(isinstance(p, runner.Prepared) for p in preps), preps
    assert all(p.m.case.hpage_pmd_nr == 8 and p.plan["align"] == 8 for p in preps)
    assert preps[2].plan["pages"] == 16


def test_run_builds_the_thp_variants_in_process(monkeypatch):
    """run(thp=True) runs the base cases, then the THP variants rebuilt at the
    kernel's size through the same run_cases, and starts no interpreter."""
    from cowlab.conformance import zram
    calls = []

    def fake_run_cases(cases, design, have_swap=False, shared=False, log=None, into=None, host=None, **kw):
        calls.append([(c.id, c.hpage_pmd_nr) for c in cases])
        out = [runner.CaseResult(c.id, "agree", 1) for c in cases]
        into.extend(out)
        return into

    def no_process(*a, **kw):
        raise AssertionError(f"a subprocess was started: {a}")

    @contextlib.contextmanager
    def nothing(*a, **kw):
        yield False

    monkeypatch.setattr(runner, "kernel_thp_nr", lambda: 8)
    monkeypatch.setattr(runner, "run_cases", fake_run_cases)
    monkeypatch.setattr(runner.os, "geteuid", lambda: 0)
    monkeypatch.setattr(runner.subprocess, "Popen", no_process)
    monkeypatch.setattr(zram, "temporary_swap", nothing)
    monkeypatch.setattr(zram, "temporary_sysctl", nothing)
    monkeypatch.setattr(zram, "machine_lock", nothing)         # (a live run elsewhere must not hold this up)
    ids = ["basic-cow-fork", "basic-cow-fork-thp", "cve-2020-29374-hugetlb", "basic-cow-fork-swap"]
    _, _, _, res, _ = runner.run(ids, controls=False, thp=True)
    assert calls == [[("basic-cow-fork", 2), ("basic-cow-fork-swap", 2)],
                     [("basic-cow-fork-thp", 8), ("cve-2020-29374-hugetlb", 8)]]
    assert [r.case for r in res] == ["basic-cow-fork", "basic-cow-fork-swap", "basic-cow-fork-thp",
                                     "cve-2020-29374-hugetlb"]
    calls.clear()
    _, _, _, res, _ = runner.run(ids, controls=False, thp=False)
    assert calls == [[("basic-cow-fork", 2), ("basic-cow-fork-swap", 2)]]
    assert {r.case: r.result for r in res}["basic-cow-fork-thp"] == "skip"
