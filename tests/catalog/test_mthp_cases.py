"""cow.c's mTHP variants (16 kB in the catalog, the other sizes through ``cow_c.case_for()``): verdicts against
the expectations of ``expect_mthp`` (with their sources), and the geometry decision (every mTHP size modelled
by a 4-subpage folio) checked against the kernel's geometry."""
import pytest

from cowlab import catalog, designs
from cowlab.catalog import cow_c
from cowlab.model import CowModel
from cowlab.run import run_sequential
from cowlab.verdict import MISSED, UNNECESSARY, WRONG

from tests.catalog.expect_mthp import CASES, MTHP_DESIGNS, kinds, selftest, unnecessary
from tests.catalog.test_cow_c_variants import DESIGNS

LEAK = {t[0] for t in cow_c.TESTS[:6]}


def cow_c_verdict(test, r) -> str:
    """cow.c's judgement (selftest.judge() for an mTHP id): a leak test fails on a missed COW, a pin test on a
    wrong one; no mTHP variant is hugetlb, so nothing is XFAIL."""
    if r.status != "complete" or r.bugs:
        return "fail"
    return "fail" if r.outcomes[MISSED if test in LEAK else WRONG] else "pass"


def found(r) -> set:
    return {str(k) for k, n in r.outcomes.items() if n}


@pytest.fixture(scope="module")
def built():
    return {c.id: c for c in cow_c.mthp_cases()}


def test_the_catalog_has_the_16k_cases_only():
    ids = [i for i in catalog.ids() if i.endswith("k") and "mthp" in catalog.get(i).tags]
    assert len(ids) == 84 == len(cow_c.MTHP_VARIANTS) * len(cow_c.TESTS)
    assert all(i.endswith("-16k") for i in ids)
    c = catalog.get("basic-cow-fork-pte-thp-16k")
    assert (c.hpage_pmd_nr, c.setting("thp_sizes"), c.pages) == (8, (4,), 8)
    assert c.title == "Basic COW after fork() with PTE-mapped THP"
    # at the kernel's PMD size the same cases are the kernel's 16 kB geometry
    big = catalog.get("basic-cow-fork-pte-thp-16k", hpage_pmd_nr=512)
    assert big == cow_c.case_for("basic-cow-fork", "pte-thp", 16, real=True)
    assert catalog.sized(c, 512) == big


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("test,variant", CASES)
def test_mthp_case(built, test, variant, design):
    c = built[cow_c.mthp_case_id(test, variant, 16)]
    r = run_sequential(CowModel(c, designs.load(design)))
    assert r.status == "complete" and not r.bugs, (r.reason, r.bugs)
    want, source = selftest(test, variant, design)
    assert cow_c_verdict(test, r) == want, f"{c.id} under {design}: expected {want} ({source})"
    if design in MTHP_DESIGNS:
        want, source = kinds(test, variant, design)
        assert found(r) == set(want.split()), f"{c.id} under {design}: {sorted(found(r))}, expected {want!r} " \
                                              f"({source})"
        assert r.outcomes[UNNECESSARY] == unnecessary(test, variant, design, 4), (c.id, design, source)


