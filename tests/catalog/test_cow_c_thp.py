"""cow.c's anon_thp_test_cases[] (the four "Basic COW after fork() when
collapsing ..." tests) under every design, judged as the selftest judges
them: pass, fail, or skip when madvise(MADV_COLLAPSE) fails.  Expectations
come from the sources below, not from cowlab's output."""
import pytest

from cowlab import catalog, designs
from cowlab.catalog import cow_c
from cowlab.model import CowModel
from cowlab.run import run_sequential
from cowlab.selftest import judge

from .expect import ALL, row

S_PRE61 = ("7d8faaf15545 'mm/madvise: introduce MADV_COLLAPSE sync hugepage collapse' is 6.1: before, madvise() "
           "refuses the advice (EINVAL) and do_test_anon_thp_collapse() skips ('MADV_COLLAPSE failed: Invalid "
           "argument'); the RFC designs sit on 5.16")
S_COVER = ("cover letter 20230104144905.460075-1-david@redhat.com, run on a kernel with MADV_COLLAPSE: 'ok 169 No leak "
           "from parent into child', 'ok 170 # SKIP MADV_COLLAPSE failed: Invalid argument' (fully shared), 'ok 171', "
           "'ok 172'; 'MADV_COLLAPSE always seems to fail if all PTEs map shared sub-pages' (SCAN_PAGE_RO: "
           "fork write-protected every pte, madvise_collapse_errno() -> EINVAL)")
S_618 = ("live probe on this machine's 6.18.44 (tools/probe_madv_collapse.py): MADV_COLLAPSE returns 0 and the "
         "range is PMD-mapped in all four setups, fully shared included (SCAN_PAGE_RO dropped, "
         "20250903054635.19949-1-dev.jain@arm.com); the collapsed THP is a private copy, so no leak")

PRE61 = {"skip": S_PRE61}
TESTS = [t[0] for t in cow_c.THP_TESTS]


def expected(test: str) -> dict:
    """{design: (verdict, source)}"""
    six = ("skip", S_COVER) if test == "collapse-after-fork-fully-shared" else ("pass", S_COVER)
    return row(("skip", S_PRE61), linux_6_5=six, linux_6_9=six, linux_6_18=("pass", S_618))


@pytest.mark.parametrize("design", ALL)
@pytest.mark.parametrize("test", TESTS)
def test_thp_collapse_case(test, design):
    want, source = expected(test)[design]
    c = catalog.get(test)
    r = run_sequential(CowModel(c, designs.load(design)))
    assert r.status == "complete" and not r.bugs, (r.reason, r.bugs)
    # no leak and no pin gone astray, whatever madvise() did (5.9 .. 5.18 copy the R/O-mapped, unshared subpage of a
    # PTE-mapped THP although they could reuse it: page_count() counts the whole folio -- an unnecessary COW,
    # which cow.c does not see)
    assert r.outcomes["missed"] == 0 and r.outcomes["wrong"] == 0, (r.outcomes, r.events)
    assert judge(c, r) == want, f"{test} / {design}: {judge(c, r)}, expected {want} ({source})"


@pytest.mark.parametrize("test,want", [("collapse-before-fork", "pass"), ("collapse-after-fork-fully-shared", "skip"),
                                       ("collapse-after-fork-lower-shared", "pass"),
                                       ("collapse-after-fork-upper-shared", "pass")])
def test_v6_1(test, want):
    # linux-5.19 models v5.19 .. v6.1; madv_collapse=true is v6.1 (7d8faaf15545).  At 4 subpages the mprotect()ed
    # second subpage lies in the lower half as at the kernel's 512 (5.19's mprotect leaves it R/O: 64fe24a3e05e is
    # 6.0 -- the design does not have it -- so the other half keeps a writable pte) -- S_COVER's outcomes
    c = catalog.get(test, hpage_pmd_nr=4)
    r = run_sequential(CowModel(c, designs.load("linux-5.19", {"madv_collapse": True})))
    assert r.status == "complete" and not r.bugs
    assert judge(c, r) == want, S_COVER


def test_titles_ids_and_order_are_cow_c_s():
    # tools/testing/selftests/mm/cow.c anon_thp_test_cases[] (109364fce504): the four descs, in order
    assert [c.title for c in cow_c.thp_cases()] == [
        "Basic COW after fork() when collapsing before fork()",
        "Basic COW after fork() when collapsing after fork() (fully shared)",
        "Basic COW after fork() when collapsing after fork() (lower shared)",
        "Basic COW after fork() when collapsing after fork() (upper shared)"]
    assert TESTS == ["collapse-before-fork", "collapse-after-fork-fully-shared", "collapse-after-fork-lower-shared",
                     "collapse-after-fork-upper-shared"]          # the ids pinned in HELPERS.md
    ids = catalog.ids()
    assert all(t in ids for t in TESTS)


def test_skip_is_read_from_the_madvise_error():
    c = catalog.get("collapse-after-fork-fully-shared")
    r = run_sequential(CowModel(c, designs.load("linux-6.9")))
    assert [(call, errno) for _, call, errno in r.errors] == [("madvise(MADV_COLLAPSE)", 22)]   # EINVAL
    assert r.as_json()["errors"][0]["errno"] == 22
    r = run_sequential(CowModel(c, designs.load("linux-6.18")))
    assert r.errors == [] and "errors" not in r.as_json()


@pytest.mark.parametrize("nr", [2, 8])
def test_collapse_cases_at_other_geometries(nr):
    # the verdicts do not depend on the THP size (cow.c runs them at the PMD size: 512 subpages on x86-64)
    for test in TESTS:
        c = catalog.get(test, hpage_pmd_nr=nr)
        for design in ("linux-6.9", "linux-6.18"):
            r = run_sequential(CowModel(c, designs.load(design)))
            assert judge(c, r) == expected(test)[design][0], (test, nr, design)


def test_skip_reason_is_what_cow_c_prints():
    # cover letter 20230104144905.460075-1-david@redhat.com: "ok 170 # SKIP MADV_COLLAPSE failed: Invalid argument"
    from cowlab.selftest import skip_reason
    c = catalog.get("collapse-after-fork-fully-shared")
    r = run_sequential(CowModel(c, designs.load("linux-6.5")))
    assert skip_reason(c, r) == "MADV_COLLAPSE failed: Invalid argument"
    assert skip_reason(c, run_sequential(CowModel(c, designs.load("linux-6.18")))) is None
