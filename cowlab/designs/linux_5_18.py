"""linux-5.18: "mm: COW fixes part 1: fix the COW security issue for THP and
swap" (David Hildenbrand): every swappable anon COW decision is page_count based.

do_wp_page (53a05ad9f21d, d4c470970d45): KSM or page_count > 3 -> copy;
drain the local LRU batch if !PageLRU; page_count > 1 + PageSwapCache ->
copy; trylock; free the swap cache; reuse iff page_count == 1.
do_swap_page (c145e0b47c77): write-fault reuse only for a fresh page or
page_count == 1 after trying to free the swap cache.
do_huge_pmd_wp_page (3bff7e3f1f16): page_count-based, else split.
Also f4c4a3f48480 (5.14, free idle swap cache after COW) and 4eae4efa2c29
(5.12, early COW of pinned hugetlb pages at fork).  Wrong COW of pinned
pages mapped R/O remains."""
from __future__ import annotations

from dataclasses import dataclass

from .base import REUSE, COPY, SPLIT
from .linux_5_11 import Linux511
from ..kernel.mm.swap import lru_add_drain
from ..kernel.mm.swapfile import try_to_free_swap, swap_free


@dataclass
class Linux518(Linux511):
    name: str = "linux-5.18"
    kernel: str = "v5.18"
    summary: str = "page_count() for every swappable anon COW (swapin, THP); LRU drain; swapcache discount"
    sources: tuple = ("53a05ad9f21d mm: optimize do_wp_page() for exclusive pages in the swapcache",
                      "d4c470970d45 mm: optimize do_wp_page() for fresh pages in local LRU pagevecs",
                      "c145e0b47c77 mm: streamline COW logic in do_swap_page()",
                      "3bff7e3f1f16 mm/huge_memory: streamline COW logic in do_huge_pmd_wp_page()",
                      "f4c4a3f48480 mm: free idle swap cache page after COW",
                      "4eae4efa2c29 hugetlb: do early cow when page pinned on src mm")
    frees_swapcache_after_cow: bool = True
    fork_cow_pinned_hugetlb: bool = True

    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
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
        return self.reused(k, vmf)

    def reused(self, k, vmf):
        return REUSE

    def huge_pmd_wp(self, k, vmf):
        pfn = vmf.pfn
        f = k.folio(pfn)
        if not k.trylock_page(pfn):
            return SPLIT
        if k.page_count(pfn) > 1 + k.PageSwapCache(pfn) * f.nr:
            k.unlock_page(pfn)
            return SPLIT
        if k.PageSwapCache(pfn):
            try_to_free_swap(k, pfn)
        reuse = k.page_count(pfn) == 1
        k.unlock_page(pfn)
        return REUSE if reuse else SPLIT

    def should_try_to_free_swap(self, k, vmf) -> bool:
        """should_try_to_free_swap() (c145e0b47c77): swap full / mlocked are
        not modelled; a write fault tries when the swap cache and this fault
        hold the only references."""
        # (6.10's large-folio version: folio_ref_count(folio) == 1 + folio_nr_pages(folio); 2 before)
        nr = k.folio(vmf.pfn).nr if self.swapin_map_large_swapcache else 1
        return k.PageSwapCache(vmf.pfn) and vmf.write and not k.PageKsm(vmf.pfn) and k.page_count(vmf.pfn) == 1 + nr

    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        swap_free(k, slot)
        if self.should_try_to_free_swap(k, vmf):
            try_to_free_swap(k, vmf.pfn)
        return vmf.write and not k.PageKsm(vmf.pfn) and (fresh or k.page_count(vmf.pfn) == 1)


DESIGN = Linux518()
