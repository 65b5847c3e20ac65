"""Each race of the catalog under each design: broken (with a shortest trace)
or explored to completion without a violation.  Expected verdicts and their
sources; "derived" marks expectations reasoned from the kernel rules."""
import pytest

from cowlab import catalog, designs
from cowlab.explore import explore
from cowlab.model import CowModel

S_FGF = "57efa1fe5957 (5.11): gup-fast FOLL_PIN can race fork's early-COW check without write_protect_seq"
S_NOEARLY = "derived: before 70e806e4e645 (5.9) fork shares pinned pages anyway (reference 2.3)"
S_FALSEPOS = ("derived: gup-fast's try_grab raises the refcount by GUP_PIN_COUNTING_BIAS before it backs off, "
              "so fork's page_maybe_dma_pinned() copies for nothing ('fuzzy, false positives OK', pin_user_pages docs)")
S_LINUS = "LKML 17 Dec 2021 (the seed): mapcount rises through another process's swapin; 'page_lock() does' protect"
S_SWAP_K = ("derived: 5.7 counts swap entries under the page lock (reuse_swap_page); 5.9+ count the swap cache's "
            "reference (page_count)")
S_RECLAIM = ("aagit/kernel-testcases-for-v5.11 io_uring_swap.c ('v5.11, still works on v5.15-rc3'); "
             "feb889fb40fa's check is racy (Peter Xu); fixed by 1493a1913e34 / page_try_share_anon_rmap (5.19)")
S_MAPREUSE = "derived: mapcount-based reuse ignores the pin's reference, so the pinned page is reused"
S_THP = "CVE-2020-29368, c444eb564fb1 (5.7.5/5.8): the split takes the page lock"
S_THP_RFC = "derived: a mapcount read without the page lock races the split exactly as c444eb564fb1 describes"
S_RFC_BASE = "derived: the RFCs sit on 5.16, which has write_protect_seq (57efa1fe5957)"
S_GFE = ("088b8aa537c2: correct under sequential consistency (the model's); before 5.19 R/O pins are unreliable: "
         "a pinned page swapped out comes back as a copy (derived, part-2 cover letter)")

S_COLLAPSE = ("mm/khugepaged.c collapse_huge_page() (7d8faaf15545, 6.1): is_refcount_suitable() after "
              "pmdp_collapse_flush() refuses a pinned page (SCAN_PAGE_COUNT); a later gup-fast finds the PMD none and "
              "the slow path pins the new THP; tlb_remove_table_sync_one() waits out a gup-fast in progress")
S_NO_COLLAPSE = "7d8faaf15545: MADV_COLLAPSE is 6.1+; before, madvise() fails with EINVAL and nothing is collapsed"

