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
    todo: tuple = ()


def _next_folio(k, fr):
    """reclaim_pages(): on to the next isolated folio, or (the list done) mmap_read_unlock()."""
    if fr.todo:
        return Goto("reclaim.lock", ReclaimFrame(fr.todo[0], fr.todo[1:]))
    k.mmap_read_unlock()
    return None


@step("reclaim.isolate")
def madvise_pageout(k, fr, op):
    """madvise_pageout() -> madvise_cold_or_pageout_pte_range(): drain the
    local lru_add batch, then per vma of the range (madvise_walk_vmas())
    skip pages mapped by more than this process (page_mapcount() != 1),
    isolate_lru_page().  A large folio the vma's part of the range does not
    fully map (madvise_folio_pte_batch() shorter than the folio), or a PMD
    it does not cover, is split first (split_folio(), unless
    folio_maybe_mapped_shared()), and the walk looks at its ptes again.
    That is 6.10+ (Ryan Roberts' "avoid split during MADV_PAGEOUT and
    MADV_COLD"); 5.7 .. 6.9 split every pte-mapped large folio it meets,
    which the model does not (a fully mapped one is reclaimed whole here:
    the same pages end in swap, as one folio instead of small ones)."""
    k.mmap_read_lock()
    vma = k.find_vma(op["addr"])
    if vma is not None and vma.flags & VM_HUGETLB:
        # madvise_behavior_valid()/can_madv_lru_vma(): MADV_PAGEOUT on a hugetlb vma is -EINVAL
        k.effect(Error("madvise(MADV_PAGEOUT)", k.mm, op["addr"], 22))     # EINVAL
        k.mmap_read_unlock()
        return None
    lru.lru_add_drain(k)
    lo, hi = op["addr"], op["addr"] + op.get("pages", 1)
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
        if lo > base or hi < base + k.HPAGE_PMD_NR:
            # a range that does not cover the PMD: split_folio() (a folio mapped by another mm is left), then
            # on to the ptes ("goto regular_folio"); a split that fails leaves the PMD
            if op.get("shared_ok") or k.folio_maybe_mapped_shared(pmd.pfn) or \
                    not _split_for_pageout(k, pmd.pfn):
                k.mmap_read_unlock()
                return None
        else:
            huge_memory.split_for_reclaim(k, lo)
    isolated = []
    here: dict = {}         # pfn -> ptes of this mm mapping it
    for p in k.mmv().ptes:
        if k.is_present(p):
            here[p.pfn] = here.get(p.pfn, 0) + 1
    for vma in k.mmv().vmas:
        # madvise_walk_vmas(): each vma's part of the range on its own
        a, end = max(lo, vma.start), min(hi, vma.end)
        while a < end:
            nr = _folio_pte_batch(k, a, end)
            pte = k.pte(a)
            if nr and nr < k.folio(pte.pfn).nr and not op.get("shared_ok"):
                # a large folio the range does not fully map: split it unless another mm maps it; then look
                # at the pte again (now a small folio's, or the zero page's); a failed split skips its ptes
                if not k.folio_maybe_mapped_shared(pte.pfn) and _split_for_pageout(k, pte.pfn):
                    here = {}
                    for p in k.mmv().ptes:
                        if k.is_present(p):
                            here[p.pfn] = here.get(p.pfn, 0) + 1
                    continue
                a += nr
                continue
            pfn = _pageout_candidate(k, a, op.get("shared_ok"), isolated, here)
            if pfn is not None:
                k.clear_flag(pfn, PG_lru)
                k.add_ref("isolate", pfn, owner=f"t{k.tid}")
                isolated.append(pfn)
            a += max(nr, 1)
    if not isolated:
        k.mmap_read_unlock()
        return None
    return Goto("reclaim.lock", ReclaimFrame(isolated[0], tuple(isolated[1:])))


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
    k.drop_ref(next(r for r in k.refs if r.kind == "isolate" and r.owner == f"t{k.tid}" and r.pfn == pfn))


@step("reclaim.lock")
def reclaim_trylock(k, fr, op):
    if not k.trylock_page(fr.page):
        _putback(k, fr, locked=False)
        return _next_folio(k, fr)
    return Goto("reclaim.add_to_swap", fr)


@step("reclaim.add_to_swap")
def reclaim_add_to_swap(k, fr, op):
    """add_to_swap(): allocate a slot and add the page to the swap cache
    (the design decides whether a maybe-pinned page may go there)."""
    pfn = fr.page
    if not k.PageSwapCache(pfn):
        if k.folio_test_large(pfn) and not huge_memory.can_split_folio(k, pfn, 1):
            # shrink_folio_list(): "cannot split folio, skip it" (activate_locked; the isolation is the caller's pin)
            _putback(k, fr)
            return _next_folio(k, fr)
        if not k.design.may_add_to_swap(k, pfn):
            _putback(k, fr)
            return _next_folio(k, fr)
        f = k.folio(pfn)
        for i in range(f.nr):
            slot = k.swap_alloc(f.data[i])
            swapfile.add_to_swap_cache(k, pfn, slot, i)
        k.set_flag(pfn, PG_dirty)
    return Goto("reclaim.unmap", fr)


@step("reclaim.unmap")
def try_to_unmap(k, fr, op):
    """try_to_unmap() -> try_to_unmap_one() for every pte mapping the page
    (rmap walk; each mm's PT lock): clear the pte, ask the design
    (5.19+: page_try_share_anon_rmap() fails for pinned pages -> restore the
    pte and give up), install the swap pte (exclusive bit 5.19+),
    swap_duplicate(), page_remove_rmap(), put_page()."""
    pfn = fr.page
    maps = [(mm, a, p) for mm, m in enumerate(k.mms) if m.alive
            for a, p in enumerate(m.ptes) if k.is_present(p) and p.pfn == pfn]
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
        iso = next(r for r in k.refs if r.kind == "isolate" and r.owner == f"t{k.tid}" and r.pfn == pfn)
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
   "swap out the folios of the range (``pages`` long): a THP it covers as one unit, one it covers part of split "
   "first")
op("free_swapcache", "swapcache.free", "try_to_free_swap()", (), "drop idle swap-cache pages")
