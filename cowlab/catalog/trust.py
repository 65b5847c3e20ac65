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


SRC_MAP_FIXED = ("mm/mmap.c mmap_region(): MAP_FIXED unmaps whatever the range maps first (do_munmap() 5.7 .. 6.0, "
                 "do_mas_munmap() 6.1, do_vmi_munmap() 6.2 .. 6.11, vms_gather_munmap_vmas()/"
                 "vms_complete_munmap_vmas() 6.12+)")
SRC_MREMAP_FIXED = ("mm/mremap.c mremap_to(): MREMAP_FIXED does do_munmap() of the destination before move_vma() "
                    "(\"munmap dst first\", 5.7 .. 6.18)")
SRC_MREMAP_KSM = ("mm/mremap.c move_vma() (prep_move_vma() 6.15+): ksm_madvise(MADV_UNMERGEABLE) of the moved range "
                  "breaks its KSM pages (1ff829957316 \"ksm: prevent mremap move poisoning\", 2.6.32; break_ksm() "
                  "faults with FAULT_FLAG_WRITE, FAULT_FLAG_UNSHARE from 6cce3314b928, 6.1)")
SRC_MREMAP_SWAP = ("mm/mremap.c move_ptes() moves swap entries as they are; fs/splice.c: the pipe buffer holds the "
                   "page, which MADV_PAGEOUT leaves in the swap cache (mm/vmscan.c shrink_folio_list(): the pipe's "
                   "reference keeps it from being freed)")


def mmap_fixed_over_shared():
    """mmap(MAP_FIXED) over a page the parent shares with its child: the
    parent's old page is unmapped first (the child keeps it alone), so the
    parent then reads zero and its write faults in a fresh page -- no copy."""
    s = Script("mmap-fixed-over-shared", "mmap(MAP_FIXED) over a page shared with a child, then read and write it",
               pages=1, source=SRC_MAP_FIXED, tags=("trust",))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0)
    p.write(0)
    p.fork(c)
    p.mmap(0)
    p.read(0)
    p.write(0)
    c.read(0)
    p.read(0)
    c.exit()
    return s.build()


def mremap_fixed_onto_shared():
    """mremap(MREMAP_FIXED) of page 0 onto page 1, which the parent shares
    with its child: the parent's page 1 is unmapped first (the child keeps
    it), then page 0's page moves there; the parent's write to it copies (the
    child maps it at page 0)."""
    s = Script("mremap-fixed-onto-shared", "mremap() onto a mapped page shared with a child; then write it",
               pages=2, source=SRC_MREMAP_FIXED, tags=("trust",))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=2)
    p.write(0)
    p.write(1)
    p.fork(c)
    p.mremap(0, new_addr=1)
    p.read(1)
    c.read(0, pages=2)
    p.write(1)
    c.read(0, pages=2)
    p.read(1)
    c.exit()
    return s.build()


def mremap_ksm_unmerge():
    """mremap() of one of two merged pages: move_vma() unmerges it first, so
    the moved page is a private copy and the KSM page stays mapped once."""
    s = Script("mremap-ksm-unmerge", "mremap() of a KSM page: move_vma() breaks it before the move", pages=3,
               source=SRC_MREMAP_KSM, tags=("trust", "ksm"))
    p = s.process("parent")
    p.mmap(0, pages=2)
    p.write(0, value="same")
    p.write(1, value="same")
    p.madvise(0, pages=2, advice="mergeable")
    p.ksm_merge(0, of="parent", other_addr=1)
    p.mremap(0, new_addr=2)
    p.read(1, pages=2)
    p.write(2)
    p.read(1, pages=2)
    return s.build()