EXPECT = {
    ("race-fork-gup-fast", "linux-5.7"): ("missed wrong", S_NOEARLY),
    ("race-fork-gup-fast", "linux-5.8"): ("missed wrong", S_NOEARLY),
    ("race-fork-gup-fast", "linux-5.9"): ("missed unnecessary wrong", S_FGF + "; " + S_FALSEPOS),
    ("race-fork-gup-fast", "linux-5.11"): ("unnecessary", S_FGF + "; " + S_FALSEPOS),
    ("race-fork-gup-fast", "linux-5.18"): ("unnecessary", S_FGF + "; " + S_FALSEPOS),
    ("race-fork-gup-fast", "linux-5.19"): ("unnecessary", S_FGF + "; " + S_FALSEPOS),
    ("race-fork-gup-fast", "linux-6.18"): ("unnecessary", S_FGF + "; " + S_FALSEPOS),
    ("race-swapin-mapcount", "rfc-mapcount"): ("missed", S_LINUS),
    ("race-swapin-mapcount", "rfc-mapcount:page_lock"):
        ("missed", S_LINUS + " (mapcount alone never sees the swap entry)"),
    ("race-swapin-mapcount", "rfc-page-anon-shared"): ("", S_LINUS),
    ("race-swapin-mapcount", "rfc-page-anon-shared:no_page_lock"): ("missed", S_LINUS),
    ("race-swapin-mapcount", "linux-5.7"): ("", S_SWAP_K),
    ("race-swapin-mapcount", "linux-5.11"): ("", S_SWAP_K),
    ("race-swapin-mapcount", "linux-5.19"): ("", S_SWAP_K),
    ("race-reclaim-pin", "linux-5.9"): ("wrong", S_RECLAIM),
    ("race-reclaim-pin", "linux-5.11"): ("wrong", S_RECLAIM),
    ("race-reclaim-pin", "linux-5.18"): ("wrong", S_RECLAIM),
    ("race-reclaim-pin", "linux-5.19"): ("", S_RECLAIM),
    ("race-reclaim-pin", "linux-6.18"): ("", S_RECLAIM),
    ("race-reclaim-pin", "linux-5.7"): ("", S_MAPREUSE),
    ("race-thp-split", "linux-5.7"): ("missed", S_THP),
    ("race-thp-split", "linux-5.8"): ("", S_THP),
    ("race-thp-split", "linux-5.11"): ("", S_THP),
    ("race-thp-split", "linux-5.19"): ("", S_THP),
    ("race-thp-split", "rfc-mapcount"): ("missed", S_THP_RFC),
    ("race-thp-split", "rfc-mapcount:page_lock"): ("", S_THP_RFC),
    ("race-gup-fast-exclusive", "linux-5.19"): ("", S_GFE),
    ("race-gup-fast-exclusive", "linux-6.18"): ("", S_GFE),
    ("race-gup-fast-exclusive", "linux-5.11"): ("wrong", S_GFE),
    ("race-fork-gup-fast", "rfc-mapcount"): ("unnecessary", S_RFC_BASE + "; " + S_FALSEPOS),
    ("race-fork-gup-fast", "rfc-page-anon-shared"): ("unnecessary", S_RFC_BASE + "; " + S_FALSEPOS),
    ("race-swapin-mapcount", "linux-5.8"): ("", S_SWAP_K),
    ("race-swapin-mapcount", "linux-5.9"): ("", S_SWAP_K),
    ("race-swapin-mapcount", "linux-5.18"): ("", S_SWAP_K),
    ("race-swapin-mapcount", "linux-6.18"): ("", S_SWAP_K),
    ("race-reclaim-pin", "linux-5.8"): ("", S_MAPREUSE),
    ("race-reclaim-pin", "rfc-mapcount"): ("", S_MAPREUSE),
    ("race-reclaim-pin", "rfc-page-anon-shared"): ("", S_MAPREUSE),
    ("race-thp-split", "linux-5.9"): ("", S_THP),
    ("race-thp-split", "linux-5.18"): ("", S_THP),
    ("race-thp-split", "linux-6.18"): ("", S_THP),
    ("race-thp-split", "rfc-page-anon-shared"): ("", S_THP_RFC),
    ("race-thp-split", "rfc-page-anon-shared:no_page_lock"): ("missed", S_THP_RFC),
    ("race-gup-fast-exclusive", "linux-5.7"): ("", S_MAPREUSE),
    ("race-gup-fast-exclusive", "linux-5.8"): ("", S_MAPREUSE),
    ("race-gup-fast-exclusive", "linux-5.9"): ("wrong", S_GFE),
    ("race-gup-fast-exclusive", "linux-5.18"): ("wrong", S_GFE),
    ("race-gup-fast-exclusive", "rfc-mapcount"): ("", S_MAPREUSE),
    ("race-gup-fast-exclusive", "rfc-page-anon-shared"): ("", S_MAPREUSE),
}
for _d in ("linux-6.5", "linux-6.9", "linux-6.18"):
    EXPECT[("race-collapse-gup-fast", _d)] = ("", S_COLLAPSE)
for _d in ("linux-5.7", "linux-5.8", "linux-5.9", "linux-5.11", "linux-5.18", "linux-5.19", "rfc-mapcount",
           "rfc-page-anon-shared"):
    EXPECT[("race-collapse-gup-fast", _d)] = ("", S_NO_COLLAPSE)
