"""mm/memory.c: page faults on private anonymous memory and zapping.

Paths (each a sequence of atomic steps at the kernel's lock boundaries):

* ``handle_mm_fault`` -> ``handle_pte_fault`` under the PT lock, dispatching to
  ``do_anonymous_page`` (pte none; a large folio of an enabled mTHP size from
  6.8, ``alloc_anon_folio``), ``do_wp_page`` (present, R/O, write or
  FAULT_FLAG_UNSHARE) or ``do_swap_page`` (swap pte);
* ``do_wp_page`` asks the design (``wp_anon``) whether to reuse; a copy
  drops the PT lock, allocates and copies (``wp_page_copy``), retakes the
  PT lock and installs the copy if the pte is unchanged;
* ``do_swap_page``: swap-cache lookup or read without the PT lock, then
  ``lock_page`` (may sleep), then the PT lock, ``pte_same`` re-check and
  the design's exclusivity decision;
* ``zap_pte_range`` for munmap / MADV_DONTNEED / exit.

A fault is entered with ``enter_fault`` (a call: its locals are a
``FaultFrame``, mm/internal.h's ``struct vm_fault``) and returns 0 or
VM_FAULT_SIGSEGV to its caller.
Versions: 5.7 .. 6.18; what differs between them is asked of the design.
"""
from __future__ import annotations

from ..effects import Copy, Load, Reuse, Segv, Store, Swapin, Unmap
from typing import NamedTuple

from ..paths import step, op, Goto
from ..txn import Blocked, ModelBug
from ..types import (PTE_PRESENT, PTE_SWAP, PTE_MIGRATION, VM_READ, VM_WRITE, VM_HUGETLB, VM_HUGEPAGE, ZERO,
                     ZERO_PFN, PG_anon, PG_dirty, VM_NOHUGEPAGE)
from ..decisions import Vmf, REUSE, COPY, LOCK_PAGE, READ_MORE
from . import rmap, swap as lru, swapfile, huge_memory, hugetlb
from .internal import (FaultFrame, SwapMapped, VM_FAULT_SIGSEGV, enter_fault, fault_done, vm_normal_page,
                       lookup)

__all__ = ["enter_fault", "fault_done", "vm_normal_page", "lookup", "zap_pte", "store"]


@step("fault.lock_mm")
def lock_mm_and_find_vma(k, fr: FaultFrame, op):
    """do_user_addr_fault(): mmap_read_lock, find_vma and access_error()
    (a write needs VM_WRITE; a read an accessible vma, vma_is_accessible())."""
    k.mmap_read_lock()
    vma = k.find_vma(fr.address)
    if vma is None or (fr.write and not vma.flags & VM_WRITE) or not vma.flags & (VM_READ | VM_WRITE):
        k.effect(Segv(k.mm, fr.address))
        return fault_done(k, fr, VM_FAULT_SIGSEGV)
    return Goto("fault.handle", fr)


@step("fault.handle")
def handle_pte_fault(k, fr: FaultFrame, op):
    """handle_mm_fault() -> handle_pte_fault() with the PT lock taken."""
    addr = fr.address
    vma = k.find_vma(addr)
    if vma is None:
        k.effect(Segv(k.mm, addr))
        return fault_done(k, fr, VM_FAULT_SIGSEGV)
    if vma.flags & VM_HUGETLB:
        return hugetlb.hugetlb_fault(k, fr, vma)
    hidx = addr // k.HPAGE_PMD_NR
    if k.pmd(hidx) is not None:
        return huge_memory.huge_pmd_fault(k, fr, vma)
    k.pte_lock()
    pte = k.pte(addr)
    if pte is None:
        if huge_memory_wants_thp(k, vma, addr) and k.HPAGE_PMD_NR in k.THP_SIZES:
            # __handle_mm_fault(): pmd_none() and thp_vma_allowable_order() -> create_huge_pmd() (a read
            # fault too: the huge zero page)
            k.pte_unlock()
            return huge_memory.do_huge_pmd_anonymous_page(k, fr, vma)
        return do_anonymous_page(k, fr, vma)
    if pte.kind == PTE_SWAP:
        k.pte_unlock()
        return Goto("swap.lookup", fr._replace(orig_pte=pte))
    if pte.kind == PTE_MIGRATION:
        k.pte_unlock()
        return Goto("fault.migration_wait", fr)
    if (fr.write or fr.unshare) and not pte.write:
        return do_wp_page(k, fr, vma)
    # spurious fault (already writable / readable): nothing to do
    k.pte_unlock()
    return fault_done(k, fr)


