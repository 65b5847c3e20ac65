"""mm/huge_memory.c: anonymous THP mapped by a PMD, and its split to ptes.

The model THP has ``HPAGE_PMD_NR`` (the case's geometry, ``k.HPAGE_PMD_NR``) subpages.  A PMD mapping counts in the
folio's entire_mapcount and holds one reference; PG_anon_exclusive of a
PMD-mapped THP is kept equal on every subpage (the kernel keeps it on the
head page and copies it to each subpage when the PMD is split).

* ``do_huge_pmd_anonymous_page``: a fault in a VM_HUGEPAGE range: a write
  maps a fresh THP, a read the huge zero folio (``set_huge_zero_folio``).
* the huge zero page: a read-only PMD of a shared, never-freed, unmapcounted
  folio; a write or unshare fault on it maps a fresh THP (5.7, 6.13+) or
  splits it into ptes of the 4 KiB zero page (5.8 .. 6.12); fork copies it
  as it is; a split gives zero-page ptes; MADV_PAGEOUT leaves it.
* ``do_huge_pmd_wp_page``: the design's ``huge_pmd_wp`` (5.7..5.17
  reuse_swap_page() / mapcount; 5.18 page_count; 5.19+ PageAnonExclusive
  or page_count) -> reuse the PMD, or ``__split_huge_pmd`` and COW at pte level.
* ``copy_huge_pmd`` (fork): share R/O, or (5.9+ d042035eaf5f; 5.19
  page_try_dup_anon_rmap) split a maybe-pinned THP and copy at pte level.
* ``__split_huge_pmd_locked``: PMD -> ptes, entire mapcount -> subpage mapcounts.
* GUP ``follow_trans_huge_pmd`` with 5.19's unshare; zap and mprotect split
  the PMD first when they cover part of it (the model splits on every zap).
"""
from __future__ import annotations

from ..effects import CopyPte, Reuse, SplitPmd, Unmap
from typing import NamedTuple

from ..paths import step, op as _op, Goto, InFlight, Pfn
from ..txn import Blocked, ModelBug
from ..types import (PG_anon, PG_huge_zero, PG_hugetlb, PG_large, PG_locked, PG_swapcache, Pmd, VM_WRITE,
                     VM_HUGETLB, FOLL_WRITE, PTE_PRESENT, PTE_SWAP, ZERO, ZERO_PFN)
from ..decisions import Vmf, REUSE, SPLIT
from . import hugetlb, rmap, swap as lru, swapfile
from .internal import FaultFrame, GupFrame, enter_fault, fault_done, gup_next, try_grab_page


def _set_excl_all(k, pfn, value: bool) -> None:
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(anon_exclusive=(value,) * f.nr)


def get_huge_zero_folio(k) -> int:
    """mm_get_huge_zero_folio(): the one huge zero folio (allocated on first
    use, never freed while the model runs: its own reference, not a mapping's,
    keeps it; the kernel's per-mm MMF_HUGE_ZERO_FOLIO reference is not
    modelled).  Not PageAnon, every subpage reads zero."""
    for pfn, f in enumerate(k.folios):
        if f is not None and f.flags & PG_huge_zero:
            return pfn
    pfn = k.alloc_folio(nr=k.HPAGE_PMD_NR, flags=PG_huge_zero)
    k.ref_to_mapping(pfn)       # (the temporary reference stays as the global one)
    return pfn


