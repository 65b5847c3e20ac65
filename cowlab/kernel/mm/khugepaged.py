"""mm/khugepaged.c (and mm/madvise.c's MADV_COLLAPSE): collapsing the
PTE-mapped anonymous pages of one PMD range into a fresh PMD-mapped THP.

* ``madvise(MADV_COLLAPSE)`` -> ``madvise_collapse()`` (7d8faaf15545
  "mm/madvise: introduce MADV_COLLAPSE sync hugepage collapse", 6.1; the
  design's ``madv_collapse``; before 6.1 madvise_behavior_valid() refuses the
  unknown advice with -EINVAL): for each PMD of the range,
  ``hpage_collapse_scan_pmd()`` (khugepaged_scan_pmd() before 6.1) ->
  ``collapse_huge_page()``; the result is 0 when every PMD was collapsed (or
  already PMD-mapped), else ``madvise_collapse_errno()`` of the last failure.
  cc->is_khugepaged is false: max_ptes_none / max_ptes_swap /
  max_ptes_shared and the "referenced" test are not applied.
* ``khugepaged`` (op): khugepaged_scan_mm_slot() reaching the PMD at ``addr``
  of this process's mm (cc->is_khugepaged: the tunables at their defaults,
  khugepaged_init(): max_ptes_none = HPAGE_PMD_NR - 1, max_ptes_swap =
  HPAGE_PMD_NR / 8, max_ptes_shared = HPAGE_PMD_NR / 2; the VMA must be
  VM_HUGEPAGE, TVA_ENFORCE_SYSFS with enabled=madvise, the machine's
  setting).  The model has no accessed bits: every pte counts as young.

The atomic steps follow collapse_huge_page()'s lock boundaries:

1. ``collapse.scan`` -- mmap_read_lock (retaken and the VMA revalidated after
   a previous PMD dropped it) and the PT lock: the scan of every pte
   (swap entries counted, none/zero ptes allowed, PG_lru, page lock,
   is_refcount_suitable(), a writable pte somewhere: SCAN_PAGE_RO otherwise,
   up to 6.17).  On SCAN_SUCCEED mmap_lock is dropped.
2. ``collapse.alloc`` -- alloc_charge_folio() with no lock, then
   mmap_read_lock, hugepage_vma_revalidate(), find_pmd_or_thp_or_none();
   swap entries found by the scan are swapped in first
   (__collapse_huge_page_swapin(): ``collapse.swapin``, a read fault on each,
   then lru_add_drain()); mmap_read_unlock.
3. ``collapse.huge`` -- mmap_write_lock, hugepage_vma_revalidate(),
   check_pmd_still_valid(); anon_vma_lock_write(); pmdp_collapse_flush() +
   tlb_remove_table_sync_one(): the IPI waits for every CPU that runs
   gup-fast with IRQs off (the step is not enabled while a thread of this mm
   has IRQs off), and gup-fast that starts afterwards finds the PMD none (and
   from 70cbc3cc78a9 re-checks the PMD), so it can take no new reference on
   the old pages; __collapse_huge_page_isolate() under the PT lock (trylock
   and LRU-isolate each folio; is_refcount_suitable(): any reference beyond
   the mappings and the swap cache -- a pin, a pipe buffer, an LRU batch --
   is SCAN_PAGE_COUNT); __collapse_huge_page_copy() (the data, then the old
   ptes cleared, folio_remove_rmap_pte() and free_page_and_swap_cache());
   the new THP mapped by the PMD, writable as the VMA is, dirty,
   folio_add_new_anon_rmap(RMAP_EXCLUSIVE) (page_add_new_anon_rmap() in 6.1:
   a new anon page is always exclusive) and on the LRU; mmap_write_unlock.
   On failure the page table is put back (pmd_populate()) as it was.  The
   kernel holds mmap_lock for write, the anon_vma lock, the isolated folios'
   page locks and their LRU isolation from the flush to the PMD: no other
   path of the model can reach this mm's ptes or the old folios' locks in
   between (gup-fast is held off as above; rmap walkers need the anon_vma
   lock or an LRU folio), so the model makes that window one step.

Exclusivity: anonymous memory is never collapsed in place.  The new THP is a
copy private to this mm, so it is PageAnonExclusive whatever the old
subpages were: exclusive ones (nobody else maps them), shared ones (the other
process keeps the old page, this mm stops mapping it) or a mixture
(MADV_DONTFORK before fork()).  The "merging of PageAnonExclusive" that an
in-place collapse would need (David Hildenbrand, 20230104144905.460075-1-
david@redhat.com, the cover letter of cow.c's anon_thp_test_cases[]) is what
the kernel avoids by copying; cow.c's four tests check it stays so.

Versions: the scan and collapse as in torvalds/linux mm/khugepaged.c
00f58104202c (v6.1 .. v6.14 in substance: the folio conversions and
alloc_charge_folio() do not change what is checked); the SCAN_PAGE_RO test
(no writable pte in the range) holds up to v6.17 and is gone in v6.18 (Dev
Jain, "mm: Enable khugepaged to operate on non-writable VMAs",
20250903054635.19949-1-dev.jain@arm.com; a live probe on this machine's
6.18.44 collapses a range whose ptes fork made all R/O): the design's
``collapse_ro_ptes``.  The khugepaged path before 5.8 (which refused
PTE-mapped compound pages and pages shared across fork) is not modelled
apart.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from ..effects import CollapsePmd, Error
from ..paths import Goto, Pfn, op as _op, step
from ..txn import Blocked
from ..types import (PG_anon, PG_locked, PTE_MIGRATION, PTE_PRESENT, PTE_SWAP, Pmd, VM_HUGEPAGE,
                     VM_HUGETLB, VM_NOHUGEPAGE, VM_WRITE, ZERO, ZERO_PFN)
from . import rmap, swap as lru, swapfile
from .internal import VM_FAULT_SIGSEGV, enter_fault

# enum scan_result (mm/khugepaged.c, 00f58104202c order; only the values the model reaches are named)
SCAN_FAIL = 0
SCAN_SUCCEED = 1
SCAN_PMD_NULL = 2
SCAN_PMD_NONE = 3
SCAN_PMD_MAPPED = 4
SCAN_EXCEED_NONE_PTE = 5
SCAN_EXCEED_SWAP_PTE = 6
SCAN_EXCEED_SHARED_PTE = 7
SCAN_PTE_NON_PRESENT = 8
SCAN_PAGE_RO = 11
SCAN_PAGE_COUNT = 15
SCAN_PAGE_LRU = 16
SCAN_PAGE_LOCK = 17
SCAN_PAGE_ANON = 18
SCAN_VMA_NULL = 21
SCAN_VMA_CHECK = 22
SCAN_ADDRESS_RANGE = 23
SCAN_DEL_PAGE_LRU = 24
SCAN_ALLOC_HUGE_PAGE_FAIL = 25        # (the model's allocations do not fail)

SCAN_NAMES = {v: k for k, v in globals().items() if k.startswith("SCAN_") and isinstance(v, int)}

EAGAIN, ENOMEM, EBUSY, EINVAL = 11, 12, 16, 22

#: madvise_collapse()'s "whitelisted set of results where continuing OK" (on to the next PMD)
_CONTINUE = frozenset({SCAN_PMD_NULL, SCAN_PTE_NON_PRESENT, SCAN_PAGE_RO, SCAN_PAGE_COUNT, SCAN_PAGE_LOCK,
                       SCAN_PAGE_LRU, SCAN_DEL_PAGE_LRU})


def madvise_collapse_errno(r: int) -> int:
    """madvise_collapse_errno() (6.1+): -ENOMEM for an allocation failure,
    -EBUSY for a charge failure or too many none ptes, -EAGAIN for the
    transient ones (page count, page lock, LRU), -EINVAL for the rest (a
    R/O range, a VMA that does not fit: "trying again likely not to
    succeed")."""
    if r == SCAN_ALLOC_HUGE_PAGE_FAIL:
        return ENOMEM
    if r == SCAN_EXCEED_NONE_PTE:
        return EBUSY
    if r in (SCAN_PAGE_COUNT, SCAN_PAGE_LOCK, SCAN_PAGE_LRU, SCAN_DEL_PAGE_LRU):
        return EAGAIN
    return EINVAL


class CollapseFrame(NamedTuple):
    """madvise_collapse()'s and collapse_huge_page()'s locals: the PMD being
    collapsed (``hidx``, haddr / HPAGE_PMD_NR) and the end of the VMA's part
    of the range (``hend``), cc->is_khugepaged, the PMDs done (``thps``) and
    the last failure, whether mmap_lock is held for read (``locked``), the
    new THP (``hpage``, its allocation reference held), the swap entries the
    scan found (``unmapped``) and the next pte __collapse_huge_page_swapin()
    looks at (``swapin``); ``pos`` is where the next VMA of the range starts."""
    hidx: int
    hend: int
    khugepaged: bool = False
    thps: int = 0
    last_fail: int = SCAN_FAIL
    locked: bool = True
    hpage: Optional[Pfn] = None
    unmapped: int = 0
    swapin: int = 0
    pos: int = 0
    hstart: int = 0


# ----------------------------------------------------------------------------- checks
def _thp_vma_allowable(k, vma, khugepaged: bool) -> bool:
    """thp_vma_allowable_order(PMD_ORDER) (hugepage_vma_check() in 6.1) for
    an anonymous VMA outside a fault: not VM_NOHUGEPAGE (vma_thp_disabled()),
    not hugetlb, large enough for an aligned PMD below its end
    (transhuge_vma_suitable(vma, vm_end - HPAGE_PMD_SIZE)); with
    TVA_ENFORCE_SYSFS (khugepaged) VM_HUGEPAGE too (enabled=madvise)."""
    if vma is None or vma.flags & (VM_NOHUGEPAGE | VM_HUGETLB):
        return False
    N = k.HPAGE_PMD_NR
    haddr = (vma.end - N) // N * N
    if vma.end < N or haddr < vma.start:
        return False
    return not khugepaged or bool(vma.flags & VM_HUGEPAGE)


def hugepage_vma_revalidate(k, hidx: int, khugepaged: bool, expect_anon: bool) -> int:
    """hugepage_vma_revalidate(): the VMA at haddr still exists
    (SCAN_VMA_NULL), covers the aligned PMD range (thp_vma_suitable_order():
    SCAN_ADDRESS_RANGE), allows a THP (SCAN_VMA_CHECK) and -- expect_anon --
    has an anon_vma (SCAN_PAGE_ANON)."""
    N = k.HPAGE_PMD_NR
    vma = k.find_vma(hidx * N)
    if vma is None:
        return SCAN_VMA_NULL
    if not (vma.start <= hidx * N and (hidx + 1) * N <= vma.end):
        return SCAN_ADDRESS_RANGE
    if not _thp_vma_allowable(k, vma, khugepaged):
        return SCAN_VMA_CHECK
    if expect_anon and not vma.anon_vma:
        return SCAN_PAGE_ANON
    return SCAN_SUCCEED


def find_pmd_or_thp_or_none(k, hidx: int) -> int:
    """find_pmd_or_thp_or_none(): SCAN_PMD_MAPPED when a PMD leaf maps the
    range already; SCAN_PMD_NONE when no page table is there (the model: no
    entry in the range)."""
    if k.pmd(hidx) is not None:
        return SCAN_PMD_MAPPED
    N = k.HPAGE_PMD_NR
    if all(k.pte(a) is None for a in range(hidx * N, (hidx + 1) * N)):
        return SCAN_PMD_NONE
    return SCAN_SUCCEED


def is_refcount_suitable(k, pfn: int) -> bool:
    """is_refcount_suitable(): nothing but the folio's mappings (every mm's:
    folio_mapcount(), total_mapcount() before the folio conversion) and the
    swap cache (one per page) holds it: ``folio_ref_count() ==
    folio_mapcount() + (swapcache ? nr : 0)``."""
    f = k.folio(pfn)
    expected = k.total_mapcount(pfn) + (f.nr if k.PageSwapCache(pfn) else 0)
    return f.refcount == expected


def _limits(k):
    """khugepaged_init()'s defaults at the case's geometry: max_ptes_none,
    max_ptes_swap, max_ptes_shared."""
    N = k.HPAGE_PMD_NR
    return N - 1, N // 8, N // 2


def _shared(k, pfn: int) -> bool:
    """folio_likely_mapped_shared() (page_mapcount() > 1 in 6.1): only counted
    against max_ptes_shared by khugepaged."""
    return k.folio_maybe_mapped_shared(pfn) if k.folio_test_large(pfn) else k.page_mapcount(pfn) > 1


def hpage_collapse_scan_pmd(k, fr: CollapseFrame) -> tuple[int, int]:
    """hpage_collapse_scan_pmd() (khugepaged_scan_pmd() before 6.1), mmap_lock
    held for read, under the PT lock: (result, swap entries found)."""
    N = k.HPAGE_PMD_NR
    r = find_pmd_or_thp_or_none(k, fr.hidx)
    if r != SCAN_SUCCEED:
        return r, 0
    max_none, max_swap, max_shared = _limits(k)
    none_or_zero = shared = unmapped = 0
    writable = False
    k.pte_lock()
    result = SCAN_SUCCEED
    for a in range(fr.hidx * N, (fr.hidx + 1) * N):
        pte = k.pte(a)
        if pte is not None and pte.kind in (PTE_SWAP, PTE_MIGRATION):     # is_swap_pte()
            unmapped += 1
            if fr.khugepaged and unmapped > max_swap:
                result = SCAN_EXCEED_SWAP_PTE
                break
            continue
        if pte is None or pte.pfn == ZERO_PFN:
            none_or_zero += 1
            if fr.khugepaged and none_or_zero > max_none:
                result = SCAN_EXCEED_NONE_PTE
                break
            continue
        if pte.write:
            writable = True
        pfn = pte.pfn
        if not k.PageAnon(pfn):
            result = SCAN_PAGE_ANON
            break
        if fr.khugepaged and _shared(k, pfn):       # (counted only against khugepaged's max_ptes_shared)
            shared += 1
            if shared > max_shared:
                result = SCAN_EXCEED_SHARED_PTE
                break
        if not k.PageLRU(pfn):
            result = SCAN_PAGE_LRU
            break
        if k.PageLocked(pfn):
            result = SCAN_PAGE_LOCK
            break
        if not is_refcount_suitable(k, pfn):
            result = SCAN_PAGE_COUNT
            break
    if result == SCAN_SUCCEED and not writable and not k.design.collapse_ro_ptes:
        result = SCAN_PAGE_RO
    # (khugepaged's SCAN_LACK_REFERENCED_PAGE: every pte of the model is young)
    k.pte_unlock()
    return result, unmapped


def __collapse_huge_page_isolate(k, fr: CollapseFrame):
    """__collapse_huge_page_isolate() (PT lock held, the PMD flushed): each
    folio mapped in the range is trylocked (SCAN_PAGE_LOCK), must have a
    suitable refcount (SCAN_PAGE_COUNT: "the page table that maps the page
    has been already unlinked ... this process cannot get an additional pin
    on the page"), and is isolated from the LRU (SCAN_DEL_PAGE_LRU); a large
    folio once.  A swap or migration entry left is SCAN_PTE_NON_PRESENT; no
    writable pte is SCAN_PAGE_RO (up to 6.17).  Returns (result, folios);
    the model checks every folio before it changes any, so a failure leaves
    them as they were (release_pte_pages())."""
    N = k.HPAGE_PMD_NR
    max_none, _, max_shared = _limits(k)
    none_or_zero = shared = 0
    writable = False
    seen: list = []
    for a in range(fr.hidx * N, (fr.hidx + 1) * N):
        pte = k.pte(a)
        if pte is None or (pte.kind == PTE_PRESENT and pte.pfn == ZERO_PFN):
            none_or_zero += 1
            if fr.khugepaged and none_or_zero > max_none:
                return SCAN_EXCEED_NONE_PTE, ()
            continue
        if pte.kind != PTE_PRESENT:
            return SCAN_PTE_NON_PRESENT, ()
        pfn = pte.pfn
        if fr.khugepaged and _shared(k, pfn):
            shared += 1
            if shared > max_shared:
                return SCAN_EXCEED_SHARED_PTE, ()
        if pte.write:
            writable = True
        if pfn in seen:          # a large folio already dealt with (compound_pagelist)
            continue
        if k.PageLocked(pfn):
            return SCAN_PAGE_LOCK, ()
        if not is_refcount_suitable(k, pfn):
            return SCAN_PAGE_COUNT, ()
        if not k.PageLRU(pfn):
            return SCAN_DEL_PAGE_LRU, ()
        seen.append(pfn)
    if not writable and not k.design.collapse_ro_ptes:
        return SCAN_PAGE_RO, ()
    return SCAN_SUCCEED, tuple(seen)


def __collapse_huge_page_copy(k, fr: CollapseFrame) -> tuple:
    """__collapse_huge_page_copy(): every subpage's data into the new THP
    (zero for a none or zero-page pte), then
    __collapse_huge_page_copy_succeeded(): each pte cleared, its rmap removed
    (folio_remove_rmap_pte()), the folios unlocked and put back on the LRU
    (release_pte_folio(), folio_putback_lru()) and each pte's reference put
    with free_page_and_swap_cache() (free_swap_cache() first).  Returns the
    old folios."""
    N = k.HPAGE_PMD_NR
    base = fr.hidx * N
    old = [k.pte(a) for a in range(base, base + N)]
    k.set_folio(fr.hpage, data=tuple(ZERO if p is None or p.pfn == ZERO_PFN else k.folio(p.pfn).data[p.idx]
                                     for p in old))
    puts: dict = {}
    for a, p in zip(range(base, base + N), old):
        if p is None:
            continue
        k.set_pte_at(a, None)
        if p.pfn != ZERO_PFN:
            rmap.page_remove_rmap(k, p.pfn, p.idx)
            puts[p.pfn] = puts.get(p.pfn, 0) + 1
    for pfn, n in puts.items():
        swapfile.free_swap_cache(k, pfn)
        k.ref_put_units(pfn, n)
    return tuple(sorted(puts))


@step("collapse.scan")
def collapse_scan(k, fr: CollapseFrame, op):
    """madvise_collapse() / khugepaged_scan_mm_slot(), for the PMD at
    fr.hidx: mmap_read_lock and hugepage_vma_revalidate() if a previous
    collapse dropped it, then hpage_collapse_scan_pmd() under the PT lock;
    on SCAN_SUCCEED collapse_huge_page() begins: mmap_read_unlock()."""
    if fr.hidx >= fr.hend:
        return _vma_done(k, fr, op)
    if not fr.locked:
        k.mmap_read_lock()
        fr = fr._replace(locked=True)
        r = hugepage_vma_revalidate(k, fr.hidx, fr.khugepaged, expect_anon=False)
        if r != SCAN_SUCCEED:
            return _vma_done(k, fr._replace(last_fail=r), op)
    r, unmapped = hpage_collapse_scan_pmd(k, fr)
    if r == SCAN_SUCCEED:
        k.mmap_read_unlock()
        return Goto("collapse.alloc", fr._replace(locked=False, unmapped=unmapped))
    return _handle_result(k, fr, r, op)


def _revalidate(k, fr) -> int:
    """hugepage_vma_revalidate() then find_pmd_or_thp_or_none(), as
    collapse_huge_page() does after each time it takes the mmap_lock."""
    r = hugepage_vma_revalidate(k, fr.hidx, fr.khugepaged, expect_anon=True)
    return find_pmd_or_thp_or_none(k, fr.hidx) if r == SCAN_SUCCEED else r


@step("collapse.alloc")
def collapse_alloc(k, fr: CollapseFrame, op):
    """collapse_huge_page(): alloc_charge_folio() (no lock held), then
    mmap_read_lock, hugepage_vma_revalidate() and find_pmd_or_thp_or_none();
    if the scan found swap entries, __collapse_huge_page_swapin() next."""
    hpage = k.alloc_folio(nr=k.HPAGE_PMD_NR)
    k.mmap_read_lock()
    fr = fr._replace(hpage=hpage)
    r = _revalidate(k, fr)
    if r != SCAN_SUCCEED:
        k.mmap_read_unlock()
        return _collapse_out(k, fr, r, op)
    if fr.unmapped:
        return Goto("collapse.swapin", fr._replace(locked=True, swapin=0))
    k.mmap_read_unlock()
    return Goto("collapse.huge", fr)


@step("collapse.swapin")
def collapse_huge_page_swapin(k, fr: CollapseFrame, op):
    """__collapse_huge_page_swapin() (mmap_lock held for read): do_swap_page()
    on each swap pte of the range (a read fault), then lru_add_drain() "to
    remove extra pin on the swapped in pages" and mmap_read_unlock().  A
    fault that fails (VM_FAULT_ERROR) fails the collapse (SCAN_FAIL)."""
    if k.ret == VM_FAULT_SIGSEGV:
        k.mmap_read_unlock()
        return _collapse_out(k, fr._replace(locked=False), SCAN_FAIL, op)
    N = k.HPAGE_PMD_NR
    base = fr.hidx * N
    for i in range(fr.swapin, N):
        pte = k.pte(base + i)
        if pte is not None and pte.kind in (PTE_SWAP, PTE_MIGRATION):
            return enter_fault(fr._replace(swapin=i + 1), base + i, write=False, unshare=False,
                               then="collapse.swapin", mm_locked=True)
    lru.lru_add_drain(k)
    k.mmap_read_unlock()
    return Goto("collapse.huge", fr._replace(locked=False, swapin=0))


@step("collapse.huge")
def collapse_huge_page(k, fr: CollapseFrame, op):
    """collapse_huge_page() from mmap_write_lock to mmap_write_unlock (see
    the module docstring: one step, as no path of the model can run in
    between): revalidate, check_pmd_still_valid(), pmdp_collapse_flush() and
    tlb_remove_table_sync_one() (not enabled while any other CPU runs
    gup-fast with IRQs off: the IPI goes to every CPU), __collapse_huge_page_isolate(), then on success
    __collapse_huge_page_copy() and the PMD: folio_add_new_anon_rmap(
    RMAP_EXCLUSIVE), folio_add_lru_vma(), set_pmd_at(); on failure the page
    table is restored (pmd_populate()) untouched."""
    k.mmap_write_lock()
    r = _revalidate(k, fr)
    if r != SCAN_SUCCEED:
        k.mmap_write_unlock()
        return _collapse_out(k, fr, r, op)
    if any(th.irqs_off for t, th in enumerate(k.threads) if t != k.tid):
        # tlb_remove_table_sync_one() IPIs every CPU and waits: a CPU in gup-fast (IRQs off) answers when done
        raise Blocked("tlb_remove_table_sync_one(): the IPI waits for gup-fast with IRQs off")
    k.pte_lock()
    r, folios = __collapse_huge_page_isolate(k, fr)
    if r != SCAN_SUCCEED:
        k.pte_unlock()
        k.mmap_write_unlock()
        return _collapse_out(k, fr, r, op)
    olds = __collapse_huge_page_copy(k, fr)
    base = fr.hidx * k.HPAGE_PMD_NR
    # the new THP: folio_add_new_anon_rmap(RMAP_EXCLUSIVE), on the LRU, mapped by the PMD
    pfn = fr.hpage
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(entire_mapcount=1, flags=(f.flags | PG_anon) & ~PG_locked,
                               anon_exclusive=(bool(k.design.anon_exclusive),) * f.nr)
    lru.folio_add_lru_large(k, pfn)         # folio_add_lru_vma(): a large folio takes the local batch along
    k.ref_to_mapping(pfn)
    vma = k.find_vma(base)
    k.set_pmd_at(fr.hidx, Pmd(pfn, write=bool(vma.flags & VM_WRITE), dirty=True))
    k.effect(CollapsePmd(k.mm, fr.hidx, pfn, olds))
    k.pte_unlock()
    k.mmap_write_unlock()
    return _collapse_out(k, fr, SCAN_SUCCEED, op, done=True)


def _collapse_out(k, fr: CollapseFrame, r: int, op, done: bool = False):
    """collapse_huge_page()'s out_nolock: the new THP is put unless it was
    mapped; mmap_lock is not held.  Then madvise_collapse() handles the result."""
    if fr.hpage is not None and not done:
        k.drop_ref(k.my_tmp_ref(fr.hpage))
    return _handle_result(k, fr._replace(hpage=None, locked=False, unmapped=0), r, op)


def _handle_result(k, fr: CollapseFrame, r: int, op):
    """madvise_collapse()'s handle_result: SCAN_SUCCEED or SCAN_PMD_MAPPED
    count a THP; the whitelisted failures go on to the next PMD; any other
    ends the range (out_maybelock)."""
    if r in (SCAN_SUCCEED, SCAN_PMD_MAPPED):
        fr = fr._replace(thps=fr.thps + 1)
    elif r in _CONTINUE:
        fr = fr._replace(last_fail=r)
    else:
        return _vma_done(k, fr._replace(last_fail=r), op)
    fr = fr._replace(hidx=fr.hidx + 1)
    if fr.hidx >= fr.hend:
        return _vma_done(k, fr, op)
    return Goto("collapse.scan", fr)


def _vma_done(k, fr: CollapseFrame, op):
    """The end of madvise_collapse() for one VMA (out_maybelock: mmap_lock
    taken again if a collapse dropped it): 0 if every PMD was collapsed,
    else madvise_collapse_errno(last_fail); madvise_walk_vmas() stops at the
    first error, or goes on with the next VMA of the range; do_madvise()
    then returns, -ENOMEM if the range had a hole (unmapped_error).
    khugepaged reports nothing."""
    if not fr.locked:
        k.mmap_read_lock()
    if fr.khugepaged:
        k.mmap_read_unlock()
        return None
    start, n = op["addr"], op.get("pages", 1)
    err = 0 if fr.thps == fr.hend - fr.hstart else madvise_collapse_errno(fr.last_fail)
    if not err:
        return _next_vma(k, fr.pos, start, start + n, op)
    k.mmap_read_unlock()
    k.effect(Error("madvise(MADV_COLLAPSE)", k.mm, start, err))
    return None


def _next_vma(k, pos: int, start: int, end: int, op, hole: bool = False):
    """madvise_walk_vmas() for MADV_COLLAPSE: the next VMA of [pos, end)
    (mmap_lock held for read); a VMA that allows no THP is -EINVAL
    (madvise_collapse(): thp_vma_allowable_order()); the PMD-aligned part of
    each VMA's range is collapsed.  A hole in the range makes the call
    return -ENOMEM once the rest is done."""
    N = k.HPAGE_PMD_NR
    while pos < end:
        vma = k.find_vma(pos)
        if vma is None:
            nxt = min((v.start for v in k.mmv().vmas if v.start > pos), default=end)
            pos, hole = min(nxt, end), True
            continue
        if not _thp_vma_allowable(k, vma, False):
            k.mmap_read_unlock()
            k.effect(Error("madvise(MADV_COLLAPSE)", k.mm, start, EINVAL))
            return None
        lo, hi = max(pos, vma.start), min(end, vma.end)
        hstart, hend = -(-lo // N), hi // N
        if hstart < hend:
            return Goto("collapse.scan", CollapseFrame(hstart, hend, pos=hi, hstart=hstart, locked=True))
        pos = hi
    k.mmap_read_unlock()
    if hole:
        k.effect(Error("madvise(MADV_COLLAPSE)", k.mm, start, ENOMEM))
    return None


def madvise_collapse(k, op):
    """do_madvise(MADV_COLLAPSE): -EINVAL before 6.1 (madvise_behavior_valid()
    knows no such advice: the design's ``madv_collapse``); from 6.1 under
    mmap_read_lock (madvise_need_mmap_write() is false for it):
    lru_add_drain_all(), then each VMA of the range (``_next_vma``)."""
    start, n = op["addr"], op.get("pages", 1)
    if not k.design.madv_collapse:
        k.effect(Error("madvise(MADV_COLLAPSE)", k.mm, start, EINVAL))
        return None
    k.mmap_read_lock()
    lru.lru_add_drain_all(k)
    return _next_vma(k, start, start, start + n, op)


@step("khugepaged")
def khugepaged_scan(k, fr, op):
    """khugepaged_do_scan() (lru_add_drain_all()) -> khugepaged_scan_mm_slot()
    reaching the PMD range of ``addr`` in this mm: mmap_read_lock, the VMA
    must allow a THP with the sysfs settings (VM_HUGEPAGE: enabled=madvise)
    and cover the aligned range, then hpage_collapse_scan_pmd() with
    cc->is_khugepaged (5.7 .. 6.18; khugepaged_scan_pmd() before 6.1)."""
    k.mmap_read_lock()
    lru.lru_add_drain_all(k)
    h = op["addr"] // k.HPAGE_PMD_NR
    fr = CollapseFrame(h, h + 1, khugepaged=True, hstart=h)
    if hugepage_vma_revalidate(k, h, True, expect_anon=False) != SCAN_SUCCEED:
        k.mmap_read_unlock()
        return None
    return Goto("collapse.scan", fr)


_op("khugepaged", "khugepaged", "khugepaged_scan_mm_slot() (the khugepaged thread)", ("addr",),
    "khugepaged scans the PMD range of addr and collapses it into a THP if it can")