def huge_memory_wants_thp(k, vma, addr) -> bool:
    """thp_vma_allowable_order() / transhuge_vma_suitable(): VM_HUGEPAGE and
    an aligned, empty PMD range inside the vma (the caller also asks that the
    PMD size be enabled: ``k.HPAGE_PMD_NR in k.THP_SIZES``, the case setting
    ``thp_sizes``; hugepages-2048kB/enabled = never leaves the fault to the
    pte level)."""
    if not vma.flags & VM_HUGEPAGE:
        return False
    base = addr - addr % k.HPAGE_PMD_NR
    return vma.start <= base and base + k.HPAGE_PMD_NR <= vma.end and all(
        k.pte(a) is None for a in range(base, base + k.HPAGE_PMD_NR))


@step("fault.migration_wait")
def migration_entry_wait(k, fr: FaultFrame, op):
    """migration_entry_wait(): sleep until the migration entry is replaced."""
    pte = k.pte(fr.address)
    if k.is_migration(pte):
        raise Blocked("migration entry")
    return Goto("fault.handle", fr)


def do_anonymous_page(k, fr: FaultFrame, vma):
    """do_anonymous_page() (PT lock held; the model allocates under it): read
    faults map the shared zero page R/O (a 4 KiB one: never a large folio);
    write faults map a fresh zeroed anon folio writable, exclusive (5.19+).
    A small folio is queued in the local lru_add batch.  From 6.8
    (19eaf44954df "mm: thp: support allocation of anonymous multi-size THP",
    the design's ``anon_mthp``) the folio may be large: ``alloc_anon_folio()``
    picks its size, and all its ptes are mapped at once (set_ptes()).
    Only the write fault prepares the vma's anon_vma (anon_vma_prepare();
    vmf_anon_prepare() 6.8+): a vma only ever read has none."""
    addr = fr.address
    if not fr.write:
        k.set_pte_at(addr, k.mk_pte(ZERO_PFN, 0, write=False))
        k.pte_unlock()
        return fault_done(k, fr)
    rmap.anon_vma_prepare(k, addr)
    nr = alloc_anon_folio(k, vma, addr)
    if nr > 1:
        map_anon_folio_ptes(k, vma, addr - addr % nr, nr)
        k.pte_unlock()
        return fault_done(k, fr)
    pfn = k.alloc_folio()
    rmap.page_add_new_anon_rmap(k, pfn, 0, exclusive=True)
    lru.lru_cache_add(k, pfn)
    k.ref_to_mapping(pfn)
    k.set_pte_at(addr, k.mk_pte(pfn, 0, write=bool(vma.flags & VM_WRITE), dirty=True))
    k.pte_unlock()
    return fault_done(k, fr)


def thp_vma_allowable_orders(k, vma) -> tuple:
    """thp_vma_allowable_orders(vma, ..., TVA_IN_PF | TVA_ENFORCE_SYSFS,
    BIT(PMD_ORDER) - 1) as alloc_anon_folio() calls it (6.8+): the enabled
    sizes below the PMD size (the case's ``thp_sizes``, the model's
    hugepages-<kB>kB/enabled = madvise), in a VM_HUGEPAGE vma without
    VM_NOHUGEPAGE; none for a design without anonymous mTHP (before 6.8).
    Sizes in pages, largest first (highest_order() / next_order())."""
    if not k.design.anon_mthp or not vma.flags & VM_HUGEPAGE or vma.flags & VM_NOHUGEPAGE:
        return ()
    return tuple(sorted((n for n in k.THP_SIZES if 1 < n < k.HPAGE_PMD_NR), reverse=True))


