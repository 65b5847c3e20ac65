"""linux-5.7: mapcount-based COW reuse (design A of the reference).

do_wp_page() (mm/memory.c v5.7): KSM pages reuse_ksm_page(); other anon
pages under the page lock (sleeping lock_page() when trylock fails) reuse
when reuse_swap_page() finds mapcount + swap count <= 1.  References from GUP
are invisible, so a R/O GUP (vmsplice) in a child that then unmaps lets the
parent reuse a page the child's pipe still reads: CVE-2020-29374 (Jann Horn,
Project Zero 2045; fixed by 17839856fd58 in 5.7.3 / 5.8).  do_swap_page and
do_huge_pmd_wp_page use reuse_swap_page() too.  Fork shares every page;
GUP takes whatever is mapped.  Versions: v5.7 .. v5.7.2.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Design, REUSE, COPY, LOCK_PAGE, SHARE, SPLIT
from ..kernel.mm import rmap
from ..kernel.mm.swapfile import reuse_swap_page
from ..kernel.mm.ksm import reuse_ksm_page


@dataclass
class Linux57(Design):
    name: str = "linux-5.7"
    huge_zero_wp_thp: bool = True       # do_huge_pmd_wp_page(): is_huge_zero_pmd() -> goto alloc
    kernel: str = "v5.7 .. v5.7.2"
    summary: str = "mapcount(+swapcount) reuse under the page lock; GUP refs invisible; fork shares all"
    sources: tuple = ("mm/memory.c do_wp_page() v5.7", "mm/swapfile.c reuse_swap_page() v5.7",
                      "CVE-2020-29374, Jann Horn, Project Zero issue 2045")

    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) and (k.PageSwapCache(pfn) or k.page_count(pfn) != 1):
            return COPY
        if not vmf.locked and not k.trylock_page(pfn):
            return LOCK_PAGE
        if k.PageKsm(pfn):
            reused = reuse_ksm_page(k, pfn)
            k.unlock_page(pfn)
            return REUSE if reused else COPY
        reuse = reuse_swap_page(k, pfn)
        k.unlock_page(pfn)
        return REUSE if reuse else COPY

    def huge_pmd_wp(self, k, vmf):
        """do_huge_pmd_wp_page(): reuse_swap_page() under the page lock, else
        fall back to the pte level (the model splits; 5.7 allocated a new THP)."""
        if not k.trylock_page(vmf.pfn):
            return SPLIT
        reuse = reuse_swap_page(k, vmf.pfn)
        k.unlock_page(vmf.pfn)
        return REUSE if reuse else SPLIT

    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        """do_swap_page(): on a write fault, reuse_swap_page() (counting this
        pte's own swap entry) decides; the entry is freed after mapping."""
        return vmf.write and reuse_swap_page(k, vmf.pfn)

    def copy_present_anon(self, k, src_mm, addr, pfn, idx):
        rmap.page_dup_rmap(k, pfn, idx)
        return SHARE


DESIGN = Linux57()
