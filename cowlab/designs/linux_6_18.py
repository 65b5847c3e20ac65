"""linux-6.18: 5.19 plus
64fe24a3e05e (6.0): mprotect() maps exclusive anon ptes writable directly
(can_change_pte_writable(): VM_WRITE, soft-dirty not tracked or pte
soft-dirty, PageAnonExclusive);
84209e87c696 / 8d6a0ac09a16 (6.2): R/O long-term pins unshare non-anon pages
(the shared zeropage) in COW mappings too;
a7e689dd1c06 (6.5): O_DIRECT pins with FOLL_PIN (vmsplice stays FOLL_GET);
6.9 (Barry Song, 20240308092721.144735-1): do_wp_page never reuses a large
folio by refcount; 6.15 (MM owner tracking): a PTE-mapped large folio is
reused when all its references are mappings of this MM
(__wp_can_reuse_large_anon_folio())."""
from __future__ import annotations

from dataclasses import dataclass

from .base import REUSE, COPY
from .linux_5_19 import Linux519
from ..kernel.types import FOLL_PIN, FOLL_LONGTERM, VM_WRITE, VM_SOFTDIRTY
from ..kernel.mm.swapfile import try_to_free_swap


@dataclass
class Linux618(Linux519):
    name: str = "linux-6.18"
    kernel: str = "v6.15 .. v6.18"
    summary: str = "5.19 + mprotect maps exclusive pages writable, unshare of non-anon, O_DIRECT FOLL_PIN, mTHP reuse"
    sources: tuple = ("64fe24a3e05e mm/mprotect: try avoiding write faults for exclusive anonymous pages",
                      "84209e87c696 mm/gup: reliable R/O long-term pinning in COW mappings",
                      "a7e689dd1c06 block: Convert bio_iov_iter_get_pages to use iov_iter_extract_pages",
                      "20240308092721.144735-1-21cnbao@gmail.com mm: prohibit the last subpage from reusing the entire large folio",
                      "mm: MM owner tracking for large folios (!hugetlb) + CONFIG_NO_PAGE_MAPCOUNT (6.15)")
    unshare_non_anon: bool = True
    odirect_gup: int = FOLL_PIN

    def gup_must_unshare_non_anon(self, k, gup_flags, pfn):
        return bool(gup_flags & FOLL_LONGTERM)

    def mprotect_make_writable(self, k, vma, pte, pfn, idx):
        """can_change_pte_writable() (6.0+)."""
        if not vma.flags & VM_WRITE:
            return False
        if not vma.flags & VM_SOFTDIRTY and not pte.soft_dirty:
            return False
        return k.PageAnonExclusive(pfn, idx)

    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageAnonExclusive(pfn, vmf.idx):
            return REUSE
        if k.folio_test_large(pfn):
            return self.wp_can_reuse_large_anon_folio(k, vmf)
        return super().wp_anon(k, vmf)

    def wp_can_reuse_large_anon_folio(self, k, vmf):
        """__wp_can_reuse_large_anon_folio() (6.15)."""
        pfn = vmf.pfn
        f = k.folio(pfn)
        mapcount = sum(f.mapcount) + f.entire_mapcount
        if mapcount <= 1 or k.folio_maybe_mapped_shared(pfn) or k.PageKsm(pfn):
            return COPY
        if k.PageSwapCache(pfn):
            if not k.trylock_page(pfn):
                return COPY
            try_to_free_swap(k, pfn)
            k.unlock_page(pfn)
        if mapcount != k.page_count(pfn):
            return COPY
        k.SetPageAnonExclusive(pfn, vmf.idx)
        return REUSE


DESIGN = Linux618()