def test_case_for_covers_every_size():
    tid = "basic-cow-fork"
    assert cow_c.case_for(tid, "base", 64) == catalog.get(tid)
    assert cow_c.case_for(tid, "swap", real=True) == catalog.get(tid + "-swap", hpage_pmd_nr=512)
    for v in cow_c.PMD_VARIANTS:
        assert cow_c.case_for(tid, v) == catalog.get(f"{tid}-{v}")
        assert cow_c.case_for(tid, v, 2048, real=True).hpage_pmd_nr == 512
    for kb in cow_c.MTHP_SIZES_KB:
        for v in cow_c.MTHP_VARIANTS:
            m = cow_c.case_for(tid, v, kb)
            assert m.id == f"{tid}-{v}-{kb}k" and m.hpage_pmd_nr == 8 and m.setting("thp_sizes") == (4,)
            r = cow_c.case_for(tid, v, kb, real=True)
            assert r.hpage_pmd_nr == 512 and r.setting("thp_sizes") == (kb // 4,) and r.pages % 512 == 0
        assert cow_c.case_for(tid, "thp", kb) is None and cow_c.case_for(tid, "thp-swap", kb) is None
        assert cow_c.case_for(tid, "hugetlb", kb) is None
    assert cow_c.case_for(tid, "pte-thp", 8) is None
    assert cow_c.case_for(tid, "hugetlb") == catalog.get(tid + "-hugetlb")
    g = cow_c.case_for(tid, "hugetlb", 1048576)
    assert g.id == tid + "-hugetlb-1g" and g.threads == catalog.get(tid + "-hugetlb").threads
    assert cow_c.case_for(tid, "hugetlb", 1048576, real=True) is None


def _outcome(c, d):
    r = run_sequential(CowModel(c, d, check_invariants=True))
    assert r.status == "complete" and not r.bugs, (c.id, r.reason, r.bugs)
    test = next(t[0] for t in cow_c.TESTS if c.id.startswith(t[0] + "-")
                and c.id[len(t[0]) + 1:].rsplit("-", 1)[0] in cow_c.VARIANTS)
    return found(r), cow_c_verdict(test, r), (r.outcomes[MISSED], r.outcomes[UNNECESSARY], r.outcomes[WRONG])


@pytest.mark.parametrize("kb", [16, 32])
@pytest.mark.parametrize("design", MTHP_DESIGNS)
def test_model_geometry_gives_the_kernel_geometry_verdicts(design, kb):
    """The geometry decision: a folio of 4 subpages under a PMD of 8 stands for every mTHP size.  At the kernel's
    geometry (kb/4 subpages under 512) every mTHP case finds the same kinds of verdict (missed / unnecessary /
    wrong) and cow.c judges it alike, invariants checked at every step; the counts are those the kernel code
    gives at each size (no missed or wrong COW; the unnecessary copies are per subpage, so their number follows
    the folio's size as expect_mthp.unnecessary() derives it)."""
    d = designs.load(design)
    for test, variant in CASES:
        model = _outcome(cow_c.case_for(test, variant, kb), d)
        real = _outcome(cow_c.case_for(test, variant, kb, real=True), d)
        assert model[:2] == real[:2], (test, variant, kb, design)
        # the counts: no missed or wrong COW at either geometry, and the unnecessary copies the kernel code makes
        # for a folio of that many subpages (expect_mthp.unnecessary())
        for nr, (_, _, counts) in ((cow_c.MODEL_MTHP_NR, model), (kb // 4, real)):
            assert counts == (0, unnecessary(test, variant, design, nr), 0), (test, variant, kb, nr, design)


@pytest.mark.parametrize("test,variant", [("ro-pin-previously-shared", "partial-shared-thp"),
                                          ("iouring-fork", "partial-mremap-thp"),
                                          ("vmsplice-unmap-child", "single-pte-thp"),
                                          ("iouring-ro-mapping", "partial-shared-thp"),
                                          ("basic-cow-fork", "pte-thp-swap")])
def test_model_geometry_at_64k(test, variant):
    for design in MTHP_DESIGNS:
        d = designs.load(design)
        model, real = _outcome(cow_c.case_for(test, variant, 64), d), _outcome(cow_c.case_for(test, variant, 64,
                                                                                              real=True), d)
        assert model[:2] == real[:2], (test, variant, design)
        assert real[2] == (0, unnecessary(test, variant, design, 16), 0), (test, variant, design)


def test_no_catalog_mthp_case_maps_a_folio_into_three_mms():
    """linux-6.18's folio_maybe_mapped_shared() (the model: mapped by more than one MM) equals the kernel's
    FOLIO_MM_IDS_SHARED_BIT (6af8cb80d3a9: two mm_id slots) while at most two MMs map a folio; check that the
    16 kB cases stay within that at every step."""
    from cowlab.schedule import sequential
    d = designs.load("linux-6.18")
    for c in cow_c.mthp_cases():
        run = sequential(CowModel(c, d), max_steps=20000)
        for tr in run:
            s = tr.state
            for pfn, f in enumerate(s.folios):
                if f is None or f.nr == 1:
                    continue
                mms = {mm for mm, m in enumerate(s.mms) if m.alive and any(
                    p is not None and p.kind == 1 and p.pfn == pfn for p in m.ptes)}
                assert len(mms) <= 2, (c.id, pfn, mms)
        assert run.end == "done"


def test_catalog_get_builds_an_mthp_case_of_any_size_on_demand():
    """The catalog holds the 16 kB mTHP cases; the other sizes cow.c runs (32 .. 1024 kB) come from
    cow_c.case_for() by id (``cowlab run`` / ``cowlab conformance`` take them), at model geometry or, sized to the
    kernel's 512, at the kernel's (size / 4 kB subpages, that size alone enabled)."""
    c = catalog.get("basic-cow-fork-pte-thp-64k")
    assert "basic-cow-fork-pte-thp-64k" not in catalog.ids()
    assert c == cow_c.case_for("basic-cow-fork", "pte-thp", 64)
    assert (c.hpage_pmd_nr, dict(c.settings)["thp_sizes"]) == (cow_c.MODEL_PMD_NR, (cow_c.MODEL_MTHP_NR,))
    real = catalog.sized(c, 512)
    assert real == cow_c.case_for("basic-cow-fork", "pte-thp", 64, real=True)
    assert (real.hpage_pmd_nr, dict(real.settings)["thp_sizes"]) == (512, (16,))
    for bad in ("basic-cow-fork-pte-thp-2048k", "basic-cow-fork-thp-64k", "basic-cow-fork-pte-thp-48k"):
        with pytest.raises(catalog.CatalogError):
            catalog.get(bad)
