"""Regression cases for false verdicts found on scenarios nobody had written
(issue "Verdicts you can trust"): each gave a missed or wrong COW, or ran to
the step limit, under the design of the very kernel it conforms to.  The
expected verdicts per design, with their sources, are in
tests/catalog/test_trust.py."""
from __future__ import annotations

from ..kernel.types import HPAGE_PMD_NR
from ..scenario import Script

SRC_MREMAP = ("mm/mremap.c move_ptes(): the ptes move as they are (no reference or mapcount change); "
              "io_uring/rsrc.c io_sqe_buffer_register(): the fixed buffer holds the pinned pages, not the address")
SRC_EFAULT = "mm/gup.c check_vma_flags(): FOLL_WRITE without VM_WRITE (and no FOLL_FORCE) is -EFAULT"
SRC_PAGEOUT = "mm/madvise.c madvise_pageout() -> can_madv_lru_vma(): a VM_HUGETLB vma is -EINVAL"
SRC_PROTNONE = ("arch/x86/mm/fault.c access_error(): a read of a vma without VM_READ|VM_WRITE|VM_EXEC is a "
                "SIGSEGV, whose default action kills the process")
SRC_HUGE_ZERO = ("mm/huge_memory.c do_huge_pmd_anonymous_page(): a read fault where a THP fits maps the huge zero "
                 "folio (set_huge_zero_folio()); do_huge_pmd_wp_page(): a write on it maps a fresh THP "
                 "(do_huge_zero_wp_pmd(), 1ced09e0331f, 6.13; 5.7 'goto alloc') or splits it (3917c80280c9, 5.8 .. "
                 "6.12); copy_huge_pmd() shares it with the child as it is")
SRC_PAGEOUT_REF = ("mm/vmscan.c shrink_folio_list(): a large anon folio not in the swap cache that "
                   "can_split_folio() refuses (a reference beyond its mappings and the isolation's) is kept "
                   "mapped (activate_locked), since b8f593cd0896 (4.13)")
SRC_PAGEOUT_RANGE = ("mm/madvise.c madvise_cold_or_pageout_pte_range(): MADV_PAGEOUT walks every pte of its range "
                     "and isolates each folio mapped only by this process (a large folio mapped by another process "
                     "is left: folio_maybe_mapped_shared()), then reclaim_pages() reclaims the list")
SRC_UNMAP = ("io_uring/rsrc.c: a fixed buffer keeps its pages pinned after munmap()/MADV_DONTNEED of the "
             "range; the DMA reaches pages no process maps any more")


def mremap_pinned_page():
    """A fixed buffer registered on page 0, page 0 moved to page 1 by
    mremap(): the pin follows the page (move_ptes()), so DMA through it is
    what the process then reads at page 1."""
    s = Script("mremap-pinned-page", "io_uring fixed buffer on a page that mremap() moves; fork; write",
               pages=2, source=SRC_MREMAP, tags=("trust", "io_uring"))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0)
    p.write(0)
    p.io_uring_register(0, buf="b")
    p.mremap(0, new_addr=1)
    p.io_uring_read_fixed(buf="b")
    p.read(1)
    p.write(1)
    p.io_uring_write_fixed(buf="b")
    p.fork(c)
    p.write(1)
    p.io_uring_write_fixed(buf="b")
    c.read(1)
    c.exit()
    return s.build()


def dma_after_unmap(advice: str):
    """io_uring DMA into and out of a fixed buffer whose range was unmapped:
    nobody maps the pages any more, so nothing can leak to anyone."""
    name = f"dma-after-{advice}"
    s = Script(name, f"io_uring DMA through a fixed buffer after {advice} of its range", pages=1,
               source=SRC_UNMAP, tags=("trust", "io_uring"))
    p = s.process("parent")
    p.mmap(0)
    p.write(0)
    p.io_uring_register(0, buf="b")
    if advice == "munmap":
        p.munmap(0)
    else:
        p.madvise(0, advice="dontneed")
    p.io_uring_read_fixed(buf="b")
    p.io_uring_write_fixed(buf="b")
    p.io_uring_unregister(buf="b")
    return s.build()


def dma_after_unmap_shared():
    """The negative control of dma-after-*: the parent unmaps a pinned page it
    still shares with a child (before 5.9 fork shares pinned pages): DMA
    through the pin lands in the page the child maps -- a real leak."""
    s = Script("dma-after-munmap-shared", "DMA through a pin after munmap(), the page still mapped by a child",
               pages=1, source=f"{SRC_UNMAP}; 70e806e4e645 (5.9) copies pinned pages at fork",
               tags=("trust", "io_uring"))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0)
    p.write(0)
    p.io_uring_register(0, buf="b")
    p.fork(c)
    p.munmap(0)
    p.io_uring_read_fixed(buf="b")
    c.read(0)
    c.exit()
    return s.build()


def pageout_hugetlb(nr: int):
    """MADV_PAGEOUT of a hugetlb mapping fails; the huge page stays mapped
    whole, and fork shares it as before."""
    s = Script("pageout-hugetlb", "MADV_PAGEOUT on a hugetlb mapping, then fork and write", pages=nr,
               source=SRC_PAGEOUT, tags=("trust", "hugetlb", "einval"), hpage_pmd_nr=nr)
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=nr, hugetlb=True)
    p.write(0, pages=nr)
    p.pageout(0, pages=nr)
    p.fork(c)
    c.write(0)
    p.read(0, pages=nr)
    c.read(0, pages=nr)
    p.write(1)
    c.read(1)
    c.exit()
    return s.build()


