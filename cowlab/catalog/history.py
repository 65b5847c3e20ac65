"""CVE and bug reproducers from the history of COW vs GUP (reference §4)."""
from __future__ import annotations

from ..kernel.types import HPAGE_PMD_NR
from ..scenario import Script


def _cve_variant(id, title, source, memory, N=HPAGE_PMD_NR):
    """With THPs/hugetlb pages of N subpages."""
    s = Script(id, title, pages=N if memory in ("thp", "hugetlb") else 1, source=source, tags=("cve", memory),
               hpage_pmd_nr=N)
    p, c = s.process("parent"), s.process("child")
    n = N if memory in ("thp", "hugetlb") else 1
    p.mmap(0, pages=n, thp=memory == "thp", hugetlb=memory == "hugetlb")
    p.write(0, pages=n)
    p.fork(c)
    c.vmsplice(0, pages=n, pipe="p")
    c.munmap(0, pages=n)
    if memory == "swap":
        p.pageout(0)                     # the parent's pte is a swap entry when it writes
    p.write(0, pages=n)
    c.pipe_read("p")
    c.exit()
    return s.build()


def page_count_do_wp_page(swap: bool):
    """Andrea Arcangeli, kernel-testcases-for-v5.11 page_count_do_wp_page.c
    (and -swap.c): an O_DIRECT read DMAs into the page (FOLL_GET|FOLL_WRITE
    before 6.5) while a thread writes the same page and another clears the
    soft-dirty bits (or swaps the page out): the write fault copies because of
    the O_DIRECT reference, and the DMA lands in the old page."""
    name = "page-count-do-wp-page" + ("-swap" if swap else "")
    s = Script(name, "O_DIRECT read racing a writer and " + ("swapout" if swap else "soft-dirty clearing"),
               pages=1, source=f"aagit/kernel-testcases-for-v5.11 {name}.c ('caused by 09854ba94c6a')",
               tags=("race", "history"))
    p = s.process("parent")
    s.cpu("parent", "parent.cpu1")
    s.cpu("parent", "parent.cpu2")
    p.mmap(0)
    p.write(0)
    p.lru_add_drain()
    s.parallel({"parent": [("odirect_read", {"addr": 0})],
                "parent.cpu1": [("read", {"addr": 0}), ("write", {"addr": 0})],   # the writer's read-modify-write
                "parent.cpu2": [("pageout", {"addr": 0})] if swap else [("clear_refs", {})]})
    p.read(0)
    return s.build()


def linus_counterexample():
    """Linus Torvalds, LKML 17 Dec 2021 (linux-doc msg106616): a R/O reference
    taken while mapcount == 1, then fork(), then unmap in the original: the
    child has mapcount 1 but an elevated refcount and "HAS TO COW before
    writing" -- "mapcount can fundamentally never be relevant for COW"."""
    s = Script("linus-counterexample", "R/O reference at mapcount 1, fork, unmap in the original, child writes",
               pages=1, source="LKML 17 Dec 2021, Linus Torvalds (linux-doc msg106616)", tags=("history",))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0)
    p.write(0)
    p.get_user_pages(0, pin="ref")       # a R/O FOLL_GET reference (e.g. vmsplice) while mapcount == 1
    p.fork(c)
    p.munmap(0)
    c.write(0)
    c.exit()
    p.put_user_pages(pin="ref")
    return s.build()


def cases(nr: int = HPAGE_PMD_NR):
    """The cases with THPs and hugetlb pages of ``nr`` subpages."""
    return [
        _cve_variant("cve-2020-29374-thp", "CVE-2020-29374 with a PMD-mapped THP (vmsplice-v5.11.c)",
                     "aagit/kernel-testcases-for-v5.11 vmsplice-v5.11.c: 'reintroduced ... affects v5.11-rc2'; "
                     "fixed by 3bff7e3f1f16 (5.18)", "thp", nr),
        _cve_variant("cve-2020-29374-swap", "CVE-2020-29374 with the parent's page swapped out",
                     "David Hildenbrand's summary 3ae33b08-d9ef-f846-56fb-645e3b9b4c66@redhat.com: do_swap_page "
                     "reuse_swap_page() until c145e0b47c77 (5.18)", "swap", nr),
        _cve_variant("cve-2020-29374-hugetlb", "CVE-2020-29374 with hugetlb (vmsplice-hugetlb-v5.11.c)",
                     "aagit/kernel-testcases-for-v5.11 vmsplice-hugetlb-v5.11.c; cow.c hugetlb XFAIL (still "
                     "leaks for FOLL_GET)", "hugetlb", nr),
        page_count_do_wp_page(False),
        page_count_do_wp_page(True),
        linus_counterexample(),
    ]