def do_huge_pmd_anonymous_page(k, fr: FaultFrame, vma):
    """do_huge_pmd_anonymous_page() -> __do_huge_pmd_anonymous_page() (PMD
    still none).  A read fault maps the huge zero folio read-only
    (``!(vmf->flags & FAULT_FLAG_WRITE) && !mm_forbids_zeropage() &&
    transparent_hugepage_use_zero_page()``: x86 never forbids it, and the
    model takes use_zero_page at its default, 1) -- the same in every
    release 5.7 .. 6.18 (since 3.8, 79da5407eeadc); the kernel prepares the
    VMA's anon_vma first for either kind of fault (anon_vma_prepare(), 6.8+
    vmf_anon_prepare()).  A write fault allocates a THP."""
    addr = fr.address
    rmap.anon_vma_prepare(k, addr)
    hidx = addr // k.HPAGE_PMD_NR
    k.pte_lock()
    if k.pmd(hidx) is not None:
        k.pte_unlock()
        return fault_done(k, fr)
    if not fr.write:
        # set_huge_zero_folio(): a read-only (special) PMD, no mapcount
        k.set_pmd_at(hidx, Pmd(get_huge_zero_folio(k), write=False, dirty=False))
        k.pte_unlock()
        return fault_done(k, fr)
    map_anon_folio_pmd(k, hidx, vma)
    k.pte_unlock()
    return fault_done(k, fr)


def map_anon_folio_pmd(k, hidx: int, vma) -> None:
    """map_anon_folio_pmd() (6.13+; open-coded in __do_huge_pmd_anonymous_page()
    before): a fresh THP, anon (folio_add_new_anon_rmap(), PageAnonExclusive
    where the design has it), on the LRU at once with the local batch
    (folio_add_lru() drains it for a large folio), mapped by the PMD,
    writable as the vma is."""
    pfn = k.alloc_folio(nr=k.HPAGE_PMD_NR)
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(entire_mapcount=1, flags=f.flags | PG_anon)
    if k.design.anon_exclusive:
        _set_excl_all(k, pfn, True)
    lru.folio_add_lru_large(k, pfn)
    k.ref_to_mapping(pfn)
    k.set_pmd_at(hidx, Pmd(pfn, write=bool(vma.flags & VM_WRITE), dirty=True))


def huge_pmd_fault(k, fr: FaultFrame, vma):
    """create_huge_pmd()/wp_huge_pmd(): a fault on a PMD-mapped THP."""
    addr = fr.address
    hidx = addr // k.HPAGE_PMD_NR
    k.pte_lock()
    pmd = k.pmd(hidx)
    if pmd is None:
        k.pte_unlock()
        return Goto("fault.handle", fr)
    if (fr.write or fr.unshare) and not pmd.write and k.is_huge_zero_pfn(pmd.pfn):
        return do_huge_zero_wp_pmd(k, fr, vma, hidx)
    if (fr.write or fr.unshare) and not pmd.write:
        unshare = fr.unshare and not fr.write
        vmf = Vmf(k.mm, addr, pmd.pfn, addr % k.HPAGE_PMD_NR, write=not unshare, unshare=unshare)
        d = k.design.huge_pmd_wp(k, vmf)
        if d == REUSE:
            k.effect(Reuse(k.mm, addr, pmd.pfn, vmf.idx, "unshare" if unshare else "write"))
            if k.design.anon_exclusive:
                _set_excl_all(k, pmd.pfn, True)
            if not unshare:
                k.set_pmd_at(hidx, pmd._replace(write=True, dirty=True))
            k.pte_unlock()
            return fault_done(k, fr)
        if d != SPLIT:
            raise ModelBug(f"design answered {d!r} in do_huge_pmd_wp_page")
        __split_huge_pmd_locked(k, k.mm, hidx)
        k.pte_unlock()
        return Goto("fault.handle", fr)
    k.pte_unlock()
    return fault_done(k, fr)