def alloc_anon_folio(k, vma, addr) -> int:
    """alloc_anon_folio() (mm/memory.c, 6.8+, 19eaf44954df): the size in
    pages of the folio a write fault at ``addr`` allocates.  Of the allowable
    orders (thp_vma_allowable_orders()) those whose naturally aligned range
    lies inside the vma (thp_vma_suitable_orders()); of these the highest
    whose every pte is none (pte_range_none(): a zero-page pte is not none);
    else 1 (the "fallback" to an order-0 folio).  The kernel checks the ptes
    without the PT lock and checks again under it (``!pte_range_none()`` ->
    release the folio and retry the fault); the model decides under the PT
    lock in one step, which leaves nothing to re-check.  Allocation never
    fails in the model (no fallback for want of memory or memcg charge)."""
    for nr in thp_vma_allowable_orders(k, vma):
        base = addr - addr % nr
        if vma.start <= base and base + nr <= vma.end and all(k.pte(a) is None for a in range(base, base + nr)):
            return nr
    return 1


def map_anon_folio_ptes(k, vma, base: int, nr: int) -> None:
    """do_anonymous_page()'s large-folio path (6.8+, 19eaf44954df; the same
    in 6.9 .. 6.18): a fresh zeroed folio of ``nr`` pages (PG_large),
    folio_ref_add(folio, nr_pages - 1) (one reference per pte),
    folio_add_new_anon_rmap(..., RMAP_EXCLUSIVE) (every subpage mapped once
    and PageAnonExclusive where the design has it; _nr_pages_mapped = nr,
    which the model's per-subpage mapcounts say), folio_add_lru_vma() (a
    large folio is not left in the per-CPU batch: folio_batch_add_and_move()
    moves the whole local batch to the LRU at once, !folio_test_large()),
    then set_ptes() of all ``nr`` ptes from ``base``, writable and dirty
    where the vma is writable (pte_mkwrite(pte_mkdirty()))."""
    pfn = k.alloc_folio(nr=nr)
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(flags=f.flags | PG_anon, mapcount=(1,) * nr, refcount=f.refcount + nr - 1)
    if k.design.anon_exclusive:
        k.folios[pfn] = k.folio(pfn)._replace(anon_exclusive=(True,) * nr)
    lru.folio_add_lru_large(k, pfn)
    k.ref_to_mapping(pfn)
    w = bool(vma.flags & VM_WRITE)
    for i in range(nr):
        k.set_pte_at(base + i, k.mk_pte(pfn, i, write=w, dirty=w))


# --------------------------------------------------------------------------- do_wp_page
def do_wp_page(k, fr: FaultFrame, vma):
    """do_wp_page() (PT lock held): write fault or FAULT_FLAG_UNSHARE on a
    present pte that is not writable."""
    addr = fr.address
    pte = k.pte(addr)
    unshare = fr.unshare and not fr.write
    page = vm_normal_page(pte)
    if page is None:
        # the shared zero page: a write always copies; an unshare only from 6.2
        if unshare and not k.design.unshare_non_anon:
            k.pte_unlock()
            return fault_done(k, fr)
        k.get_page(ZERO_PFN)
        k.pte_unlock()
        return Goto("wp.copy", fr._replace(page=ZERO_PFN))
    if not k.PageAnon(page):
        raise ModelBug("non-anonymous page in a private anonymous mapping")
    vmf = Vmf(k.mm, addr, page, pte.idx, write=not unshare, unshare=unshare, locked=fr.locked, snap=fr.snap)
    d = k.design.wp_anon(k, vmf)
    if isinstance(d, tuple) and d[0] == READ_MORE:
        # the design read part of what it needs; it reads the rest in the next atomic step
        return Goto("wp.decide", fr._replace(snap=d[1]))
    return _wp_decided(k, fr._replace(locked=False, snap=None), d, page, pte)


@step("wp.decide")
def do_wp_page_continue(k, fr: FaultFrame, op):
    """do_wp_page(), PT lock still held: the design's decision continues
    with its next read (separate loads of separate counters are separate
    atomic steps for any other CPU)."""
    vma = k.find_vma(fr.address)
    return do_wp_page(k, fr, vma)


