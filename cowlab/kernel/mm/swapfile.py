"""mm/swapfile.c and mm/swap_state.c: swap slots, swap counts and the swap cache.

Versions: 5.7 .. 6.18 (folio_free_swap() and swap_cache_get_folio() are the
6.x names of try_to_free_swap() and lookup_swap_cache()); reuse_swap_page()
exists until 5.17."""
from __future__ import annotations

from ..types import PG_swapcache, PG_writeback, PG_dirty, PG_ksm, SwapSlot

#: a slot's ``cache`` while swapcache_prepare() holds SWAP_HAS_CACHE for a swap-in with no swap-cache
#: folio (-1: no SWAP_HAS_CACHE)
SWAPCACHE_PREPARED = -2


def add_to_swap_cache(k, pfn: int, slot: int, idx: int = 0) -> None:
    """add_to_swap_cache(): the swap cache holds one reference per subpage."""
    f = k.folio(pfn)
    sw = list(f.swap)
    sw[idx] = slot
    k.folios[pfn] = f._replace(swap=tuple(sw), refcount=f.refcount + 1)
    k.set_flag(pfn, PG_swapcache)          # folio_set_swapcache()
    k.set_slot(slot, cache=pfn)


def folio_alloc_swap(k, pfn: int) -> None:
    """add_to_swap() -> folio_alloc_swap() (get_swap_page() before 5.19):
    swap entries for every subpage and the folio in the swap cache.  A large
    folio gets one naturally aligned run of free entries (a whole swap
    cluster for a PMD-size THP, swap_alloc_cluster() with CONFIG_THP_SWAP;
    any order from 6.10, 845982eb264b "mm: swap: allow storage of all mTHP
    orders"); a small one the next offset of the order-0 cursor
    (k.swap_alloc).  The kernel takes a large folio's run from a cluster of
    its order, apart from the small folios' (cluster 0 holds the header at
    offset 0 and the first small ones): here the first free aligned run at or
    above one cluster (SWAPFILE_CLUSTER = HPAGE_PMD_NR with CONFIG_THP_SWAP;
    a live 6.18 probe: small folios paged out after a 64 kB one take offsets
    from 1 on, so a swap-in by them gets small pages)."""
    f = k.folio(pfn)
    if f.nr == 1:
        add_to_swap_cache(k, pfn, k.swap_alloc(f.data[0]), 0)
        return
    start = -(-max(k.HPAGE_PMD_NR, f.nr) // f.nr) * f.nr
    while any(start + i < len(k.swap) and k.swap[start + i] is not None for i in range(f.nr)):
        start += f.nr
    while len(k.swap) < start + f.nr:
        k.swap.append(None)
    for i in range(f.nr):
        k.swap[start + i] = SwapSlot(0, -1, f.data[i])
        add_to_swap_cache(k, pfn, start + i, i)


def swapcache_prepare(k, slot: int) -> None:
    """swapcache_prepare() (mm/swapfile.c; the skip-swapcache swap-in uses it
    from 13ddaf26be32, 6.8): set SWAP_HAS_CACHE on the slot without adding a
    folio to the swap cache, so the slot stays and a parallel swap-in of it
    waits.  The caller saw the slot without SWAP_HAS_CACHE."""
    k.set_slot(slot, cache=SWAPCACHE_PREPARED)


def swapcache_clear(k, slot: int) -> None:
    """swapcache_clear() (6.8+): drop swapcache_prepare()'s SWAP_HAS_CACHE;
    the slot is freed when no swap pte references it any more."""
    s = k.swap[slot]
    if s is not None and s.cache == SWAPCACHE_PREPARED:
        k.set_slot(slot, cache=-1)
        k.maybe_free_slot(slot)


def delete_from_swap_cache(k, pfn: int) -> None:
    """delete_from_swap_cache(): drop the swap cache's references; each slot
    is freed once no swap pte references it."""
    f = k.folio(pfn)
    n = 0
    for slot in f.swap:
        if slot >= 0:
            k.set_slot(slot, cache=-1)
            k.maybe_free_slot(slot)
            n += 1
    k.folios[pfn] = f._replace(swap=(-1,) * f.nr)
    k.clear_flag(pfn, PG_swapcache)        # folio_clear_swapcache()
    k.ref_put_units(pfn, n)


def swap_duplicate(k, slot: int) -> None:
    """swap_duplicate() (fork copying a swap pte): swap_map count++."""
    k.set_slot(slot, count=k.swap[slot].count + 1)


def swap_free(k, slot: int) -> None:
    """swap_free(): swap_map count--; the slot is released when no pte and no
    swap cache page reference it."""
    k.set_slot(slot, count=k.swap[slot].count - 1)
    k.maybe_free_slot(slot)


def try_to_free_swap(k, pfn: int) -> bool:
    """try_to_free_swap() (folio_free_swap() 6.x): with the page locked,
    drop the page from the swap cache when no swap pte references it any more
    and it is not under writeback."""
    f = k.folio(pfn)
    if not f.flags & PG_swapcache or f.flags & PG_writeback:
        return False
    if any(s >= 0 and k.swap[s].count > 0 for s in f.swap):
        return False
    k.set_flag(pfn, PG_dirty)          # folio_set_dirty(): the data now lives only in memory
    delete_from_swap_cache(k, pfn)
    return True


def free_swap_cache(k, pfn: int) -> None:
    """free_swap_cache(): after unmapping, if the swap cache holds the only
    other reference, try to drop it (trylock_page; f4c4a3f48480 uses it
    after COW from 5.14)."""
    if k.folios[pfn] is None:
        return
    if k.PageSwapCache(pfn) and k.total_mapcount(pfn) == 0 and k.trylock_page(pfn):
        try_to_free_swap(k, pfn)
        if k.folios[pfn] is not None:
            k.unlock_page(pfn)


def reuse_swap_page(k, pfn: int) -> bool:
    """reuse_swap_page() (mm/swapfile.c, until 5.17; removed by 5.18's COW
    fixes part 1): with the page locked, reuse when mapcount plus the swap
    count of the page's swap entry is at most 1 -- references from GUP are
    invisible to it.  When the count is 1 it also drops the page from the
    swap cache (unless under writeback) so that the write makes it exclusive."""
    f = k.folio(pfn)
    if f.flags & PG_ksm:
        return False
    # page_trans_huge_map_swapcount(): the largest per-subpage map+swap count
    count = max(m + f.entire_mapcount + (k.swap[s].count if f.flags & PG_swapcache and s >= 0 else 0)
                for m, s in zip(f.mapcount, f.swap))
    if count == 1 and f.flags & PG_swapcache and not f.flags & PG_writeback:
        k.set_flag(pfn, PG_dirty)
        delete_from_swap_cache(k, pfn)
    return count <= 1


def free_swap_and_cache(k, slot: int) -> None:
    """free_swap_and_cache() (zap of a swap pte): swap_free(), then if only
    the swap cache still references the slot, try (trylock) to reclaim the
    cached page when nothing maps it."""
    swap_free(k, slot)
    s = k.swap[slot]
    if s is not None and s.count == 0 and s.cache >= 0:
        pfn = s.cache
        if k.total_mapcount(pfn) == 0 and k.trylock_page(pfn):
            try_to_free_swap(k, pfn)
            if k.folios[pfn] is not None:
                k.unlock_page(pfn)
