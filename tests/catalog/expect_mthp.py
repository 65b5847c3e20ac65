"""Expected verdicts of cow.c's 16 kB mTHP cases (``cow_c.mthp_cases()``), per design, each with its source.

Two tables:

* ``selftest(test, variant, design)`` -> (pass | fail, source): what cow.c reports.
* ``kinds(test, variant, design)`` -> (verdict kinds, source) for the designs with anonymous mTHP (linux-6.9,
  linux-6.18): which of missed / unnecessary / wrong the model must find.  They are written from the kernel code
  (cited), not from cowlab's output.

Geometry: a 16 kB folio is 4 subpages; cow.c's range under test is the whole folio (pte-thp, partial-shared-thp),
its first page (single-pte-thp) or its lower half (partial-mremap-thp, whose upper half was moved away).
"""
from cowlab.catalog import cow_c

from tests.catalog.test_cow_c_variants import expect as expect_pmd

MTHP_DESIGNS = ("linux-6.9", "linux-6.18")

S_TOTALS = ("cow.c totals on 6.9-rc with every mTHP size enabled: 'pass:769 fail:0 xfail:8 skip:1' of 778 "
            "(20240502085259.103784-2-david@redhat.com): 778 = 14 anon tests x (2 base + 2 hugetlb + 6 variants x "
            "8 THP sizes 16 kB .. 2 MiB + 2 PMD-only) + 4 collapse + 3 non-anon x 6, and the 8 XFAILs are the "
            "hugetlb vmsplice tests, so every mTHP case passed")
S_618 = ("derived: 1da190f4d0a6 (6.15) __wp_can_reuse_large_anon_folio() reuses only when every reference is a "
         "mapping of this MM (folio_large_mapcount() == folio_ref_count(), not maybe mapped shared): never a page "
         "another process or a pin can see, so what passed under 6.9 (copy) still passes")
S_NO_MTHP = ("derived: no anonymous mTHP before 6.8 (19eaf44954df); the range faults in base pages (cow.c itself "
             "prints 'Did not get a THP populated' and skips), so the base-page verdict of the test applies")

S_69_COPY = ("cd197c3a2040 (6.9) wp_can_reuse_anon_folio(): 'if (folio_test_large(folio)) return false': a "
             "write or unshare fault on a non-exclusive subpage of a large folio copies, although after the child "
             "exited nothing else maps or holds it")
S_618_FIRST = ("1da190f4d0a6 (6.15): the first unshare reuses the folio (mapcount == refcount, one MM) and marks "
               "that page exclusive; its R/O pin then adds a reference, so folio_large_mapcount() != "
               "folio_ref_count() for the next subpage, which is copied")
S_618_SINGLE = ("1da190f4d0a6: 'if (folio_large_mapcount(folio) <= 1) return false' (free a mostly unmapped large "
                "folio): the single remaining pte's page is copied")
S_618_REUSE = ("1da190f4d0a6: the sharer has exited, the folio is mapped by this MM only and has no reference "
               "beyond its mappings, so the fault on the once-shared first page reuses it")
S_FORK_PINNED = ("copy_present_ptes() / __folio_try_dup_anon_rmap() (6.9+ batching, folio_needs_cow_for_dma() per "
                 "folio): the folio is maybe pinned (its _pincount counts the io_uring pins of the lower half), so "
                 "fork copies every exclusive subpage for the child, also the two moved-away, unpinned ones "
                 "(-EBUSY -> -EAGAIN -> per-pte copy_present_page())")

PREV_SHARED = ("ro-pin-previously-shared", "ro-fast-pin-previously-shared")
EXCL_WRITE = ("iouring-ro-mapping", "iouring-fork", "ro-pin-exclusive", "ro-fast-pin-exclusive")
CASES = [(t[0], v) for v in cow_c.MTHP_VARIANTS for t in cow_c.TESTS]


def selftest(test, variant, design):
    """-> (pass | fail, source): cow.c's verdict of the 16 kB case."""
    if design in MTHP_DESIGNS:
        return "pass", S_TOTALS if design == "linux-6.9" else S_618
    base = "swap" if variant.endswith("-swap") else "base"
    want, source = expect_pmd(test, base, design)
    return want, f"{S_NO_MTHP} ({source})"


def kinds(test, variant, design):
    """-> (space-separated verdict kinds, source) under linux-6.9 / linux-6.18."""
    if variant.endswith("-swap"):
        # the folio is swapped out whole before the test; every later fault is a swap-in, exclusive when one
        # process's pte references the entry (do_swap_page(), as for base pages): nothing is copied for nothing
        return "", "derived: do_swap_page() maps an entry only this process references exclusive (5.19+)"
    if test in PREV_SHARED:
        if design == "linux-6.9":
            return "unnecessary", S_69_COPY
        return "unnecessary", S_618_SINGLE if variant == "single-pte-thp" else S_618_FIRST
    if test == "iouring-fork" and variant == "partial-mremap-thp":
        return "unnecessary", S_FORK_PINNED
    if variant == "partial-shared-thp" and test in EXCL_WRITE:
        # the short-lived sharer cleared PageAnonExclusive of the first page; the pin (R/W: a write fault; R/O: an
        # unshare fault) meets it
        if design == "linux-6.9":
            return "unnecessary", S_69_COPY
        return "", S_618_REUSE
    return "", ("derived: every copy is of a page the child maps or a pipe / pin holds (cow.c's own test), "
                "every exclusive page is reused")


def unnecessary(test, variant, design, nr):
    """-> how many unnecessary copies the model must count under linux-6.9 / linux-6.18 for a folio of ``nr``
    subpages (the sources of ``kinds()``: each copy is one subpage's, so the number follows the pages the test
    touches: the whole folio, its lower half, its first page)."""
    want, _ = kinds(test, variant, design)
    if not want:
        return 0
    if test in PREV_SHARED:
        pages = {"single-pte-thp": 1, "partial-mremap-thp": nr // 2}.get(variant, nr)
        # 6.9 copies every page the pin unshares; 6.18 reuses the first (unless it is the single remaining one)
        return pages if design == "linux-6.9" or variant == "single-pte-thp" else pages - 1
    if test == "iouring-fork":
        return nr // 2 if variant == "partial-mremap-thp" else 1     # the moved-away half / the once-shared page
    return 1                                                         # partial-shared-thp: the once-shared page