def _wp_decided(k, fr: FaultFrame, d, page, pte):
    addr = fr.address
    unshare = fr.unshare and not fr.write
    if d == REUSE:
        k.effect(Reuse(k.mm, addr, page, pte.idx, "unshare" if unshare else "write"))
        if not unshare:
            wp_page_reuse(k, addr, pte)
        k.pte_unlock()
        return fault_done(k, fr)
    if d == LOCK_PAGE:
        k.get_page(page)
        k.pte_unlock()
        return Goto("wp.lock_page", fr._replace(page=page))
    if d == COPY:
        k.get_page(page)
        k.pte_unlock()
        return Goto("wp.copy", fr._replace(page=page))
    raise ModelBug(f"design answered {d!r} in do_wp_page")


def wp_page_reuse(k, addr, pte) -> None:
    """wp_page_reuse(): make the pte writable and dirty, keep the page."""
    k.set_pte_at(addr, pte._replace(write=True, dirty=True, soft_dirty=True))


@step("wp.lock_page")
def wp_lock_page(k, fr: FaultFrame, op):
    """do_wp_page() before 5.9: trylock_page() failed -> get_page(),
    pte_unmap_unlock(), lock_page() (sleeps)."""
    k.lock_page(fr.page)
    return Goto("wp.relock", fr)


@step("wp.relock")
def wp_relock(k, fr: FaultFrame, op):
    """... then re-take the PT lock; if the pte changed, unlock, put, retry;
    else put_page() and decide again with the page locked."""
    page = fr.page
    fr = fr._replace(page=None)
    k.pte_lock()
    pte = k.pte(fr.address)
    k.drop_ref(k.my_tmp_ref(page))
    if not (k.is_present(pte) and pte.pfn == page and not pte.write):
        if k.folios[page] is not None:
            k.unlock_page(page)
        k.pte_unlock()
        return fault_done(k, fr)
    vma = k.find_vma(fr.address)
    return do_wp_page(k, fr._replace(locked=True), vma)


@step("wp.copy")
def wp_page_copy_alloc(k, fr: FaultFrame, op):
    """wp_page_copy(), first half, no PT lock: allocate the new page and copy
    the old one's data into it (cow_user_page()); first of all the vma's
    anon_vma is prepared (anon_vma_prepare(), vmf_anon_prepare() 6.8+), also
    when the old page is the zero page and when the copy is dropped later."""
    rmap.anon_vma_prepare(k, fr.address)
    old = fr.page
    pte = k.pte(fr.address)
    idx = pte.idx if k.is_present(pte) and pte.pfn == old else 0
    data = ZERO if old == ZERO_PFN else k.folio(old).data[idx]
    return Goto("wp.copy_commit", fr._replace(cow_page=k.alloc_folio(data=(data,)), idx=idx))


@step("wp.copy_commit")
def wp_page_copy_commit(k, fr: FaultFrame, op):
    """wp_page_copy(), second half: take the PT lock; if the pte still maps
    the old page, replace it with the copy (writable+dirty on a write fault,
    R/O on FAULT_FLAG_UNSHARE), remove the old page's rmap and drop its
    references; otherwise free the copy and retry."""
    old, new, idx = fr.page, fr.cow_page, fr.idx
    fr = fr._replace(page=None, cow_page=None, idx=0)
    addr = fr.address
    k.pte_lock()
    pte = k.pte(addr)
    unshare = fr.unshare and not fr.write
    k.drop_ref(k.my_tmp_ref(old))
    if not (k.is_present(pte) and pte.pfn == old and pte.idx == idx and not pte.write):
        k.drop_ref(k.my_tmp_ref(new))   # free the unused copy
        k.pte_unlock()
        return fault_done(k, fr)
    rmap.page_add_new_anon_rmap(k, new, 0, exclusive=True)
    lru.lru_cache_add(k, new)
    k.ref_to_mapping(new)
    vma = k.find_vma(addr)
    write = not unshare
    k.set_pte_at(addr, k.mk_pte(new, 0, write=write and bool(vma.flags & VM_WRITE), dirty=write))
    k.effect(Copy("unshare" if unshare else "wp_page_copy", k.mm, addr, old, idx, new, 0))
    if old != ZERO_PFN:
        rmap.page_remove_rmap(k, old, idx)
        k.put_page(old)                       # the old pte's reference
        if k.design.frees_swapcache_after_cow:
            swapfile.free_swap_cache(k, old)
    k.pte_unlock()
    return fault_done(k, fr)