def do_huge_zero_wp_pmd(k, fr: FaultFrame, vma, hidx):
    """do_huge_pmd_wp_page() on the huge zero PMD (PT lock held), a write or
    FAULT_FLAG_UNSHARE fault: from 6.13 do_huge_zero_wp_pmd() (1ced09e0331f)
    replaces it by a fresh, exclusive, zeroed THP (map_anon_folio_pmd():
    writable where the VMA is, for an unshare too), as 5.7 did ("goto
    alloc"); 5.8 .. 6.12 (3917c80280c9) split it ("goto fallback":
    __split_huge_pmd() -> __split_huge_zero_page_pmd(), ptes of the 4 KiB
    zero page) and fault again at pte level, which copies the zero page."""
    if not k.design.huge_zero_wp_thp:
        __split_huge_pmd_locked(k, k.mm, hidx)
        k.pte_unlock()
        return Goto("fault.handle", fr)
    map_anon_folio_pmd(k, hidx, vma)
    k.pte_unlock()
    return fault_done(k, fr)


def __split_huge_zero_page_pmd(k, mm, hidx) -> None:
    """__split_huge_zero_page_pmd(): the huge zero PMD becomes read-only ptes
    of the 4 KiB zero page (no mapcount, no reference)."""
    k.set_pmd_at(hidx, None, mm)
    for i in range(k.HPAGE_PMD_NR):
        k.set_pte_at(hidx * k.HPAGE_PMD_NR + i, k.mk_pte(ZERO_PFN, 0, write=False), mm)


def __split_huge_pmd_locked(k, mm, hidx) -> None:
    """__split_huge_pmd_locked() (PT lock held; from 5.8 also under the page
    lock, c444eb564fb1): replace the PMD by ptes of each subpage; the entire
    mapcount becomes one mapcount per subpage (and a reference each).  The
    huge zero PMD: __split_huge_zero_page_pmd()."""
    pmd = k.pmd(hidx, mm)
    pfn = pmd.pfn
    if k.is_huge_zero_pfn(pfn):
        __split_huge_zero_page_pmd(k, mm, hidx)
        return
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(entire_mapcount=f.entire_mapcount - 1,
                               mapcount=tuple(m + 1 for m in f.mapcount),
                               refcount=f.refcount + f.nr - 1)
    k.set_pmd_at(hidx, None, mm)
    for i in range(f.nr):
        k.set_pte_at(hidx * k.HPAGE_PMD_NR + i, k.mk_pte(pfn, i, write=pmd.write, dirty=pmd.dirty), mm)
    k.effect(SplitPmd(mm, hidx, pfn))


def can_split_folio(k, pfn, caller_pins: int) -> bool:
    """can_split_folio() (can_split_huge_page() before 5.19's folio rename;
    in shrink_folio_list() since 4.13, b8f593cd0896): a large anon folio can
    be split -- so reclaimed -- only if nothing but its mappings, the swap
    cache (one per subpage) and the caller's ``caller_pins`` references
    hold it: ``folio_mapcount() == folio_ref_count() - extra_pins -
    caller_pins``.  Any other reference (a pipe's FOLL_GET, a pin, a DMA in
    flight) makes reclaim give up on it (``activate_locked``): it stays
    mapped as it was, a PMD-mapped THP unsplit."""
    f = k.folio(pfn)
    extra = f.nr if k.PageSwapCache(pfn) else 0
    return k.total_mapcount(pfn) == f.refcount - extra - caller_pins


def copy_huge(k, fr, vma, addr, child):
    """copy_huge_pmd() / copy_hugetlb_page_range() for the huge entry at addr
    (parent's PT lock held): None when done, or where dup_mmap() goes on
    (``fork.pte`` at this address again, after a split)."""
    if vma.flags & VM_HUGETLB:
        hugetlb.copy_hugetlb(k, addr, child)
        return None
    hidx = addr // k.HPAGE_PMD_NR
    pmd = k.pmd(hidx)
    if pmd is None:
        return None
    if k.is_huge_zero_pfn(pmd.pfn):
        # copy_huge_pmd(): is_huge_zero_pmd() -> mm_get_huge_zero_folio(), the child gets the same R/O PMD
        k.set_pmd_at(hidx, pmd, child)
        k.effect(CopyPte(k.mm, child, hidx * k.HPAGE_PMD_NR, k.HPAGE_PMD_NR))
        return None
    d = k.design.copy_huge_anon(k, k.mm, pmd.pfn)
    if d == SPLIT:
        # -EAGAIN: split the parent's PMD and copy each pte (early COW per subpage)
        __split_huge_pmd_locked(k, k.mm, hidx)
        return Goto("fork.pte", fr._replace(addr=addr))
    f = k.folio(pmd.pfn)
    k.folios[pmd.pfn] = f._replace(entire_mapcount=f.entire_mapcount + 1, refcount=f.refcount + 1)
    npmd = pmd._replace(write=False)
    k.set_pmd_at(hidx, npmd)
    k.set_pmd_at(hidx, npmd, child)
    k.effect(CopyPte(k.mm, child, hidx * k.HPAGE_PMD_NR, k.HPAGE_PMD_NR))
    return None


