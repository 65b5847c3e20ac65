"""Expected verdict of every design on every starter case, each with its source.

A verdict is the set of outcome kinds that must occur ("" = none of missed,
unnecessary, wrong).  Sources: kernel commits, the cow.c selftest, LKML mails
and the reference's derivations (marked "derived").  These tables are written
from those sources, not from cowlab's output.
"""
import pytest

D57, D58, D59, D511, D518, D519, D618, RM, RP = ("linux-5.7", "linux-5.8", "linux-5.9", "linux-5.11", "linux-5.18",
                                                 "linux-5.19", "linux-6.18", "rfc-mapcount", "rfc-page-anon-shared")
D65, D69 = "linux-6.5", "linux-6.9"      # 5.19's rules for base pages (they differ on large folios and O_DIRECT)
ALL = (D57, D58, D59, D511, D518, D519, D65, D69, D618, RM, RP)
PAGE_COUNT_ERA = (D59, D511, D518)

S_COWC = "cow.c passes on 6.x (selftest, 20240502085259.103784-2-david@redhat.com: only hugetlb vmsplice XFAIL)"
S_FORK = ("fork() COW of a page mapped by two processes holds in every version "
          "(do_wp_page copies at mapcount/page_count 2)")
S_CVE = "CVE-2020-29374 (Jann Horn, Project Zero 2045): leak before 17839856fd58 (5.7.3/5.8)"
S_5_8 = "17839856fd58: GUP on a COW mapping breaks COW first (FOLL_WRITE forced)"
S_5_9 = "09854ba94c6a: page_count() != 1 -> copy, so the pipe's reference forces the writer to copy"
S_RFC_UNSHARE = "derived: a R/O GUP unshares when mapcount > 1 (RFC 20211217113049.23850-1-david@redhat.com)"
S_LINUS = ("Linus Torvalds, LKML 17 Dec 2021 (linux-doc msg106616): a R/O reference taken while mapcount == 1, "
           "then fork and unmap in the original: mapcount is 1 again but the page must be copied")
S_IOU_RO = ("cow.c 'R/O-mapping a page registered as iouring fixed buffer'; reference 7.5 (derived): fails 5.9-5.18 "
            "(wrong COW, Andrea Arcangeli's page_count_do_wp_page), passes 5.7/5.8 (mapcount reuse) "
            "and 5.19+ (6c287605fd56)")
S_IOU_FORK = ("cow.c 'fork() with an iouring fixed buffer'; reference 7.5 (derived): fails before the early COW of "
              "pinned pages at fork (70e806e4e645, 5.9)")
S_ROPIN = ("cow.c R/O pin cases; reference 7.5 (derived): the R/O pin fails 5.9-5.18 (page_count COW breaks it), "
           "passes 5.19+ (a7f226604170 unshare); 5.7: shared fails, exclusive/previously-shared pass (mapcount reuse)")
S_ROPIN_58 = "derived from 17839856fd58: the pin is taken with FOLL_WRITE, breaking COW at pin time"
S_LRU = ("David Hildenbrand, 'Summary of COW Related Issues' 3ae33b08-d9ef-f846-56fb-645e3b9b4c66@redhat.com "
         "section 5; fixed for the local CPU by d4c470970d45 (5.18); exclusive pages need no check from 5.19")
S_LRU_REMOTE = ("do_wp_page() comment since d4c470970d45: "
                "'We cannot easily detect+handle references from remote LRU pagevecs'")
S_SPEC = ("the seed, LKML 18 Dec 2021 40e7e0ab-0828-b2e7-339f-35f68a228b3d@redhat.com: page_count != 1 -> unnecessary "
          "COW 'can happen easily (speculative references ...)'; mapcount > 1 -> 'cannot happen'")
S_MAP = "derived: mapcount-based reuse ignores references (reuse_swap_page(), the seed's mapcount rule)"
S_EXCL = "derived: PageAnonExclusive pages are reused without a refcount check (6c287605fd56)"


def row(default, **over):
    return {d: over.get(d.replace("-", "_").replace(".", "_"), default) for d in ALL}


def v(kinds, source):
    return (kinds, source)