# --------------------------------------------------------------------------- do_swap_page
@step("swap.lookup")
def do_swap_page_lookup(k, fr: FaultFrame, op):
    """do_swap_page(), no PT lock: swap_cache_get_folio() or
    swapin_readahead() -> __read_swap_cache_async(): a new page is added to
    the swap cache, read from the device and queued for the LRU."""
    orig = fr.orig_pte
    slot = orig.pfn
    s = k.swap[slot] if slot < len(k.swap) else None
    if s is None or k.pte(fr.address) != orig:
        return fault_done(k, fr._replace(orig_pte=None))     # raced: the pte changed, retry the fault
    pfn = s.cache
    if pfn == swapfile.SWAPCACHE_PREPARED:
        # swapcache_prepare() failed (-EEXIST): wait and retry, as the kernel's schedule_timeout loop does
        raise Blocked("swapcache_prepare(): another swap-in of this entry is under way")
    if pfn >= 0:
        k.get_page(pfn)
    elif k.SWP_SYNCHRONOUS_IO and s.count == 1:
        return do_swap_page_skip_swapcache(k, fr, slot, s)
    else:
        pfn = k.alloc_folio(data=(s.data,))
        swapfile.add_to_swap_cache(k, pfn, slot)
        lru.lru_cache_add(k, pfn)
    return Goto("swap.lock", fr._replace(page=pfn))


def do_swap_page_skip_swapcache(k, fr: FaultFrame, slot: int, s):
    """do_swap_page() on a SWP_SYNCHRONOUS_IO device (zram, the model's
    default swap device: ``k.SWP_SYNCHRONOUS_IO``) when ``__swap_count(entry) == 1``
    (0bcac06f27d7, 4.15; every version 5.7 .. 6.18): "skip swapcache" -- a
    fresh folio, locked, on the lru_add batch (folio_add_lru()), read from
    the device synchronously and never added to the swap cache; the decision
    (do_swap_page_map) then gets ``fresh`` (folio != swapcache: "certainly exclusive" from
    c145e0b47c77, 5.18).  swapcache_prepare() (13ddaf26be32, 6.8) sets
    SWAP_HAS_CACHE without a folio so a parallel swap-in of the entry waits
    and retries; the model keeps that guard for every version (before 6.8 a
    parallel swap-in could map stale data after the slot was reused, a race
    this model does not show).

    From 6.12 (242d12c98174, the design's ``swapin_large_sync_io``)
    alloc_swap_folio() may give a large folio (``alloc_swap_folio_nr``): its
    entries are read into one folio that goes to the LRU at once (a large
    folio is never held in the lru_add batch), and swapcache_prepare(entry,
    nr) marks all of them.  Only the faulting entry's swap count is tested;
    the fresh folio is a copy of the device's data whatever the others'
    counts, so "certainly exclusive" still holds: another mm that references
    one of the entries reads it from the device itself."""
    nr = alloc_swap_folio_nr(k, fr) if k.design.swapin_large_sync_io else 1
    if nr > 1:
        idx = fr.address % nr
        first = slot - idx
        for i in range(nr):
            swapfile.swapcache_prepare(k, first + i)
        pfn = k.alloc_folio(nr=nr, data=tuple(k.swap[first + i].data for i in range(nr)))
        lru.folio_add_lru_large(k, pfn)
        return Goto("swap.lock", fr._replace(page=pfn, fresh=True))
    swapfile.swapcache_prepare(k, slot)
    pfn = k.alloc_folio(data=(s.data,))
    lru.lru_cache_add(k, pfn)
    # __folio_set_locked(); swap_read_folio() completes at once and unlocks; folio_lock_or_retry() next
    return Goto("swap.lock", fr._replace(page=pfn, fresh=True))


