"""kernel/fork.c dup_mmap() and mm/memory.c copy_page_range() /
copy_present_pte() / copy_nonpresent_pte().

Steps: ``fork.lock`` takes the parent's mmap_lock for write, copies the
vmas (except VM_DONTCOPY ones) and, 5.11+ (57efa1fe5957), opens
``write_protect_seq``; then, for each vma that vma_needs_copy() (one with an
anon_vma: a vma only read-faulted maps nothing but the zero page, and its
ptes are left for the child to fault in again), per pte, under the parent's PT lock (held
across the copy, as copy_pte_range() holds it), ``fork.pte`` decides
(the design's ``copy_present_anon``: share, or an early copy for the child
when the page may be DMA-pinned, 5.9+ 70e806e4e645 / 5.19 page_try_dup_anon_rmap)
and ``fork.wrprotect`` write-protects the parent's pte and installs the
child's.  gup-fast, which takes no lock, can run between those two steps,
as in the kernel.  ``fork.end`` closes the sequence and starts the child.
"""
from __future__ import annotations

from .effects import Copy, CopyPte, DupMmap, Fork
from typing import NamedTuple, Optional

from .paths import step, op, Goto, InFlight, NOTHING_IN_FLIGHT
from .txn import ModelBug
from .types import (Pte, PTE_SWAP, PTE_MIGRATION, VM_DONTCOPY, VM_SHARED, VM_MAYWRITE, VM_WRITE,
                    VM_HUGETLB, ZERO_PFN, SWP_MIGRATION_READ)
from .decisions import SHARE, COPY
from .mm import rmap, swap as lru, swapfile, huge_memory


def is_cow_mapping(flags: int) -> bool:
    """is_cow_mapping(): private and may be written."""
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


class ForkFrame(NamedTuple):
    """copy_page_range()'s locals: the child mm, the next address to copy,
    whether the parent's PT lock is held, and -- between the two halves of
    copy_present_pte() -- the parent's pte being shared (``share``)."""
    child: int
    addr: int = 0
    ptl: bool = False
    share: Optional[Pte] = None

    def in_flight(self, s, mm, args, hpage_pmd_nr) -> InFlight:
        """A share between its two halves: the page's mapcount is dup'ed and
        the child's pte is about to map it, with the data the parent has
        there when fork write-protects the parent's pte (``copies``)."""
        p = self.share
        if p is None:
            return NOTHING_IN_FLIGHT
        return InFlight(maps=((self.child, self.addr, p.pfn, p.idx),), shares=((p.pfn, p.idx),),
                        copies=((mm, self.child, self.addr),))


@step("fork.lock")
def dup_mmap_begin(k, fr, op):
    """dup_mmap(): mmap_write_lock(oldmm); copy the vmas; 5.11+
    raw_write_seqcount_begin(&src_mm->write_protect_seq)."""
    k.mmap_write_lock()
    child = op["child_mm"]
    parent = k.mmv()
    # anon_vma_fork(): the child's copy of a vma with an anon_vma gets one of its own, chained to the parent's
    vmas = tuple(v._replace(fork_child=v.anon_vma) for v in parent.vmas if not v.flags & VM_DONTCOPY)
    n = len(parent.ptes)
    k.set_mm(child, alive=True, flags=0, vmas=vmas, ptes=(None,) * n, pmds=(None,) * len(parent.pmds),
             mmap_lock=-1)
    if k.design.write_protect_seq:
        k.set_mm(k.mm, write_protect_seq=parent.write_protect_seq + 1)
    k.effect(DupMmap(k.mm, child))
    return Goto("fork.pte", ForkFrame(child))


def vma_needs_copy(vma) -> bool:
    """copy_page_range()'s "don't copy ptes where a page fault will fill them
    correctly": 5.7 .. 5.18 an inline test in copy_page_range(), from 5.19
    vma_needs_copy() ("mm/shmem: handle uffd-wp during fork()").  A private
    anonymous vma is copied only if it has an anon_vma; VM_HUGETLB forced the
    copy until 6.0 ("hugetlb: lazy page table copies in fork()"), which changes nothing here:
    a private hugetlb vma with a page mapped has an anon_vma
    (hugetlb_no_page()).  The other reasons to copy -- VM_PFNMAP/VM_MIXEDMAP,
    userfaultfd_wp() of the child's vma (5.19+), VM_MAYBE_GUARD guard regions
    (VM_COPY_ON_FORK, after 6.18) -- have no counterpart in the model."""
    return vma.anon_vma or bool(vma.flags & VM_HUGETLB)


def _copied(k, addr) -> bool:
    v = k.find_vma(addr)
    return v is not None and not v.flags & VM_DONTCOPY and vma_needs_copy(v)


