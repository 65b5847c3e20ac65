"""Races of the seed thread and its history: concurrent kernel paths whose
every interleaving the explorer tries (``cowlab explore``)."""
from __future__ import annotations

from ..kernel.types import HPAGE_PMD_NR
from ..scenario import Script


def race_fork_gup_fast():
    """gup-fast FOLL_PIN (pin_user_pages_fast(FOLL_WRITE|FOLL_LONGTERM), an
    io_uring fixed buffer) racing with fork's early-COW check: the pin lands
    between copy_present_pte()'s page_maybe_dma_pinned() test and the
    write-protect, so a pinned page is shared.  Fixed by write_protect_seq
    (57efa1fe5957, 5.11)."""
    s = Script("race-fork-gup-fast", "gup-fast FOLL_PIN racing with fork's early-COW check", pages=1,
               source="57efa1fe5957 mm/gup: prevent gup_fast from racing with COW during fork", tags=("race",))
    p, c = s.process("parent"), s.process("child")
    s.cpu("parent", "parent.cpu1")
    p.mmap(0)
    p.write(0)
    p.lru_add_drain()
    s.parallel({"parent": [("fork", {"child": "child"})],
                "parent.cpu1": [("io_uring_register", {"addr": 0, "buf": "b", "fast": True})]})
    p.write(0)
    p.io_uring_read_fixed(buf="b")
    p.read(0)
    c.read(0)
    c.exit()
    return s.build()


def race_swapin_mapcount():
    """The seed's concern (Linus Torvalds, 17 Dec 2021): "mapcount can
    increase from another process faulting in an pte with that swap entry
    ... mmap_sem doesn't protect against that. Again, page_lock() does."
    The parent maps the page R/O, the child still has the swap entry; the
    parent's write fault decides while the child swaps the entry in."""
    s = Script("race-swapin-mapcount", "write fault deciding by mapcount while another process swaps in",
               pages=1, source="LKML 17/18 Dec 2021 (the seed), Linus Torvalds / David Hildenbrand", tags=("race",))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0)
    p.write(0)
    p.lru_add_drain()
    p.fork(c)
    p.pageout(0, shared_ok=True)          # reclaim unmaps both mappings
    p.read(0)                             # the parent swaps it back in R/O; the child keeps its swap entry
    s.parallel({"parent": [("write", {"addr": 0})], "child": [("read", {"addr": 0})]})
    c.read(0)
    c.exit()
    return s.build()


def _pin_against_reclaim(s, pin_op):
    """A populated page on the LRU; reclaim (MADV_PAGEOUT from another CPU)
    races with the parent's pin operation.  Returns the parent."""
    p = s.process("parent")
    s.cpu("parent", "parent.cpu1")
    p.mmap(0)
    p.write(0)
    p.lru_add_drain()
    s.parallel({"parent.cpu1": [("pageout", {"addr": 0})], "parent": [pin_op]})
    return p


def race_reclaim_pin():
    """Andrea Arcangeli's io_uring_swap reproducer (kernel-testcases-for-v5.11):
    an io_uring fixed-buffer pin races with reclaim's page_maybe_dma_pinned()
    check (feb889fb40fa is racy: it runs before the unmap); the pinned page
    ends up in the swap cache, is swapped in R/O and written: the copy leaves
    the pin behind.  Fixed by PageAnonExclusive (5.19: try_to_unmap refuses
    pinned pages)."""
    s = Script("race-reclaim-pin", "io_uring pin racing with reclaim, then R/O swapin and a write", pages=1,
               source="aagit/kernel-testcases-for-v5.11 io_uring_swap.c; Peter Xu on feb889fb40fa", tags=("race",))
    p = _pin_against_reclaim(s, ("io_uring_register", {"addr": 0, "buf": "b"}))
    p.read(0)
    p.write(0)
    p.io_uring_read_fixed(buf="b")
    p.read(0)
    return s.build()


def race_thp_split(N: int = HPAGE_PMD_NR):
    """CVE-2020-29368 (Jann Horn; c444eb564fb1, "before 5.7.5"): a write
    fault on a PMD-mapped THP computes the mapcount with reuse_swap_page()
    while the other process splits its PMD mapping, sees it transiently at 1
    and reuses a page the other process still maps.  With a THP of N
    subpages."""
    s = Script("race-thp-split", "THP write fault racing with another process splitting its PMD", pages=N,
               source="CVE-2020-29368; c444eb564fb1 mm: thp: make the THP mapcount atomic against "
                      "__split_huge_pmd_locked()", tags=("race", "thp"), hpage_pmd_nr=N)
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=N, thp=True)
    p.write(0)
    p.fork(c)
    s.parallel({"child": [("split_pmd", {"addr": 0})], "parent": [("write", {"addr": 0})]})
    c.read(0)
    c.read(N - 1)
    c.exit()
    return s.build()


def race_gup_fast_exclusive():
    """PageAnonExclusive clearing by swapout (page_try_share_anon_rmap after
    clearing the pte) racing with a R/O gup-fast pin (B1..B5 of 088b8aa537c2).
    The model is sequentially consistent: the 6.1 fix (smp_mb() pairs) is
    about weak memory ordering, which it cannot express (see the README)."""
    s = Script("race-gup-fast-exclusive", "swapout clearing PageAnonExclusive racing with a R/O gup-fast pin",
               pages=1, source="088b8aa537c2 mm: fix PageAnonExclusive clearing racing with concurrent RCU GUP-fast",
               tags=("race",))
    p = _pin_against_reclaim(s, ("pin_longterm", {"addr": 0, "fast": True}))
    p.write(0)
    p.pin_read()
    p.read(0)
    p.unpin()
    return s.build()