def alloc_swap_folio_nr(k, fr: FaultFrame) -> int:
    """alloc_swap_folio() (6.12, 242d12c98174; the PT lock taken to read the
    ptes): the size of the folio to swap in, 1 unless an enabled mTHP size
    *below the PMD size* (``BIT(PMD_ORDER) - 1``: a PMD-size THP always comes
    back as small folios) fits: thp_vma_allowable_orders() (VM_HUGEPAGE, not
    VM_NOHUGEPAGE), thp_vma_suitable_orders() (the aligned range inside the
    vma), thp_swap_suitable_orders() (the entry's offset and the address
    agree modulo the size, as when the folio was swapped out) and
    can_swapin_thp(); the largest such size.  zswap never enabled
    (zswap_never_enabled()) and no userfaultfd are assumed: the model has
    neither."""
    addr = fr.address
    vma = k.find_vma(addr)
    if vma is None or not vma.flags & VM_HUGEPAGE or vma.flags & VM_NOHUGEPAGE:
        return 1
    slot = fr.orig_pte.pfn
    for nr in sorted((n for n in k.THP_SIZES if 1 < n < k.HPAGE_PMD_NR), reverse=True):
        base = addr - addr % nr
        if base < vma.start or base + nr > vma.end or addr % nr != slot % nr:
            continue
        if can_swapin_thp(k, fr.orig_pte, addr, nr):
            return nr
    return 1


def can_swapin_thp(k, orig, addr: int, nr: int) -> bool:
    """can_swapin_thp() (6.12): the ``nr`` aligned ptes around ``addr`` are
    the swap ptes of consecutive entries with the same bits as the faulting
    one (pte_same() with the offset moved, swap_pte_batch(): the exclusive
    and soft-dirty bits included) and none of the entries has
    SWAP_HAS_CACHE (non_swapcache_batch()).  (swap_zeromap_batch(): the
    model does not record zero-filled swap-outs, so never mixed.)"""
    base = addr - addr % nr
    first = orig.pfn - addr % nr
    for i in range(nr):
        p = k.pte(base + i)
        if p != orig._replace(pfn=first + i):
            return False
        sl = k.swap[first + i] if 0 <= first + i < len(k.swap) else None
        if sl is None or sl.cache != -1:
            return False
    return True


@step("swap.lock")
def do_swap_page_lock(k, fr: FaultFrame, op):
    """lock_page_or_retry() / folio_lock_or_retry(): may sleep."""
    k.lock_page(fr.page)
    return Goto("swap.map", fr)


@step("swap.map")
def do_swap_page_map(k, fr: FaultFrame, op):
    """do_swap_page() with page lock and PT lock: pte_same() re-check, the
    design's exclusivity decision (which frees the swap entry), map the
    page, then do_wp_page() if the write fault was not satisfied."""
    pfn, orig, fresh = fr.page, fr.orig_pte, fr.fresh
    fr = fr._replace(page=None, orig_pte=None, fresh=False)
    addr = fr.address
    k.pte_lock()
    slot = orig.pfn
    nr = k.folio(pfn).nr if fresh else 1
    idx = addr % nr
    # a fresh large folio: every pte of its range must still be the swap pte it was read for
    # (pte_same() of the first one with the offset moved, swap_pte_batch() == nr)
    same = all(k.pte(addr - idx + i) == orig._replace(pfn=slot - idx + i) for i in range(nr))
    if not same or (not fresh and (not k.PageSwapCache(pfn) or slot not in k.folio(pfn).swap)):
        k.unlock_page(pfn)
        k.drop_ref(k.my_tmp_ref(pfn))
        if fresh:
            for i in range(nr):
                swapfile.swapcache_clear(k, slot - idx + i)
        k.pte_unlock()
        return fault_done(k, fr)
    if not fresh:
        idx = k.folio(pfn).swap.index(slot)
        if k.design.swapin_map_large_swapcache and swapcache_folio_batch(k, addr, pfn, idx, orig):
            nr = k.folio(pfn).nr
    vmf = Vmf(k.mm, addr, pfn, idx, write=fr.write, unshare=fr.unshare, locked=True)
    if nr > 1:
        # swap_free_nr(entry, nr_pages): the other entries of the range (the design frees the faulting one), before
        # should_try_to_free_swap()
        for i in range(nr):
            if i != idx:
                swapfile.swap_free(k, slot - idx + i)
    count = k.swap[slot].count
    exclusive = k.design.do_swap_page_map(k, vmf, slot, bool(orig.excl), fresh)
    freed = k.swap[slot] is None or k.swap[slot].count != count
    return Goto("swap.set_pte", fr._replace(swapin=SwapMapped(pfn, idx, slot, bool(exclusive), freed, fresh, nr)))