EXPECT = {
    "basic-cow-fork": row(v("", S_FORK)),
    "basic-cow-fork-mprotect": row(v("", S_FORK + "; mprotect maps only exclusive pages writable (64fe24a3e05e)")),
    "vmsplice-unmap-child": row(v("", S_5_9), linux_5_7=v("missed", S_CVE), linux_5_8=v("", S_5_8),
                                rfc_mapcount=v("", S_RFC_UNSHARE), rfc_page_anon_shared=v("", S_RFC_UNSHARE)),
    "vmsplice-unmap-child-mprotect": row(v("", S_5_9), linux_5_7=v("missed", S_CVE), linux_5_8=v("", S_5_8),
                                         rfc_mapcount=v("", S_RFC_UNSHARE), rfc_page_anon_shared=v("", S_RFC_UNSHARE)),
    "cve-2020-29374": row(v("", S_5_9), linux_5_7=v("missed", S_CVE), linux_5_8=v("", S_5_8),
                          rfc_mapcount=v("", S_RFC_UNSHARE), rfc_page_anon_shared=v("", S_RFC_UNSHARE)),
    # vmsplice before fork: the reference's 7.5 derives "5.8 passes"; Linus' counterexample says a mapcount rule
    # must miss this COW, and 5.8 reuses by mapcount -- the model agrees with Linus (see the note on the issue).
    "vmsplice-before-fork": row(v("", S_5_9), linux_5_7=v("missed", "reference 7.5 (derived): <=5.7 cases 3-6 fail"),
                                linux_5_8=v("missed", S_LINUS), rfc_mapcount=v("missed", S_LINUS),
                                rfc_page_anon_shared=v("missed", S_LINUS)),
    "vmsplice-after-fork": row(v("", S_5_9), linux_5_7=v("missed", "reference 7.5 (derived): <=5.7 cases 3-6 fail"),
                               linux_5_8=v("", S_5_8), rfc_mapcount=v("", S_RFC_UNSHARE),
                               rfc_page_anon_shared=v("", S_RFC_UNSHARE)),
    "iouring-ro-mapping": row(v("", S_IOU_RO), linux_5_9=v("wrong", S_IOU_RO), linux_5_11=v("wrong", S_IOU_RO),
                              linux_5_18=v("wrong", S_IOU_RO)),
    "iouring-fork": row(v("", S_IOU_FORK), linux_5_7=v("wrong", S_IOU_FORK), linux_5_8=v("wrong", S_IOU_FORK)),
    "lru-batch-fresh-page": row(v("", S_LRU), linux_5_9=v("unnecessary", S_LRU), linux_5_11=v("unnecessary", S_LRU),
                                linux_5_7=v("", S_MAP), linux_5_8=v("", S_MAP), rfc_mapcount=v("", S_MAP),
                                rfc_page_anon_shared=v("", S_MAP)),
    "lru-batch-remote-cpu": row(v("", S_EXCL), linux_5_9=v("unnecessary", S_LRU_REMOTE),
                                linux_5_11=v("unnecessary", S_LRU_REMOTE), linux_5_18=v("unnecessary", S_LRU_REMOTE),
                                linux_5_7=v("", S_MAP), linux_5_8=v("", S_MAP), rfc_mapcount=v("", S_MAP),
                                rfc_page_anon_shared=v("", S_MAP)),
    "speculative-ref": row(v("unnecessary", S_SPEC + "; 5.19+: a previously shared page is not exclusive, so the "
                                                     "page_count test decides (derived)"),
                           linux_5_7=v("", S_SPEC), linux_5_8=v("", S_SPEC), rfc_mapcount=v("", S_SPEC),
                           rfc_page_anon_shared=v("", S_SPEC)),
}
for _case in ("ro-pin-shared", "ro-fast-pin-shared"):
    EXPECT[_case] = row(v("", S_ROPIN), linux_5_7=v("wrong", S_ROPIN), linux_5_8=v("", S_ROPIN_58),
                        linux_5_9=v("wrong", S_ROPIN), linux_5_11=v("wrong", S_ROPIN), linux_5_18=v("wrong", S_ROPIN),
                        rfc_mapcount=v("", S_RFC_UNSHARE), rfc_page_anon_shared=v("", S_RFC_UNSHARE))
for _case in ("ro-pin-previously-shared", "ro-fast-pin-previously-shared", "ro-pin-exclusive", "ro-fast-pin-exclusive"):
    EXPECT[_case] = row(v("", S_ROPIN), linux_5_8=v("", S_ROPIN_58), linux_5_9=v("wrong", S_ROPIN),
                        linux_5_11=v("wrong", S_ROPIN), linux_5_18=v("wrong", S_ROPIN),
                        rfc_mapcount=v("", S_MAP), rfc_page_anon_shared=v("", S_MAP))


def test_every_starter_case_has_expectations():
    from cowlab import catalog
    from cowlab.catalog import seed
    starters = {c.id for c in catalog.all_cases() if "cow.c" in c.tags and "base" in c.tags} | \
        {c.id for c in seed.cases()}
    assert set(EXPECT) == starters
    for case, per in EXPECT.items():
        assert set(per) == set(ALL), case
        for d, (kinds, src) in per.items():
            assert src, (case, d)


@pytest.mark.parametrize("case,design", [(c, d) for c in EXPECT for d in ALL])
def test_expected_verdict(run, case, design):
    kinds, source = EXPECT[case][design]
    r = run(case, design)
    assert r.status == "complete", r.reason
    assert not r.bugs, r.bugs
    got = {k for k, n in r.outcomes.items() if n}
    want = set(kinds.split()) if kinds else set()
    assert got == want, (f"{case} under {design}: got {sorted(got) or 'none'}, "
                         f"expected {sorted(want) or 'none'} ({source})")