EXPECT[("race-collapse-gup-fast", "linux-5.19:madv_collapse")] = ("", S_COLLAPSE + " (v6.1)")
S_COLLAPSE_FORK = ("mm/khugepaged.c: dup_mmap() holds mmap_write_lock, so fork falls before the scan, between scan and "
                   "collapse_huge_page()'s revalidation under mmap_write_lock, or after; a fork first write-protects "
                   "every pte (SCAN_PAGE_RO up to 6.17; 6.18 collapses into the parent's private copy, live probe "
                   "tools/probe_madv_collapse.py fully); a collapse first leaves fork a PMD THP to share")
for _d in designs.names():
    EXPECT[("race-collapse-fork", _d)] = ("", S_COLLAPSE_FORK if designs.load(_d).madv_collapse else S_NO_COLLAPSE)
# linux-6.5 and linux-6.9 keep 5.19's PageAnonExclusive rules on these paths (they differ from it only in
# mprotect, non-anon unshare, O_DIRECT pins and large-folio reuse), so each race expects what 5.19 and 6.18 do
for _race in ("race-fork-gup-fast", "race-swapin-mapcount", "race-reclaim-pin", "race-thp-split",
              "race-gup-fast-exclusive"):
    for _d in ("linux-6.5", "linux-6.9"):
        EXPECT[(_race, _d)] = EXPECT[(_race, "linux-6.18")]


def _design(spec):
    name, _, opt = spec.partition(":")
    if opt == "page_lock":
        return designs.load(name, {"page_lock": True})
    if opt == "no_page_lock":
        return designs.load(name, {"page_lock": False})
    if opt == "madv_collapse":
        return designs.load(name, {"madv_collapse": True})
    return designs.load(name)


@pytest.mark.parametrize("case,design", sorted(EXPECT))
def test_race_verdict(case, design):
    kinds, source = EXPECT[(case, design)]
    r = explore(CowModel(catalog.get(case), _design(design)))
    assert r.status == "complete", r.reason
    assert not r.bugs, r.bugs[0]
    assert set(r.found) == set(kinds.split()), f"{case} / {design}: {sorted(r.found)} ({source})"
    for w in r.found.values():
        assert w.trace and w.depth == len(w.trace)


def test_every_race_case_has_expectations():
    from cowlab.catalog import races as race_module
    races = {c.id for c in race_module.cases()}
    assert races == {c for c, _ in EXPECT}


def test_every_race_has_an_expectation_for_every_design():
    from cowlab.catalog import races as race_module
    for c in race_module.cases():
        for d in designs.names():
            assert (c.id, d) in EXPECT, (c.id, d)


def test_collapse_race_needs_the_refcount_check(monkeypatch):
    """The race has teeth: without is_refcount_suitable() (a collapse that
    ignores the pin's reference) some interleaving copies the pinned page
    away from the pin -- the wrong COW the kernel's check prevents
    (mm/khugepaged.c: "Check if the page has any GUP (or other external) pins")."""
    from cowlab.kernel.mm import khugepaged
    monkeypatch.setattr(khugepaged, "is_refcount_suitable", lambda k, pfn: True)
    r = explore(CowModel(catalog.get("race-collapse-gup-fast"), designs.load("linux-6.18")))
    assert r.status == "complete" and not r.bugs
    assert set(r.found) == {"wrong"}


def test_collapse_fork_race_reaches_both_outcomes():
    """The fork-first order (the sequential schedule runs the parent's fork before cpu1's madvise): 6.18
    collapses the all-R/O range into the parent's own copy, 6.9 refuses it (SCAN_PAGE_RO -> EINVAL), as the
    source says; the exploration above covers this order among the others."""
    from cowlab.kernel.effects import CollapsePmd, Error
    from cowlab.model import CowModel as M
    from cowlab.schedule import sequential
    c = catalog.get("race-collapse-fork")
    for design, fork_first in (("linux-6.18", CollapsePmd), ("linux-6.9", Error)):
        m = M(c, designs.load(design))
        # the schedule runs the first runnable thread: the parent forks before cpu1 collapses
        effects = [type(e) for tr in sequential(m, max_steps=5000) for e in tr.effects]
        assert fork_first in effects, design