def swapcache_folio_batch(k, addr: int, pfn: int, idx: int, orig) -> bool:
    """do_swap_page() with a large folio found in the swap cache (6.10, Barry
    Song's "mm: swap: entirely map large folios found in swapcache"; PT lock
    held): map it whole when its range lies inside the vma and the PMD and
    every pte of the range is the swap pte of its entry with the faulting
    pte's bits (pte_same() of the first, swap_pte_batch() == nr); otherwise
    only the faulting subpage, as before 6.10."""
    f = k.folio(pfn)
    base = addr - idx
    vma = k.find_vma(addr)
    if f.nr < 2 or base < vma.start or base + f.nr > vma.end or \
            base // k.HPAGE_PMD_NR != (base + f.nr - 1) // k.HPAGE_PMD_NR:
        return False
    return all(f.swap[i] == orig.pfn - idx + i and k.pte(base + i) == orig._replace(pfn=f.swap[i])
               for i in range(f.nr))


@step("swap.set_pte")
def do_swap_page_set_pte(k, fr: FaultFrame, op):
    """do_swap_page(), still under the PT lock and page lock: set_pte_at() +
    page_add_anon_rmap() (RMAP_EXCLUSIVE), then -- in the kernels that free the
    entry after mapping (before 5.18) -- swap_free(); unlock_page(); and
    do_wp_page() if a write fault was not satisfied.  A separate step from the
    decision, so that lockless readers of the counts (another mm's fault
    under its own PT lock) can run in between, as in the kernel."""
    pfn, idx, slot, exclusive, freed, fresh, nr = fr.swapin
    fr = fr._replace(swapin=None)
    addr = fr.address
    vma = k.find_vma(addr)
    # a read fault maps an exclusive page writable too from 6.11 (c18160dba5ff: the design's swapin_read_mkwrite)
    write = (fr.write or k.design.swapin_read_mkwrite) and exclusive and bool(vma.flags & VM_WRITE)
    k.ref_to_mapping(pfn)
    if nr > 1:
        # a fresh large folio (6.12) or a swap-cache one mapped whole (6.10): folio_ref_add(folio, nr_pages - 1),
        # the rmap of all nr subpages (RMAP_EXCLUSIVE when exclusive), set_ptes() of all nr ptes with the faulting
        # pte's bits (writable, and dirty on a write fault, alike)
        f = k.folio(pfn)
        k.folios[pfn] = f._replace(refcount=f.refcount + nr - 1)
        for i in range(nr):
            a = addr - idx + i
            rmap.page_add_anon_rmap(k, pfn, i, exclusive=exclusive)
            k.set_pte_at(a, k.mk_pte(pfn, i, write=write, dirty=write and fr.write, soft_dirty=True))
            k.effect(Swapin(k.mm, a, pfn, i, exclusive))
            if fresh:
                swapfile.swapcache_clear(k, slot - idx + i)
    else:
        rmap.page_add_anon_rmap(k, pfn, idx, exclusive=exclusive)
        k.set_pte_at(addr, k.mk_pte(pfn, idx, write=write, dirty=write and fr.write, soft_dirty=True))
        k.effect(Swapin(k.mm, addr, pfn, idx, exclusive))
    if not freed:
        swapfile.swap_free(k, slot)
    if fresh and nr == 1:
        swapfile.swapcache_clear(k, slot)
    if k.folios[pfn] is not None and k.PageLocked(pfn):
        k.unlock_page(pfn)
    if fr.write and not write:
        return do_wp_page(k, fr, vma)
    k.pte_unlock()
    return fault_done(k, fr)


# --------------------------------------------------------------------------- zap
def zap_pte(k, mm: int, addr: int) -> None:
    """zap_pte_range() for one pte (PT lock held by the caller): present ->
    page_remove_rmap + put_page (the TLB-gather's deferred free); swap ->
    free_swap_and_cache(); migration -> drop the entry.  A large folio that
    keeps other ptes stays whole and partially mapped: the kernel queues it
    for a deferred split (folio_remove_rmap_ptes() -> deferred_split_folio(),
    anon folios partially mapped, 6.8+ for mTHP too), which changes no
    mapping until the deferred-split shrinker runs under memory pressure; the
    model has no such shrinker (a split it needs, MADV_PAGEOUT's, is
    split_folio())."""
    pte = k.pte(addr, mm)
    if pte is None:
        return
    k.set_pte_at(addr, None, mm)
    k.effect(Unmap(mm, addr))
    if pte.kind == PTE_PRESENT:
        page = vm_normal_page(pte)
        if page is not None:
            rmap.page_remove_rmap(k, page, pte.idx)
            k.put_page(page)
    elif pte.kind == PTE_SWAP:
        swapfile.free_swap_and_cache(k, pte.pfn)