@step("fork.pte")
def copy_present_pte(k, fr, op):
    """copy_pte_range() -> copy_present_pte() / copy_nonpresent_pte() for
    the next populated pte (PT lock of the parent taken at the first one).

    A PTE-mapped large folio (a split THP, an mTHP) is copied pte by pte.
    From 6.9 ("mm/memory: optimize fork() with PTE-mapped THP", series
    20240129124649.189745-1-david@redhat.com)
    copy_present_ptes() batches the ptes of one folio (folio_pte_batch())
    and shares them at once with folio_try_dup_anon_rmap_ptes(); that fails
    (-EBUSY) when any of them is PageAnonExclusive and the folio may be
    pinned (folio_needs_cow_for_dma(): MMF_HAS_PINNED and the folio's
    _pincount), and copy_pte_range() retries one pte at a time (-EAGAIN,
    max_nr = 1), where folio_try_dup_anon_rmap_pte() copies each exclusive
    subpage for the child (copy_present_page()) and shares the others.  The
    batch thus ends where the per-pte copy ends -- the same mapcounts,
    references, PageAnonExclusive bits and copies -- which the design's
    per-pte ``copy_present_anon`` gives; only its atomicity differs (gup-fast
    may run between two ptes of a batch here; against a FOLL_PIN gup-fast
    write_protect_seq covers the whole fork, 5.11+)."""
    child = fr.child
    if not fr.ptl:
        k.pte_lock()
        fr = fr._replace(ptl=True)
    n = len(k.mmv().ptes)
    addr = fr.addr
    while addr < n:
        vma = k.find_vma(addr)
        if vma is not None and not vma.flags & VM_DONTCOPY and vma_needs_copy(vma):
            if vma.flags & VM_HUGETLB or k.pmd(addr // k.HPAGE_PMD_NR) is not None:
                if addr % k.HPAGE_PMD_NR == 0:
                    nxt = huge_memory.copy_huge(k, fr, vma, addr, child)
                    if nxt is not None:
                        return nxt
                addr += 1
                continue
            if k.pte(addr) is not None:
                break
        addr += 1
    fr = fr._replace(addr=addr)
    if addr >= n:
        return Goto("fork.end", fr)
    pte = k.pte(addr)
    if pte.kind == PTE_SWAP:
        swapfile.swap_duplicate(k, pte.pfn)
        if k.design.copy_swap_pte_clear_exclusive() and pte.excl:
            k.set_pte_at(addr, pte._replace(excl=0))
        k.set_pte_at(addr, pte._replace(excl=0), child)
        k.effect(CopyPte(k.mm, child, addr))
        return Goto("fork.pte", fr._replace(addr=addr + 1))
    if pte.kind == PTE_MIGRATION:
        # writable / readable-exclusive migration entries become readable in both
        k.set_pte_at(addr, pte._replace(excl=SWP_MIGRATION_READ))
        k.set_pte_at(addr, pte._replace(excl=SWP_MIGRATION_READ), child)
        k.effect(CopyPte(k.mm, child, addr))
        return Goto("fork.pte", fr._replace(addr=addr + 1))
    page = None if pte.pfn == ZERO_PFN else pte.pfn
    if page is None:
        k.set_pte_at(addr, pte, child)
        k.effect(CopyPte(k.mm, child, addr))
        return Goto("fork.pte", fr._replace(addr=addr + 1))
    d = k.design.copy_present_anon(k, k.mm, addr, page, pte.idx)
    if d == COPY:
        copy_present_page(k, addr, pte, child)
        return Goto("fork.pte", fr._replace(addr=addr + 1))
    if d != SHARE:
        raise ModelBug(f"design answered {d!r} in copy_present_pte")
    k.get_page(page)      # the child's mapping reference (the design dup'ed the rmap)
    return Goto("fork.wrprotect", fr._replace(share=pte))


def copy_present_page(k, addr, pte, child) -> None:
    """copy_present_page(): the page may be DMA-pinned, so the child gets its
    own copy right away (mapped writable if the vma is, maybe_mkwrite());
    the parent's pte is left alone."""
    vma = k.find_vma(addr, child)
    new = k.alloc_folio(data=(k.folio(pte.pfn).data[pte.idx],))
    rmap.page_add_new_anon_rmap(k, new, 0, exclusive=True)
    lru.lru_cache_add(k, new)
    k.ref_to_mapping(new)
    w = bool(vma.flags & VM_WRITE)
    k.set_pte_at(addr, k.mk_pte(new, 0, write=w, dirty=w, soft_dirty=pte.soft_dirty), child)
    k.effect(CopyPte(k.mm, child, addr))
    k.effect(Copy("fork", child, addr, pte.pfn, pte.idx, new, 0))


@step("fork.wrprotect")
def copy_present_pte_wrprotect(k, fr, op):
    """copy_present_pte(), second half: ptep_set_wrprotect() of the parent's
    pte in a COW mapping, and set_pte_at() of the child's R/O, old pte."""
    child = fr.child
    addr = fr.addr
    pte = k.pte(addr)
    vma = k.find_vma(addr)
    if is_cow_mapping(vma.flags) and pte.write:
        pte = pte._replace(write=False)
        k.set_pte_at(addr, pte)
    k.ref_to_mapping(pte.pfn)
    k.set_pte_at(addr, pte, child)
    k.effect(CopyPte(k.mm, child, addr))
    return Goto("fork.pte", fr._replace(addr=addr + 1, share=None))


@step("fork.end")
def dup_mmap_end(k, fr, op):
    """copy_page_range() end: drop the PT lock, raw_write_seqcount_end(),
    mmap_write_unlock(); the child runs."""
    if fr.ptl:
        k.pte_unlock()
    if k.design.write_protect_seq:
        k.set_mm(k.mm, write_protect_seq=k.mmv().write_protect_seq + 1)
    child = fr.child
    k.set_mm(child, mmap_lock=0)
    k.mmap_write_unlock()
    k.effect(Fork(k.mm, child))
    return None


op("fork", "fork.lock", "fork() -> dup_mmap() -> copy_page_range()", ("child",),
   "fork a child process that inherits the mappings")