def zap_huge(k, mm, addr) -> bool:
    """zap_huge_pmd() / a partial zap: a hugetlb page goes whole
    (__unmap_hugepage_range(), False); a THP's PMD is split and the caller
    zaps the pte (True)."""
    hidx = addr // k.HPAGE_PMD_NR
    pmd = k.pmd(hidx, mm)
    if pmd is not None and k.test(pmd.pfn, PG_hugetlb):
        # __unmap_hugepage_range(): the whole huge page goes
        k.set_pmd_at(hidx, None, mm)
        f = k.folio(pmd.pfn)
        k.folios[pmd.pfn] = f._replace(entire_mapcount=f.entire_mapcount - 1)
        k.put_page(pmd.pfn)
        for a in range(hidx * k.HPAGE_PMD_NR, (hidx + 1) * k.HPAGE_PMD_NR):
            k.effect(Unmap(mm, a))
        return False
    if pmd is not None:
        __split_huge_pmd_locked(k, mm, hidx)
    return True


def change_huge_pmd(k, addr, prot, start, end) -> None:
    """change_huge_pmd(): a range covering the whole PMD changes the PMD
    (write-protect; PMDs are not made writable directly before 6.2, and the
    model never does); a partial range splits it first."""
    hidx = addr // k.HPAGE_PMD_NR
    base = hidx * k.HPAGE_PMD_NR
    pmd = k.pmd(hidx)
    if start <= base and base + k.HPAGE_PMD_NR <= end or k.test(pmd.pfn, PG_hugetlb):
        if not prot & VM_WRITE and pmd.write:
            k.set_pmd_at(hidx, pmd._replace(write=False))
        return
    __split_huge_pmd_locked(k, k.mm, hidx)
    pte = k.pte(addr)
    if not prot & VM_WRITE and pte.write:
        k.set_pte_at(addr, pte._replace(write=False))


def follow_huge(k, fr: GupFrame, vma, addr, gf):
    """follow_trans_huge_pmd() / follow_hugetlb_page() under the PT lock."""
    hidx = addr // k.HPAGE_PMD_NR
    k.pte_lock()
    pmd = k.pmd(hidx)
    write = bool(gf & FOLL_WRITE)
    if pmd is None:
        k.pte_unlock()
        return enter_fault(fr, addr, write=write, unshare=False, then="gup.follow", mm_locked=True)
    idx = addr % k.HPAGE_PMD_NR
    if write and not pmd.write:
        k.pte_unlock()
        return enter_fault(fr, addr, write=True, unshare=False, then="gup.follow", mm_locked=True)
    if not pmd.write and k.design.gup_must_unshare(k, gf, pmd.pfn, idx):
        k.pte_unlock()
        return enter_fault(fr, addr, write=False, unshare=True, then="gup.follow", mm_locked=True)
    try_grab_page(k, fr, pmd.pfn, idx, addr, gf)
    k.pte_unlock()
    return gup_next(k, fr)