def dma_after_munmap_mremap():
    """A fixed buffer on page 0, page 0 unmapped, page 1 moved onto page 0 by
    mremap(): WRITE_FIXED sends the old page the buffer holds (what the
    process had at page 0 before the munmap), not what page 0 maps now."""
    s = Script("dma-after-munmap-mremap", "WRITE_FIXED after munmap() of the buffer and mremap() onto its address",
               pages=2, source=f"{SRC_UNMAP}; {SRC_MREMAP_FIXED}", tags=("trust", "io_uring"))
    p = s.process("parent")
    p.mmap(0, pages=2)
    p.write(0, pages=2)
    p.io_uring_register(0, buf="b")
    p.munmap(0)
    p.mremap(1, new_addr=0)
    p.io_uring_write_fixed(buf="b")
    p.read(0)
    p.io_uring_unregister(buf="b")
    return s.build()


def mremap_vmsplice_swapped():
    """vmsplice() of a page, MADV_PAGEOUT (the pipe's reference keeps it in
    the swap cache), mremap() of its swap entry: the pipe still holds the
    page and returns what the process wrote there."""
    s = Script("mremap-vmsplice-swapped", "vmsplice, MADV_PAGEOUT, mremap of the swap entry, then read the pipe",
               pages=2, source=f"{SRC_MREMAP_SWAP}; {SRC_MREMAP}", tags=("trust", "swap"))
    p = s.process("parent")
    p.mmap(0)
    p.write(0)
    p.vmsplice(0, pipe="p")
    p.pageout(0)
    p.mremap(0, new_addr=1)
    p.pipe_read(pipe="p")
    p.read(1)
    return s.build()


SRC_BUF_ORDER = ("io_uring/rsrc.c io_sqe_buffer_register(): the fixed buffer is an array of the pinned pages in the "
                 "order of the range; fs/splice.c iter_to_pipe(): one pipe buffer per page, in order; mm/mremap.c "
                 "moves the mappings, not the buffers")


def mremap_buffer_order():
    """A fixed buffer and a pipe over pages 0-2; mremap() moves page 0 past
    page 2: WRITE_FIXED and the pipe read still give the pages in the order
    they were taken, not in the order of their new addresses."""
    s = Script("mremap-buffer-order", "mremap() of the first page of a fixed buffer and a vmsplice past the last",
               pages=4, source=SRC_BUF_ORDER, tags=("trust", "io_uring"))
    p = s.process("parent")
    p.mmap(0, pages=4)
    p.write(0, pages=3)
    p.io_uring_register(0, pages=3, buf="b")
    p.vmsplice(0, pages=3, pipe="p")
    p.mremap(0, new_addr=3)
    p.io_uring_write_fixed(buf="b")
    p.pipe_read(pipe="p")
    p.read(1, pages=3)
    p.io_uring_unregister(buf="b")
    return s.build()


def mremap_pinned_onto_buffer():
    """A fixed buffer over pages 0 and 1; mremap() moves page 0 onto page 1
    (unmapping the buffer's second page there): the buffer's first page is
    what the process maps at page 1 now, and must stay so over fork and a
    write (5.7/5.8 share it at fork and the write copies it away from the pin)."""
    s = Script("mremap-pinned-onto-buffer", "mremap() of a fixed buffer's page onto its next page; fork; write",
               pages=2, source=f"{SRC_MREMAP_FIXED}; {SRC_MREMAP}", tags=("trust", "io_uring"))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=2)
    p.write(0, pages=2)
    p.io_uring_register(0, pages=2, buf="b")
    p.mremap(0, new_addr=1)
    p.io_uring_read_fixed(buf="b")
    p.read(1)
    p.fork(c)
    p.write(1)
    p.io_uring_write_fixed(buf="b")
    c.read(1)
    c.exit()
    return s.build()


def cases(nr: int = HPAGE_PMD_NR):
    return [mremap_pinned_page(), dma_after_unmap("munmap"), dma_after_unmap("dontneed"), dma_after_unmap_shared(),
            pageout_hugetlb(nr), write_gup_prot_read(), read_prot_none(), race_fork_dma(), mmap_fixed_over_shared(),
            mremap_fixed_onto_shared(), mremap_ksm_unmerge(), dma_after_munmap_mremap(), mremap_vmsplice_swapped(),
            mremap_buffer_order(), mremap_pinned_onto_buffer()]