def huge_zero_page(nr: int):
    """A read of a THP-sized range nothing has faulted maps the huge zero
    page (every subpage present, read-only); fork shares it with the child,
    whose pipe takes one subpage of it; the parent's write then maps a fresh THP
    (5.7, 6.13+) or copies one 4 KiB page out of the split zero PMD (5.8 ..
    6.12).  Nothing can leak: every page reads zero or what its own process
    wrote."""
    s = Script("huge-zero-page", "read of an unfaulted THP range (the huge zero page), vmsplice, fork, write",
               pages=2 * nr, source=SRC_HUGE_ZERO, tags=("trust", "thp"), hpage_pmd_nr=nr)
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=2 * nr, thp=True)
    p.read(0)
    p.fork(c)
    c.vmsplice(1, pipe="p")
    p.write(1)
    c.pipe_read(pipe="p")
    c.read(1)
    c.read(nr - 1)
    p.read(nr - 1)
    c.write(nr - 1)
    p.read(nr - 1)
    c.exit()
    return s.build()


def thp_pageout_extra_ref(nr: int):
    """MADV_PAGEOUT of a PMD-mapped THP one of whose subpages a pipe holds
    (vmsplice, FOLL_GET): reclaim cannot split it, so it stays mapped, PMD
    and data; fork then shares it and the child's write copies."""
    s = Script("thp-pageout-extra-ref", "MADV_PAGEOUT of a THP a pipe holds a subpage of; fork; write",
               pages=nr, source=SRC_PAGEOUT_REF, tags=("trust", "thp"), hpage_pmd_nr=nr)
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=nr, thp=True)
    p.write(0, pages=nr)
    p.vmsplice(1, pipe="p")
    p.pageout(0, pages=nr)
    p.read(1)
    p.pipe_read(pipe="p")
    p.fork(c)
    c.write(1)
    p.read(1)
    c.read(0)
    c.exit()
    return s.build()


def thp_pageout_range(nr: int):
    """MADV_PAGEOUT of a whole huge page whose THP a COW split: the child
    still maps the THP by its PMD, the parent by ptes but for subpage 1, a
    4 KiB copy of its own -- the only folio of the range reclaim takes."""
    s = Script("thp-pageout-range", "MADV_PAGEOUT of a range over a shared THP and a 4 KiB page of the parent's",
               pages=nr, source=SRC_PAGEOUT_RANGE, tags=("trust", "thp", "thp-swap"), hpage_pmd_nr=nr)
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=nr, thp=True)
    p.write(0, pages=nr)
    p.fork(c)
    p.write(1)
    p.pageout(0, pages=nr)
    p.read(0, pages=nr)
    c.read(0, pages=nr)
    c.exit()
    return s.build()


def write_gup_prot_read():
    """Write GUPs (O_DIRECT read, a R/W long-term pin, io_uring register) of
    a PROT_READ mapping fail with -EFAULT; the page stays read-only."""
    s = Script("write-gup-prot-read", "O_DIRECT read, write pin and io_uring register of a PROT_READ mapping",
               pages=1, source=SRC_EFAULT, tags=("trust",))
    p = s.process("parent")
    p.mmap(0, prot="r")
    p.read(0)
    p.odirect_read(0)
    p.pin_longterm(0, write=True, pin="w")
    p.io_uring_register(0, buf="b")
    p.io_uring_write_fixed(buf="b")
    p.read(0)
    return s.build()


def read_prot_none():
    """A read of a PROT_NONE page is a SIGSEGV: the child dies there and runs
    nothing after it (its write would otherwise land in the page it shares)."""
    s = Script("read-prot-none", "the child reads a PROT_NONE page (SIGSEGV) after fork", pages=1,
               source=SRC_PROTNONE, tags=("trust", "sigsegv"))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0)
    p.write(0)
    p.fork(c)
    c.mprotect(0, prot="none")
    c.read(0)
    c.mprotect(0, prot="rw")
    c.write(0)
    p.read(0)
    return s.build()


SRC_FORK_DMA = ("kernel/fork.c dup_mmap() -> copy_pte_range(): each page is copied or shared when fork reaches "
                "it, under the parent's PT lock; a7e689dd1c06 (6.5) O_DIRECT takes FOLL_PIN, so fork copies the "
                "pinned page for the child (70e806e4e645) and the DMA stays the parent's")


def race_fork_dma():
    """An O_DIRECT read on another CPU of the parent DMAs into the page while
    fork runs: where fork copied the page before the DMA landed, the child
    keeps the old data (the kernel copies each page when fork reaches it)."""
    s = Script("race-fork-odirect", "O_DIRECT read DMA landing while fork() copies the address space", pages=1,
               source=SRC_FORK_DMA, tags=("race", "trust"))
    p, c = s.process("parent"), s.process("child")
    s.cpu("parent", "parent.cpu1")
    p.mmap(0)
    p.write(0)
    p.lru_add_drain()
    s.parallel({"parent": [("fork", {"child": "child"})],
                "parent.cpu1": [("odirect_read", {"addr": 0})]})
    c.read(0)
    c.exit()
    return s.build()


def cases(nr: int = HPAGE_PMD_NR):
    return [mremap_pinned_page(), dma_after_unmap("munmap"), dma_after_unmap("dontneed"), dma_after_unmap_shared(),
            pageout_hugetlb(nr), write_gup_prot_read(), read_prot_none(), race_fork_dma(), huge_zero_page(nr),
            thp_pageout_extra_ref(nr), thp_pageout_range(nr)]