# ------------------------------------------------------------------ split from another path
class SplitFrame(NamedTuple):
    """__split_huge_pmd()'s locals: the THP (``page``) and PMD index, whether
    it holds the page lock, and -- once the PMD is cleared -- the old PMD's
    write and dirty bits (``cleared``)."""
    page: Pfn
    hidx: int
    locked: bool
    cleared: bool = False
    write: bool = False
    dirty: bool = False

    def in_flight(self, s, mm, args, hpage_pmd_nr) -> InFlight:
        """Between the halves of __split_huge_pmd_locked() the ptes of every
        subpage are being installed (the PMD's reference stands for them)."""
        if not self.cleared:
            return InFlight()
        nr = s.folios[self.page].nr
        return InFlight(maps=tuple((mm, self.hidx * hpage_pmd_nr + j, self.page, j) for j in range(nr)),
                        refs=((self.page, 1),))


@step("split.lock")
def split_huge_pmd_lock(k, fr, op):
    """__split_huge_pmd() (a partial mprotect/munmap/madvise of a THP in this
    process): from 5.8 (c444eb564fb1, CVE-2020-29368) the anon THP's page
    lock is taken first, so that reuse_swap_page() (which runs under it)
    never sees the mapcounts half-transferred."""
    h = op["addr"] // k.HPAGE_PMD_NR
    pmd = k.pmd(h)
    if pmd is None or k.test(pmd.pfn, PG_hugetlb):
        return None
    if k.is_huge_zero_pfn(pmd.pfn):
        # no page to lock: __split_huge_pmd_locked() -> __split_huge_zero_page_pmd()
        k.pte_lock()
        __split_huge_pmd_locked(k, k.mm, h)
        k.pte_unlock()
        return None
    if k.design.thp_split_page_lock:
        k.lock_page(pmd.pfn)
        return Goto("split.clear", SplitFrame(pmd.pfn, h, True))
    return Goto("split.clear", SplitFrame(pmd.pfn, h, False))


@step("split.clear")
def split_huge_pmd_clear(k, fr: SplitFrame, op):
    """__split_huge_pmd_locked(), first half under the PT lock: the PMD is
    cleared and the entire mapcount dropped ..."""
    pfn, h = fr.page, fr.hidx
    k.pte_lock()
    pmd = k.pmd(h)
    if pmd is None or pmd.pfn != pfn:
        if fr.locked:
            k.unlock_page(pfn)
        k.pte_unlock()
        return None
    k.set_pmd_at(h, None)
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(entire_mapcount=f.entire_mapcount - 1)
    return Goto("split.fill", fr._replace(cleared=True, write=pmd.write, dirty=pmd.dirty))


@step("split.fill")
def split_huge_pmd_fill(k, fr: SplitFrame, op):
    """... second half: the ptes of every subpage are installed and the
    subpage mapcounts raised (one reference each); PT lock and page lock
    released.  Between the halves a lockless reader of the mapcounts (5.7's
    reuse_swap_page() on another mm's PMD) sees them too low."""
    pfn, h = fr.page, fr.hidx
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(mapcount=tuple(m + 1 for m in f.mapcount), refcount=f.refcount + f.nr - 1)
    for i in range(f.nr):
        k.set_pte_at(h * k.HPAGE_PMD_NR + i, k.mk_pte(pfn, i, write=fr.write, dirty=fr.dirty))
    k.effect(SplitPmd(k.mm, h, pfn))
    k.pte_unlock()
    if fr.locked:
        k.unlock_page(pfn)
    return None


_op("split_pmd", "split.lock", "__split_huge_pmd() (partial mprotect/munmap of a THP)", ("addr",),
    "split the PMD mapping of the THP at addr into ptes")


