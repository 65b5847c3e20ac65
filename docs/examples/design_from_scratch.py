"""A design written against the declared interface alone (docs/designs.md):
it subclasses ``Design`` directly and answers every question the way
linux-5.19 does (PageAnonExclusive; the 5.18 page_count rules where a page
is not exclusive), without inheriting from any built-in design.
tests/designs/test_interface.py runs the whole catalog under it and checks
it agrees with the built-in linux-5.19 on every case.

    cowlab matrix --design docs/examples/design_from_scratch.py
"""
from dataclasses import dataclass

from cowlab.designs import COPY, REUSE, SHARE, SPLIT, Design, MigrateUnmapResult, UnmapResult
from cowlab.kernel.mm import rmap
from cowlab.kernel.mm.swap import lru_add_drain
from cowlab.kernel.mm.swapfile import swap_free, try_to_free_swap
from cowlab.kernel.types import (
    FOLL_PIN,
    FOLL_WRITE,
    SWP_MIGRATION_READ,
    SWP_MIGRATION_READ_EXCLUSIVE,
    SWP_MIGRATION_WRITE,
    ZERO_PFN,
)


@dataclass
class FromScratch(Design):
    name: str = "from-scratch-5.19"
    kernel: str = "v5.19, written from the interface"
    summary: str = "linux-5.19's rules, written against cowlab.designs.Design only"
    # static facts
    anon_exclusive: bool = True            # 6c287605fd56
    write_protect_seq: bool = True         # 57efa1fe5957 (5.11)
    frees_swapcache_after_cow: bool = True  # f4c4a3f48480 (5.14)
    thp_split_page_lock: bool = True       # c444eb564fb1
    fork_cow_pinned: bool = True           # 70e806e4e645 (read by Design.copy_huge_anon)
    fork_cow_pinned_hugetlb: bool = True   # 4eae4efa2c29

    # GUP: R/O FOLL_PIN unshares a page that is not exclusive (a7f226604170)
    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        if (gup_flags & (FOLL_WRITE | FOLL_PIN)) != FOLL_PIN:
            return False
        if pfn == ZERO_PFN or not k.PageAnon(pfn):
            return False
        return not k.PageAnonExclusive(pfn, idx)

    # write faults
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageAnonExclusive(pfn, vmf.idx):
            return REUSE
        if k.PageKsm(pfn) or k.page_count(pfn) > 3:
            return COPY
        if not k.PageLRU(pfn):
            lru_add_drain(k)
        if k.page_count(pfn) > 1 + k.PageSwapCache(pfn):
            return COPY
        if not k.trylock_page(pfn):
            return COPY
        if k.PageSwapCache(pfn):
            try_to_free_swap(k, pfn)
        if k.PageKsm(pfn) or k.page_count(pfn) != 1:
            k.unlock_page(pfn)
            return COPY
        k.unlock_page(pfn)
        k.SetPageAnonExclusive(pfn, vmf.idx)     # page_move_anon_rmap()
        return REUSE

    def huge_pmd_wp(self, k, vmf):
        pfn = vmf.pfn
        if k.PageAnonExclusive(pfn, 0):
            return REUSE
        if not k.trylock_page(pfn):
            return SPLIT
        if k.page_count(pfn) > 1 + k.PageSwapCache(pfn) * k.folio(pfn).nr:
            k.unlock_page(pfn)
            return SPLIT
        if k.PageSwapCache(pfn):
            try_to_free_swap(k, pfn)
        reuse = k.page_count(pfn) == 1
        k.unlock_page(pfn)
        return REUSE if reuse else SPLIT

    def hugetlb_wp_reuse(self, k, vmf):
        return k.PageAnonExclusive(vmf.pfn, 0) or super().hugetlb_wp_reuse(k, vmf)

    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        pfn = vmf.pfn
        exclusive = not k.PageKsm(pfn) and (swp_excl or fresh)
        swap_free(k, slot)
        if k.PageSwapCache(pfn) and vmf.write and not k.PageKsm(pfn) and k.page_count(pfn) == 2:
            try_to_free_swap(k, pfn)             # should_try_to_free_swap()
        return not k.PageKsm(pfn) and (exclusive or k.page_count(pfn) == 1)

    # fork: page_try_dup_anon_rmap() fails for a maybe-pinned exclusive page
    def copy_present_anon(self, k, src_mm, addr, pfn, idx):
        if rmap.page_try_dup_anon_rmap(k, pfn, idx, src_mm):
            return COPY
        return SHARE

    # reclaim, KSM, migration, soft-dirty
    def may_add_to_swap(self, k, pfn):
        return k.PageSwapCache(pfn) or not k.folio_maybe_dma_pinned(pfn)

    def clear_refs_skip(self, k, mm, pfn):
        return k.mm_has_pinned(mm) and k.folio_maybe_dma_pinned(pfn)

    def try_to_unmap_anon(self, k, pfn, idx):
        excl = k.PageAnonExclusive(pfn, idx)
        if excl and rmap.page_try_share_anon_rmap(k, pfn, idx):
            return UnmapResult(ok=False, exclusive=False)
        return UnmapResult(ok=True, exclusive=excl)

    def ksm_may_merge(self, k, pfn, idx, swapped):
        if k.page_mapcount(pfn, idx) + 1 + swapped != k.page_count(pfn):
            return False
        return not (k.PageAnonExclusive(pfn, idx) and rmap.page_try_share_anon_rmap(k, pfn, idx))

    def migrate_try_unmap(self, k, pfn, idx, pte):
        excl = k.PageAnonExclusive(pfn, idx)
        if excl and rmap.page_try_share_anon_rmap(k, pfn, idx):
            return MigrateUnmapResult(ok=False, entry=SWP_MIGRATION_READ)
        if pte.write:
            return MigrateUnmapResult(ok=True, entry=SWP_MIGRATION_WRITE)
        return MigrateUnmapResult(ok=True, entry=SWP_MIGRATION_READ_EXCLUSIVE if excl else SWP_MIGRATION_READ)

    def migration_restore_exclusive(self, typ):
        return typ in (SWP_MIGRATION_WRITE, SWP_MIGRATION_READ_EXCLUSIVE)
