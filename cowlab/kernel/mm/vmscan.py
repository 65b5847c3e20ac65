"""mm/vmscan.c shrink_page_list() (shrink_folio_list() 6.x) for one anon
page, as reached from MADV_PAGEOUT (mm/madvise.c madvise_pageout():
lru_add_drain(), then isolate pages mapped only by this process) or from
background reclaim.

Steps: ``reclaim.isolate`` (isolate_lru_page(): +1 ref, PG_lru cleared),
``reclaim.lock`` (trylock_page), ``reclaim.add_to_swap`` (add_to_swap();
5.11+ skips maybe-pinned pages, feb889fb40fa), ``reclaim.unmap``
(try_to_unmap(): every mapping becomes a swap pte, under each mm's PT lock;
5.19+ page_try_share_anon_rmap() refuses pinned pages and the swp pte keeps
the exclusive bit), ``reclaim.pageout`` (write to the device) and
``reclaim.free`` (__remove_mapping(): freeze the refcount at isolation +
swap cache; any other reference keeps the page in the swap cache).

Large folios (the design's ``swapout_large_unsplit``): a PMD-mapped THP the
range covers goes to shrink_folio_list() whole and keeps its PMD until
try_to_unmap() splits it (TTU_SPLIT_HUGE_PMD), in every version
(CONFIG_THP_SWAP on x86-64 since 4.13/4.14, 38d8b4e6bdc8 / bd4c82c22c36).  A
PTE-mapped large folio is split first -- by the madvise walk and, failing that,
by shrink_folio_list() (``!folio_entire_mapcount()``) -- until 6.9; from 6.10
(5ed890ce5147, 845982eb264b) it is swapped out whole unless the range maps only
part of it or it is partially mapped.  Its swap entries are one aligned run
(folio_alloc_swap()); fork duplicates each (swap count 2, the parent's swp ptes
lose the exclusive bit) and a swap-in then goes through the swap cache, one
small folio per entry, as for any entry whose count is above 1.
"""
from __future__ import annotations

from typing import NamedTuple

from ..paths import step, op, Goto, Pfn
from ..types import ZERO_PFN, PG_lru, PG_dirty, VM_HUGETLB
from ..effects import Error
from ..txn import Blocked
from . import rmap, swapfile, swap as lru, huge_memory


class ReclaimFrame(NamedTuple):
    """shrink_folio_list()'s locals: the isolated folio, and the folios of
    the list still to reclaim after it (reclaim_pages() of what the
    madvise walk isolated)."""
    page: Pfn
    todo: tuple[Pfn, ...] = ()


def _next_folio(k, fr):
    """reclaim_pages(): on to the next isolated folio, or (the list done) mmap_read_unlock()."""
    if fr.todo:
        return Goto("reclaim.lock", ReclaimFrame(fr.todo[0], fr.todo[1:]))
    k.mmap_read_unlock()
    return None


