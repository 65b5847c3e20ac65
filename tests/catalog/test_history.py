"""The CVE and bug reproducers (reference section 4) under every design."""
import pytest


from .expect import ALL, check, row

S_THP = ("vmsplice-v5.11.c: THP leak 'reintroduced' with 09854ba94c6a (5.9), fixed by 3bff7e3f1f16 (5.18); "
         "5.7 leaks (CVE-2020-29374); 5.8 breaks COW in GUP (17839856fd58)")
S_SWAP = ("reference 2.5.3: do_swap_page kept reuse_swap_page() until c145e0b47c77 (5.18); 5.7 leaks; 5.8 breaks "
          "COW in GUP")
S_HUG = "vmsplice-hugetlb-v5.11.c; hugetlb reuses by mapcount in every version and vmsplice is FOLL_GET (cow.c XFAIL)"
S_RFC = "derived: the R/O GUP unshares a page with mapcount > 1 (RFC 20211217113049.23850-1-david@redhat.com)"
S_PCWP = ("aagit/kernel-testcases-for-v5.11 page_count_do_wp_page(-swap).c: caused by 09854ba94c6a, reproduce on "
          "v5.11..v5.15-rc3; fixed by PageAnonExclusive (5.19: the exclusive page is reused whatever its refcount)")
S_PCWP_MAP = "derived: mapcount-based reuse ignores the O_DIRECT reference, so the page is reused, not copied"
S_LINUS = "LKML 17 Dec 2021, Linus Torvalds (linux-doc msg106616): mapcount cannot decide this COW"
S_LINUS_PC = "derived: page_count() sees the FOLL_GET reference and copies (09854ba94c6a)"


EXPECT = {
    "cve-2020-29374-thp": row(("", S_THP), linux_5_7=("missed", S_THP), linux_5_9=("missed", S_THP),
                              linux_5_11=("missed", S_THP), rfc_mapcount=("", S_RFC), rfc_page_anon_shared=("", S_RFC)),
    "cve-2020-29374-swap": row(("", S_SWAP), linux_5_7=("missed", S_SWAP), linux_5_9=("missed", S_SWAP),
                               linux_5_11=("missed", S_SWAP), rfc_mapcount=("", S_RFC),
                               rfc_page_anon_shared=("", S_RFC)),
    "cve-2020-29374-hugetlb": row(("missed", S_HUG),
                                  linux_5_8=("", "17839856fd58 forced the COW break for hugetlb too"),
                                  rfc_mapcount=("", S_RFC), rfc_page_anon_shared=("", S_RFC)),
    "page-count-do-wp-page": row(("", S_PCWP_MAP), linux_5_9=("unnecessary wrong", S_PCWP),
                                 linux_5_11=("unnecessary wrong", S_PCWP), linux_5_18=("unnecessary wrong", S_PCWP),
                                 linux_5_19=("", S_PCWP), linux_6_18=("", S_PCWP)),
    "page-count-do-wp-page-swap": row(("", S_PCWP_MAP), linux_5_9=("unnecessary wrong", S_PCWP),
                                      linux_5_11=("unnecessary wrong", S_PCWP),
                                      linux_5_18=("unnecessary wrong", S_PCWP), linux_5_19=("", S_PCWP),
                                      linux_6_18=("", S_PCWP)),
    "linus-counterexample": row(("", S_LINUS_PC), linux_5_7=("missed", S_LINUS), linux_5_8=("missed", S_LINUS),
                                rfc_mapcount=("missed", S_LINUS), rfc_page_anon_shared=("missed", S_LINUS)),
}


@pytest.mark.parametrize("case,design", [(c, d) for c in EXPECT for d in ALL])
def test_history_case(case, design):
    check(case, design, *EXPECT[case][design])


def test_every_history_case_has_expectations():
    from cowlab.catalog import history
    assert {c.id for c in history.cases()} == set(EXPECT)