# ------------------------------------------------------------------ folio split (split_folio())
def split_folio(k, pfn) -> bool:
    """split_folio() -> split_huge_page_to_list_to_order(folio, NULL, 0) of
    an anonymous THP (the caller holds the page lock and one reference,
    ``folio_get()``: can_split_folio()'s ``caller_pins`` is 1): False
    (-EAGAIN) when anything else holds the folio.  Otherwise unmap_folio()
    (every PMD mapping is split first, TTU_SPLIT_HUGE_PMD), __split_huge_page()
    makes each subpage a small folio with its own mapcount, PG_anon_exclusive,
    data and swap slot (the head keeps the pfn and the caller's reference; a
    tail gets a new pfn; the swap cache follows each slot's page), and
    remap_page() maps every subpage again where it was mapped -- from 6.12
    (b1f202060afe, the design's ``thp_split_zeropage``) an all-zero subpage
    of an anon folio instead as the shared zero page (RMP_USE_SHARED_ZEROPAGE
    -> try_to_map_unused_to_zeropage(): not for an mlocked folio or VM_LOCKED
    vma, neither of which the model has; the soft-dirty bit is kept), and a
    tail left unmapped is freed (free_page_and_swap_cache()).  The same in
    every release 5.7 .. 6.18 apart from the zero-page remap."""
    if not can_split_folio(k, pfn, 1):
        return False
    for mm, m in enumerate(k.mms):
        if m.alive and any(p is not None and p.pfn == pfn for p in m.pmds):
            if m.ptl != -1 and m.ptl != k.tid:
                raise Blocked("page-table lock held")
            for h, p in enumerate(m.pmds):
                if p is not None and p.pfn == pfn:
                    __split_huge_pmd_locked(k, mm, h)
    f = k.folio(pfn)
    swapcache = bool(f.flags & PG_swapcache)
    flags = f.flags & ~PG_large
    held = [0] * f.nr                      # references with a holder record, per subpage
    for r in k.refs:
        if r.pfn == pfn:
            held[r.idx] += r.units
    counts = [f.mapcount[i] + swapcache + held[i] for i in range(f.nr)]
    if sum(counts) != f.refcount or f.pincount:
        raise ModelBug(f"split of pfn {pfn}: references {f.refcount} are not its mappings, swap cache and holders")
    new = [pfn]
    for i in range(1, f.nr):
        p = k.alloc_folio(nr=1, flags=flags & ~PG_locked, data=(f.data[i],))
        k.refs.remove(k.my_tmp_ref(p))
        k.folios[p] = k.folio(p)._replace(refcount=counts[i], mapcount=(f.mapcount[i],),
                                          anon_exclusive=(f.anon_exclusive[i],), swap=(f.swap[i],))
        new.append(p)
    k.folios[pfn] = f._replace(flags=flags, refcount=counts[0], mapcount=(f.mapcount[0],), entire_mapcount=0,
                               anon_exclusive=(f.anon_exclusive[0],), data=(f.data[0],), swap=(f.swap[0],))
    for i in range(1, f.nr):
        if swapcache and f.swap[i] >= 0:
            k.set_slot(f.swap[i], cache=new[i])
    k.refs = [r._replace(pfn=new[r.idx], idx=0) if r.pfn == pfn else r for r in k.refs]
    zero = k.design.thp_split_zeropage and bool(flags & PG_anon)
    for mm, m in enumerate(k.mms):
        if not m.alive:
            continue
        for a, p in enumerate(m.ptes):
            if p is None or p.kind == PTE_SWAP or p.pfn != pfn:
                continue
            if zero and p.kind == PTE_PRESENT and f.data[p.idx] == ZERO:
                # try_to_map_unused_to_zeropage()
                k.set_pte_at(a, k.mk_pte(ZERO_PFN, 0, write=False, soft_dirty=p.soft_dirty), mm)
                rmap.page_remove_rmap(k, new[p.idx], 0)
                k.put_page(new[p.idx])
            else:
                k.set_pte_at(a, p._replace(pfn=new[p.idx], idx=0), mm)
    for p in new[1:]:
        if k.folios[p] is not None and k.total_mapcount(p) == 0:
            swapfile.free_swap_cache(k, p)
    return True
