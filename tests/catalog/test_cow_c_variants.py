"""cow.c's anonymous tests in every memory variant, judged as the selftest
judges them (pass / fail / xfail), against expectations with their sources.

Rules are written from the sources below, not from cowlab's output; where a
rule is the reference's derivation refined by reading the kernel code, the
source says so.
"""
import pytest

from cowlab import designs
from cowlab.catalog import cow_c
from cowlab.model import CowModel
from cowlab.run import run_sequential
from cowlab.selftest import judge

LEAK = [t[0] for t in cow_c.TESTS[:6]]
VMSPLICE = LEAK[2:]
CHILD_LEAK = LEAK[2:4]
SWAPPED = {v for v in cow_c.VARIANTS if v.endswith("swap")}

S_618 = ("cow.c on 6.x: 'pass:769 fail:0 xfail:8 skip:1' (20240502085259.103784-2-david@redhat.com): only the "
         "hugetlb vmsplice tests fail, flagged XFAIL (7dad331be781 lists them; Peter Xu saw the mprotect variant)")
S_519 = "derived: PageAnonExclusive (5.19) is what 6.x has for these tests; the hugetlb vmsplice XFAILs predate it"
SIX_X = ("linux-6.5", "linux-6.9", "linux-6.18")      # cow.c passes on 6.x; the hugetlb vmsplice tests are XFAIL
S_57 = ("reference 7.5 (derived): <=5.7 the vmsplice tests fail in every anon variant, fork() with a pinned "
        "buffer fails, the R/O pin on a shared page fails")
S_57_MREMAP = ("derived from 5.7 reuse_swap_page() -> page_trans_huge_map_swapcount(): the max mapcount over the "
               "THP's subpages counts the moved-away subpage, still shared with the child, so the write copies")
S_59 = ("reference 7.5 (derived): 5.9-5.17 vmsplice tests pass on base pages but fail with a PMD-mapped THP "
        "(do_huge_pmd_wp_page still by mapcount) and the child-leak tests fail when swapped out (do_swap_page "
        "still reuse_swap_page); iouring R/O-mapping and R/O pins on exclusive/previously-shared pages fail")
S_59_PMD = ("derived: 5.9-5.17 do_huge_pmd_wp_page() reuses by mapcount (reuse_swap_page), so a pinned, "
            "exclusive PMD-mapped THP is reused: the pin stays valid")
S_518 = ("COW fixes part 1 cover letter (20220126095557.32392-1-david@redhat.com): THP and swap leaks fixed; "
         "'this series certainly makes (2) [wrong COW] worse for THP'")
S_HUGETLB = ("hugetlb reuses by mapcount in every version (20240502085259.103784-3); early COW of pinned hugetlb "
             "pages at fork from 5.12 (4eae4efa2c29); R/O pin unsharing from 5.19")


def expect(test, variant, design):
    """-> (verdict, source)"""
    hug = variant == "hugetlb"
    if test in VMSPLICE and hug:
        if design in ("linux-5.8", "rfc-mapcount", "rfc-page-anon-shared") and test != "vmsplice-before-fork":
            # the vmsplice GUP breaks COW (5.8) / unshares (RFC) on the shared huge page first
            return "pass", S_58 if design == "linux-5.8" else S_RFC
        return "xfail", S_618 if design in SIX_X else S_HUGETLB + "; 5.7's reuse ignores GUP references"
    if design in SIX_X + ("linux-5.19",):
        return "pass", S_618 if design in SIX_X else S_519
    pmd = variant in ("thp",)
    if design == "linux-5.7":
        if test in VMSPLICE:
            if variant == "partial-mremap-thp":
                return "pass", S_57_MREMAP
            return "fail", S_57
        if test == "iouring-fork":
            return "fail", S_57
        if test in ("ro-pin-shared", "ro-fast-pin-shared"):
            return "fail", S_57
        return "pass", S_57
    if design in ("linux-5.9", "linux-5.11", "linux-5.18"):
        if hug:
            if test == "iouring-fork":
                return ("pass" if design == "linux-5.18" else "fail"), S_HUGETLB
            if test in ("ro-pin-shared", "ro-fast-pin-shared"):
                return "fail", S_HUGETLB
            return "pass", S_HUGETLB
        if test in VMSPLICE:
            if design == "linux-5.18":
                return "pass", S_518
            if pmd:
                return "fail", S_59
            if test in CHILD_LEAK and variant in SWAPPED:
                return "fail", S_59
            return "pass", S_59
        if test in ("basic-cow-fork", "basic-cow-fork-mprotect", "iouring-fork"):
            return "pass", S_59 + "; fork COW / early COW of pinned pages (70e806e4e645)"
        if test in ("ro-pin-shared", "ro-fast-pin-shared"):
            return "fail", S_59
        # iouring-ro-mapping and the R/O pins on exclusive / previously-shared pages
        if pmd and design != "linux-5.18":
            return "pass", S_59_PMD
        return "fail", S_59 if design != "linux-5.18" else S_518
    if design == "linux-5.8":
        if test == "vmsplice-before-fork":
            if variant == "partial-mremap-thp":
                return "pass", S_57_MREMAP
            return "fail", S_LINUS
        if test == "iouring-fork":
            return "fail", S_57
        return "pass", S_58
    if design in ("rfc-mapcount", "rfc-page-anon-shared"):
        if test == "vmsplice-before-fork":
            return "fail", S_LINUS
        if test in CHILD_LEAK and variant in SWAPPED and design == "rfc-mapcount":
            return "fail", S_RFC_SWAP
        return "pass", S_RFC
    raise KeyError(design)


S_58 = ("derived from 17839856fd58 (5.8): every GUP on a COW mapping breaks COW first, so R/O pins and the "
        "child's vmsplice get a private page; fork still shares pinned pages")
S_LINUS = ("Linus Torvalds, LKML 17 Dec 2021 (linux-doc msg106616): a R/O reference taken at mapcount 1, then fork "
           "and unmap in the original -- a mapcount rule reuses the page the reference still reads")
S_RFC = "derived: the RFC unshares a R/O GUP of a page with mapcount > 1 and reuses at mapcount 1"
S_RFC_SWAP = ("the seed (Linus, 17 Dec 2021): mapcount does not see another process's swap entry, so the child's "
              "vmsplice of its swapped-in page does not unshare and the parent reuses it on its swapin")

DESIGNS = ("linux-5.7", "linux-5.8", "linux-5.9", "linux-5.11", "linux-5.18", "linux-5.19", "linux-6.5", "linux-6.9",
           "linux-6.18", "rfc-mapcount", "rfc-page-anon-shared")
CASES = [(t[0], v) for v in cow_c.VARIANTS for t in cow_c.TESTS]


@pytest.fixture(scope="module")
def built():
    return {c.id: c for c in cow_c.cases()}


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("test,variant", CASES)
def test_variant(built, test, variant, design):
    want, source = expect(test, variant, design)
    c = built[cow_c.case_id(test, variant)]
    r = run_sequential(CowModel(c, designs.load(design)))
    assert not r.bugs, r.bugs
    got = judge(c, r)
    assert got == want, f"{c.id} under {design}: {got}, expected {want} ({source})"