def race_collapse_gup_fast(N: int = HPAGE_PMD_NR):
    """MADV_COLLAPSE of a PTE-mapped THP racing with a R/O gup-fast long-term
    pin (PIN_LONGTERM_TEST_START with PIN_LONGTERM_TEST_FLAG_USE_FAST) of its
    first page from another CPU; then the process writes the page and reads
    it through the pin.  The kernel (mm/khugepaged.c collapse_huge_page(),
    6.1+): the pin is taken either before pmdp_collapse_flush() -- then
    __collapse_huge_page_isolate()'s is_refcount_suitable() sees its
    reference and the collapse fails (SCAN_PAGE_COUNT, -EAGAIN), the ptes put
    back -- or after it, when gup-fast finds the PMD none (and from
    70cbc3cc78a9 re-checks the PMD) and the slow path waits for mmap_lock,
    then pins the new THP; a gup-fast inside its IRQs-off section holds up
    tlb_remove_table_sync_one() (2ba99c5e0881 "mm/khugepaged: fix GUP-fast
    interaction by sending IPI", 6.1).  So no interleaving leaves the pin on
    a page the process no longer maps.  Before 6.1 MADV_COLLAPSE is -EINVAL."""
    s = Script("race-collapse-gup-fast", "MADV_COLLAPSE of a PTE-mapped THP racing with a R/O gup-fast pin",
               pages=N, source="mm/khugepaged.c collapse_huge_page(): is_refcount_suitable() after "
                               "pmdp_collapse_flush() (7d8faaf15545, 6.1); 2ba99c5e0881; 70cbc3cc78a9",
               tags=("race", "thp", "collapse"), hpage_pmd_nr=N)
    p = s.process("parent")
    s.cpu("parent", "parent.cpu1")
    p.mmap(0, pages=N, thp=True)
    p.write(0, pages=N)
    p.mprotect(1, prot="r")                   # PTE-map the THP (cow.c's way)
    p.mprotect(1, prot="rw")
    s.parallel({"parent": [("madvise", {"addr": 0, "pages": N, "advice": "collapse"})],
                "parent.cpu1": [("pin_longterm", {"addr": 0, "fast": True})]})
    p.write(0)
    p.pin_read()
    p.read(0)
    p.unpin()
    return s.build()


def race_collapse_fork(N: int = HPAGE_PMD_NR):
    """MADV_COLLAPSE of a PTE-mapped THP from one CPU racing with fork() from
    another; then the parent writes the whole range and the child reads it.
    dup_mmap() holds mmap_write_lock(oldmm) throughout, so it runs before the
    collapse's scan, between the scan (mmap_lock for read) and
    collapse_huge_page()'s write-locked section, or after the collapse.  The
    kernel (mm/khugepaged.c): a fork before the write-locked section has
    write-protected every pte, which fails the collapse up to 6.17
    (SCAN_PAGE_RO in __collapse_huge_page_isolate(), -EINVAL) and is
    collapsed from 6.18 into a copy private to the parent (the child keeps
    the old pages); a collapse first gives fork a PMD-mapped THP to share
    (copy_huge_pmd()).  Every order keeps the processes apart."""
    s = Script("race-collapse-fork", "MADV_COLLAPSE of a PTE-mapped THP racing with fork()", pages=N,
               source="mm/khugepaged.c hpage_collapse_scan_pmd() / collapse_huge_page() (7d8faaf15545, 6.1): "
                      "mmap_lock dropped between scan and collapse, revalidated under mmap_write_lock",
               tags=("race", "thp", "collapse"), hpage_pmd_nr=N)
    p, c = s.process("parent"), s.process("child")
    s.cpu("parent", "parent.cpu1")
    p.mmap(0, pages=N, thp=True)
    p.write(0, pages=N)
    p.mprotect(1, prot="r")
    p.mprotect(1, prot="rw")
    s.parallel({"parent": [("fork", {"child": "child"})],
                "parent.cpu1": [("madvise", {"addr": 0, "pages": N, "advice": "collapse"})]})
    p.write(0, pages=N)
    c.read(0, pages=N)
    c.exit()
    return s.build()


def cases(nr: int = HPAGE_PMD_NR):
    """The cases with THPs of ``nr`` subpages."""
    return [race_fork_gup_fast(), race_swapin_mapcount(), race_reclaim_pin(), race_thp_split(nr),
            race_gup_fast_exclusive(), race_collapse_gup_fast(nr), race_collapse_fork(nr)]


def two_families():
    """Two independent process families in one scenario (for measuring
    partial-order reduction): in each, a write fault on a page made R/O
    races with a speculative reference from another CPU."""
    from ..scenario import combine

    def family(id):
        s = Script(id, pages=1)
        p = s.process("parent")
        s.cpu("parent", "parent.cpu1")
        p.mmap(0)
        p.write(0)
        p.mprotect(0, prot="r")
        p.mprotect(0, prot="rw")
        s.parallel({"parent": [("write", {"addr": 0})],
                    "parent.cpu1": [("speculative_get", {"addr": 0}), ("speculative_put", {})]})
        p.read(0)
        return s.build()
    return combine("two-families", "two independent families", family("f1"), family("f2"))