# --------------------------------------------------------------------------- user accesses
class AccessFrame(NamedTuple):
    """A CPU access over a range: ``i``, the page of the range it is at."""
    i: int = 0


def accessible(k, addr) -> bool:
    """The MMU lets a user access through a present pte only where the vma is
    accessible: mprotect(PROT_NONE) makes the ptes PROT_NONE (pte_protnone()),
    which the model keeps as present ptes of a vma without VM_READ|VM_WRITE."""
    vma = k.find_vma(addr)
    return vma is not None and bool(vma.flags & (VM_READ | VM_WRITE))


def sigsegv(k):
    """arch fault handler -> force_sig_fault(SIGSEGV): the default action kills
    the process (do_exit(), the ``exit`` path), so it runs no further operations."""
    return Goto("exit")


@step("access.write")
def user_write(k, fr: AccessFrame | None, op):
    """A CPU store through the pte (after handle_mm_fault() returned): the
    store lands in the mapped page if the pte is present and writable,
    otherwise the CPU faults (FAULT_FLAG_WRITE) and retries.  With ``pages``
    (a memset() over a range) each page's store is its own step.  A fault
    that fails (VM_FAULT_SIGSEGV) kills the process."""
    if k.ret == VM_FAULT_SIGSEGV:
        return sigsegv(k)
    fr = fr or AccessFrame()
    addr = op["addr"] + fr.i
    pte = lookup(k, addr)
    if k.is_present(pte) and pte.write:
        token = op.get("value") or k.new_token()
        store(k, k.mm, addr, pte, token, via=None)
        return _next_page(fr, op, "access.write")
    return enter_fault(fr, addr, write=True, unshare=False, then="access.write", mm_locked=False)


def _next_page(fr: AccessFrame, op, label):
    i = fr.i + 1
    if i < op.get("pages", 1):
        return Goto(label, AccessFrame(i))
    return None


@step("access.read")
def user_read(k, fr: AccessFrame | None, op):
    """A CPU load: present, accessible pte -> read the page; otherwise a read
    fault (which kills the process with SIGSEGV where access_error() says so)."""
    if k.ret == VM_FAULT_SIGSEGV:
        return sigsegv(k)
    fr = fr or AccessFrame()
    addr = op["addr"] + fr.i
    pte = lookup(k, addr)
    if k.is_present(pte) and accessible(k, addr):
        data = ZERO if pte.pfn == ZERO_PFN else k.folio(pte.pfn).data[pte.idx]
        k.effect(Load("cpu", f"mm{k.mm}", k.mm, addr, pte.pfn, pte.idx, data))
        return _next_page(fr, op, "access.read")
    return enter_fault(fr, addr, write=False, unshare=False, then="access.read", mm_locked=False)


def store(k, mm: int, addr: int, pte, token, via) -> None:
    """Write new data into the page a pte (or a GUP reference) points to."""
    f = k.folio(pte.pfn)
    data = list(f.data)
    data[pte.idx] = token
    k.folios[pte.pfn] = f._replace(data=tuple(data))
    k.set_flag(pte.pfn, PG_dirty)         # folio_mark_dirty() (the pte's dirty bit, below, for a CPU store)
    if via is None:
        pmd = k.pmd(addr // k.HPAGE_PMD_NR, mm)
        if pmd is not None:
            k.set_pmd_at(addr // k.HPAGE_PMD_NR, pmd._replace(dirty=True), mm)
        else:
            k.set_pte_at(addr, pte._replace(dirty=True, soft_dirty=True), mm)
    k.effect(Store(mm, addr, pte.pfn, pte.idx, token, via))


op("write", "access.write", "memset() / a CPU store", ("addr", "pages", "value"),
   "write new data to each page of a range (faults as needed)")
op("read", "access.read", "a CPU load", ("addr", "pages"), "read each page of a range and check what the process sees")