@step("reclaim.isolate")
def madvise_pageout(k, fr, op):
    """madvise_pageout() -> madvise_cold_or_pageout_pte_range(): drain the
    local lru_add batch, then per vma of the range (madvise_walk_vmas()) and
    per PMD of it (walk_page_range()'s pmd_entry):

    * a PMD-mapped THP: left when shared ("Do not interfere with other
      mappings of this folio": page_mapcount(head) != 1 before 6.10,
      folio_likely_mapped_shared() / folio_maybe_mapped_shared() after) or
      the huge zero page; one the range does not cover is split
      (split_folio()) and its ptes walked; one it covers is isolated whole,
      its PMD left for try_to_unmap();
    * a pte of a large folio, from 6.10 (``swapout_large_unsplit``; Ryan
      Roberts' "mm: madvise: avoid split during MADV_PAGEOUT and MADV_COLD"):
      split only when the range maps part of it (madvise_folio_pte_batch()
      shorter than the folio) and it is not maybe-mapped-shared, skipping its
      ptes if it is or the split fails; a fully mapped one is isolated whole
      when folio_mapcount() is its number of pages;
    * before 6.10: every large folio met is split (folio_trylock(),
      split_folio(), the pte looked at again), and the walk of that PMD stops
      ("break") at one that is shared (page_mapcount(page) != 1 of the pte's
      subpage 5.4 .. 6.1; folio_estimated_sharers(), the first subpage's
      mapcount, 6.5 .. 6.9: the design's ``pageout_sharers_head``), not
      trylocked or not split;
    * a small folio is isolated when on the LRU and mapped once."""
    k.mmap_read_lock()
    vma = k.find_vma(op["addr"])
    if vma is not None and vma.flags & VM_HUGETLB:
        # madvise_behavior_valid()/can_madv_lru_vma(): MADV_PAGEOUT on a hugetlb vma is -EINVAL
        k.effect(Error("madvise(MADV_PAGEOUT)", k.mm, op["addr"], 22))     # EINVAL
        k.mmap_read_unlock()
        return None
    lru.lru_add_drain(k)
    lo, hi = op["addr"], op["addr"] + op.get("pages", 1)
    shared_ok = op.get("shared_ok")
    isolated = []
    pmd = k.pmd(lo // k.HPAGE_PMD_NR)
    if pmd is not None:
        # madvise_cold_or_pageout_pte_range() on a PMD: the huge zero page is left; a THP goes to
        # shrink_folio_list() whole, which gives up on one it cannot split (can_split_folio(), the
        # isolation's reference its caller_pins: not taken yet here, so 0) and leaves the PMD as it is
        base = lo // k.HPAGE_PMD_NR * k.HPAGE_PMD_NR
        if k.is_huge_zero_pfn(pmd.pfn) or (k.PageAnon(pmd.pfn) and not k.PageSwapCache(pmd.pfn)
                                           and not huge_memory.can_split_folio(k, pmd.pfn, 0)):
            k.mmap_read_unlock()
            return None
        if not shared_ok and _pmd_folio_shared(k, pmd.pfn):
            k.mmap_read_unlock()
            return None
        if lo > base or hi < base + k.HPAGE_PMD_NR:
            # a range that does not cover the PMD: split_folio(), then on to the ptes ("goto regular_folio");
            # a split that fails leaves the PMD
            if shared_ok or not _split_for_pageout(k, pmd.pfn):
                k.mmap_read_unlock()
                return None
        else:
            # the whole PMD: folio_isolate_lru() (reclaim_pages() after the walk); try_to_unmap() splits the PMD
            # mapping.  (The walk goes on over the rest of the range: the ptes skip the PMD's pages.)
            if k.PageLRU(pmd.pfn):
                k.clear_flag(pmd.pfn, PG_lru)
                k.add_ref("isolate", pmd.pfn, owner=f"t{k.tid}")
                isolated.append(pmd.pfn)
    here = _ptes_here(k)         # pfn -> ptes of this mm mapping it
    unsplit = k.design.swapout_large_unsplit
    for vma in k.mmv().vmas:
        # madvise_walk_vmas(): each vma's part of the range on its own
        a, end = max(lo, vma.start), min(hi, vma.end)
        while a < end:
            nr = _folio_pte_batch(k, a, end)
            pte = k.pte(a)
            if nr and not unsplit and not shared_ok:
                # before 6.10: split every large folio met; "break" out of this PMD's ptes where it cannot
                # (background reclaim, ``shared_ok``, has no walk: shrink_folio_list() splits it)
                if (k.page_mapcount(pte.pfn, 0 if k.design.pageout_sharers_head else pte.idx) == 1) \
                        and _split_for_pageout(k, pte.pfn):
                    here = _ptes_here(k)
                    continue
                a = min(end, (a // k.HPAGE_PMD_NR + 1) * k.HPAGE_PMD_NR)
                continue
            if nr and nr < k.folio(pte.pfn).nr and not shared_ok:
                # a large folio the range does not fully map: split it unless another mm maps it; then look
                # at the pte again (now a small folio's, or the zero page's); a failed split skips its ptes
                if not k.folio_maybe_mapped_shared(pte.pfn) and _split_for_pageout(k, pte.pfn):
                    here = _ptes_here(k)
                    continue
                a += nr
                continue
            pfn = _pageout_candidate(k, a, shared_ok, isolated, here)
            if pfn is not None:
                k.clear_flag(pfn, PG_lru)
                k.add_ref("isolate", pfn, owner=f"t{k.tid}")
                isolated.append(pfn)
            a += max(nr, 1)
    if not isolated:
        k.mmap_read_unlock()
        return None
    return Goto("reclaim.lock", ReclaimFrame(isolated[0], tuple(isolated[1:])))


def _ptes_here(k) -> dict:
    """pfn -> how many present ptes of this mm map it."""
    here: dict = {}
    for p in k.mmv().ptes:
        if k.is_present(p):
            here[p.pfn] = here.get(p.pfn, 0) + 1
    return here


def _pmd_folio_shared(k, pfn) -> bool:
    """madvise_cold_or_pageout_pte_range()'s test of a PMD-mapped THP:
    page_mapcount(head) != 1 (5.4 .. 6.1; 6.2 .. 6.4 folio_mapcount(),
    6.5 folio_estimated_sharers(): the head's mapcount again), then
    folio_likely_mapped_shared() (6.9) and folio_maybe_mapped_shared()
    (6.15), which the model answers from the page tables."""
    if k.design.swapout_large_unsplit:
        return k.folio_maybe_mapped_shared(pfn)
    return k.page_mapcount(pfn, 0) != 1


def _folio_pte_batch(k, a, end) -> int:
    """madvise_folio_pte_batch() (folio_pte_batch()): how many ptes from
    ``a`` (before ``end``) map consecutive subpages of the large anon folio
    mapped at ``a`` -- the write, dirty and soft-dirty bits are not compared
    -- or 0 when ``a`` maps no large folio."""
    pte = k.pte(a)
    if k.pmd(a // k.HPAGE_PMD_NR) is not None or not k.is_present(pte) or pte.pfn == ZERO_PFN \
            or not k.folio_test_large(pte.pfn):
        return 0
    nr = 1
    while a + nr < end and nr < k.folio(pte.pfn).nr - pte.idx:
        p = k.pte(a + nr)
        if not k.is_present(p) or p.pfn != pte.pfn or p.idx != pte.idx + nr:
            break
        nr += 1
    return nr


def _split_for_pageout(k, pfn) -> bool:
    """madvise_cold_or_pageout_pte_range(): folio_trylock(), folio_get(),
    split_folio(), folio_unlock(), folio_put() (the PT lock dropped around
    it); True when the folio was split."""
    if not k.trylock_page(pfn):
        return False
    r = k.add_ref("tmp", pfn)
    ok = huge_memory.split_folio(k, pfn)
    k.unlock_page(pfn)
    k.drop_ref(r)            # (the head keeps the pfn and the caller's reference: it is freed here if unmapped)
    return ok


def _pageout_candidate(k, a, shared_ok, isolated, here):
    """madvise_cold_or_pageout_pte_range(), the pte at ``a`` of the range:
    the anon folio to isolate there, or None -- not present, the zero page,
    already taken, not on the LRU, or mapped by others: a small folio whose
    mapcount is not 1; a large one (the range maps all of it here: one it
    maps only part of was split first, 6.10+, see madvise_pageout) whose
    folio_mapcount() is not its number of pages."""
    pte = k.pte(a)
    if k.pmd(a // k.HPAGE_PMD_NR) is not None or not k.is_present(pte) or pte.pfn == ZERO_PFN \
            or not k.PageAnon(pte.pfn) or pte.pfn in isolated or not k.PageLRU(pte.pfn):
        return None
    pfn = pte.pfn
    if shared_ok:
        return pfn
    if not k.folio_test_large(pfn):
        return pfn if k.page_mapcount(pfn, pte.idx) == 1 else None
    f = k.folio(pfn)
    if here.get(pfn, 0) < f.nr:
        return None if k.folio_maybe_mapped_shared(pfn) else pfn
    return pfn if k.total_mapcount(pfn) == f.nr else None


def _putback(k, fr, locked=True) -> None:
    """putback_lru_page(): back on the LRU, drop the isolation reference."""
    pfn = fr.page
    if locked:
        k.unlock_page(pfn)
    k.set_flag(pfn, PG_lru)
    k.drop_ref(next(r for r in k.refs_held_by(f"t{k.tid}") if r.kind == "isolate" and r.pfn == pfn))


@step("reclaim.lock")
def reclaim_trylock(k, fr, op):
    if not k.trylock_page(fr.page):
        _putback(k, fr, locked=False)
        return _next_folio(k, fr)
    return Goto("reclaim.add_to_swap", fr)


@step("reclaim.add_to_swap")
def reclaim_add_to_swap(k, fr, op):
    """shrink_folio_list() -> add_to_swap() / folio_alloc_swap(): a large
    folio that cannot be split is skipped (can_split_folio(), "activate_locked");
    one the version splits first (``_split_before_swap``) is split onto the
    list (split_folio_to_list(): the tails are reclaimed next, each a small
    folio); then the design decides whether a maybe-pinned folio may go to
    the swap cache, and its swap entries (one aligned run for a large folio:
    a swap cluster for a PMD-size one, CONFIG_THP_SWAP; any order from 6.10,
    845982eb264b) are allocated and the folio added to the swap cache."""
    pfn = fr.page
    if not k.PageSwapCache(pfn):
        if k.folio_test_large(pfn) and not huge_memory.can_split_folio(k, pfn, 1):
            # shrink_folio_list(): "cannot split folio, skip it" (activate_locked; the isolation is the caller's pin)
            _putback(k, fr)
            return _next_folio(k, fr)
        if k.folio_test_large(pfn) and _split_before_swap(k, pfn):
            tails = split_folio_to_list(k, pfn)
            if tails is None:
                _putback(k, fr)
                return _next_folio(k, fr)
            fr = fr._replace(todo=tails + fr.todo)
        if not k.design.may_add_to_swap(k, pfn):
            _putback(k, fr)
            return _next_folio(k, fr)
        swapfile.folio_alloc_swap(k, pfn)
        k.set_flag(pfn, PG_dirty)
    return Goto("reclaim.unmap", fr)


def _split_before_swap(k, pfn) -> bool:
    """shrink_folio_list(), a large anon folio not yet in the swap cache:
    before 6.10 "Split folios without a PMD map right away"
    (``!folio_entire_mapcount(folio)``: every PTE-mapped large folio; and an
    order below PMD, which could get no swap entries before 845982eb264b,
    falls back to small pages the same way); from 6.10 (5ed890ce5147) "Split
    partially mapped folios right away" (on the deferred split list; 6.12's
    folio_test_partially_mapped(), 8422acdc97ed): some subpage unmapped while
    another is mapped."""
    f = k.folio(pfn)
    if not k.design.swapout_large_unsplit:
        return f.entire_mapcount == 0 or f.nr != k.HPAGE_PMD_NR
    return f.entire_mapcount == 0 and any(m == 0 for m in f.mapcount) and any(m > 0 for m in f.mapcount)


def split_folio_to_list(k, pfn):
    """split_folio_to_list(folio, folio_list) from shrink_folio_list() (page
    lock and the isolation's reference held): the tails go on the list being
    reclaimed, each with a reference of its own (lru_add_split_folio()'s
    folio_get() + list_add_tail(); not on the LRU, unlocked); the head stays
    locked and goes on.  The tails (pfns, in the order the list hands them
    out: lru_to_folio() takes the last) or None when the split failed."""
    before = {i for i, f in enumerate(k.folios) if f is not None}
    if not huge_memory.split_folio(k, pfn):
        return None
    tails = [i for i, f in enumerate(k.folios) if f is not None and i not in before]
    for p in tails:
        k.add_ref("isolate", p, owner=f"t{k.tid}")
    return tuple(reversed(tails))


@step("reclaim.unmap")
def try_to_unmap(k, fr, op):
    """try_to_unmap(TTU_SPLIT_HUGE_PMD) -> try_to_unmap_one() for every
    mapping of the folio (rmap walk; each mm's PT lock): a PMD mapping is
    split first (split_huge_pmd_address(), the folio locked); then per pte:
    clear it, ask the design (5.19+: page_try_share_anon_rmap() fails for
    pinned pages -> restore the pte and give up), install the swap pte
    (exclusive bit 5.19+), swap_duplicate(), page_remove_rmap(), put_page()."""
    pfn = fr.page
    pmds = k.rmap_walk_pmds(pfn)
    for mm, _ in pmds:
        if k.mms[mm].ptl != -1:
            raise Blocked("page-table lock held")
    for mm, h in pmds:
        huge_memory.__split_huge_pmd_locked(k, mm, h)
    maps = k.rmap_walk_ptes(pfn)
    for mm in {mm for mm, _, _ in maps}:
        if k.mms[mm].ptl != -1:
            raise Blocked("page-table lock held")
    for mm, a, p in maps:
        ok, excl = k.design.try_to_unmap_anon(k, pfn, p.idx)
        if not ok:
            continue
        slot = k.folio(pfn).swap[p.idx]
        k.set_pte_at(a, k.swp_pte(slot, excl), mm)
        swapfile.swap_duplicate(k, slot)
        rmap.page_remove_rmap(k, pfn, p.idx)
        k.put_page(pfn)
        if p.dirty:
            k.set_flag(pfn, PG_dirty)
    if k.total_mapcount(pfn) > 0:
        _putback(k, fr)
        return _next_folio(k, fr)
    return Goto("reclaim.pageout", fr)


@step("reclaim.pageout")
def reclaim_pageout(k, fr, op):
    """pageout() -> swap_writepage(): the device now holds the data
    (writeback modelled as completing at once)."""
    pfn = fr.page
    f = k.folio(pfn)
    for i, slot in enumerate(f.swap):
        k.set_slot(slot, data=f.data[i])
    k.clear_flag(pfn, PG_dirty)
    return Goto("reclaim.free", fr)


@step("reclaim.free")
def remove_mapping(k, fr, op):
    """__remove_mapping(): folio_ref_freeze(1 + nr) succeeds only if the
    isolation and the swap cache hold the only references and the page was
    not dirtied again since it was written (e.g. by DMA through a GUP
    reference); then the page leaves the swap cache and is freed.  Otherwise
    it stays (unmapped) in the swap cache and goes back to the LRU."""
    pfn = fr.page
    f = k.folio(pfn)
    if f.refcount == 1 + f.nr and k.total_mapcount(pfn) == 0 and not f.flags & PG_dirty:
        k.unlock_page(pfn)
        iso = next(r for r in k.refs_held_by(f"t{k.tid}") if r.kind == "isolate" and r.pfn == pfn)
        swapfile.delete_from_swap_cache(k, pfn)
        k.drop_ref(iso)
        return _next_folio(k, fr)
    _putback(k, fr)
    return _next_folio(k, fr)


@step("swapcache.free")
def free_swap_cache_op(k, fr, op):
    """A background path dropping an idle swap cache page (e.g. reclaim
    finding it unmapped, or swap being full: try_to_free_swap() under
    trylock_page)."""
    for s in list(k.swap):
        if s is not None and s.cache >= 0 and s.count == 0 and k.folios[s.cache] is not None:
            pfn = s.cache
            if k.trylock_page(pfn):
                swapfile.try_to_free_swap(k, pfn)
                if k.folios[pfn] is not None:
                    k.unlock_page(pfn)
    return None


op("pageout", "reclaim.isolate", "madvise(MADV_PAGEOUT) -> reclaim_pages()", ("addr", "pages", "shared_ok"),
   "swap out the folios of the range (``pages`` long): a PMD-mapped THP it covers as one unit; a PTE-mapped large "
   "folio split first before 6.10, whole from 6.10 unless the range covers part of it")
op("free_swapcache", "swapcache.free", "try_to_free_swap()", (), "drop idle swap-cache pages")
