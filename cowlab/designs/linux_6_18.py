"""linux-6.18: 6.9 (itself 5.19 + mprotect writable, non-anon unshare,
O_DIRECT FOLL_PIN, no refcount reuse of large folios) plus 1da190f4d0a6
(6.15, on 6af8cb80d3a9's MM owner tracking): a PTE-mapped large folio is
reused when it has two or more mappings, none from another MM, and no
reference beyond them (__wp_can_reuse_large_anon_folio()); and from 6.11
(c18160dba5ff) a read swap-in maps an exclusive page writable
(``swapin_read_mkwrite``), from 6.12 (b1f202060afe) a THP split maps its
all-zero subpages to the shared zero page (``thp_split_zeropage``); from 6.10
(5ed890ce5147, 845982eb264b) a PTE-mapped large folio is swapped out whole
(``swapout_large_unsplit``), from 6.12 (242d12c98174) an mTHP is swapped in
whole from zram (``swapin_large_sync_io``)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import REUSE, COPY
from .linux_6_9 import Linux69
from ..kernel.mm.swapfile import try_to_free_swap


@dataclass
class Linux618(Linux69):
    name: str = "linux-6.18"
    kernel: str = "v6.15 .. v6.18"
    summary: str = "5.19 + mprotect maps exclusive pages writable, unshare of non-anon, O_DIRECT FOLL_PIN, mTHP reuse"
    sources: tuple = Linux69.sources + ("1da190f4d0a6 mm: Copy-on-Write (COW) reuse support for PTE-mapped THP",
                                        "6af8cb80d3a9 mm/rmap: basic MM owner tracking for large folios (!hugetlb)",
                                        "1ced09e0331f mm: allocate THP on hugezeropage wp-fault",
                                        "b1f202060afe mm: remap unused subpages to shared zeropage when splitting "
                                        "isolated thp",
                                        "5ed890ce5147 mm: vmscan: avoid split during shrink_folio_list()",
                                        "845982eb264b mm: swap: allow storage of all mTHP orders",
                                        "242d12c98174 mm: support large folios swap-in for sync io devices")
    huge_zero_wp_thp: bool = True       # do_huge_zero_wp_pmd() (6.13)
    #: khugepaged/MADV_COLLAPSE without SCAN_PAGE_RO: v6.18 ("mm: Enable khugepaged to operate on non-writable
    #: VMAs", 20250903054635.19949-1-dev.jain@arm.com; live probe on 6.18.44: an all-R/O range collapses);
    #: v6.15 .. v6.17 still refused it (the design models v6.18 here)
    collapse_ro_ptes: bool = True

    def default_settings(self):
        return {}

    def __post_init__(self):
        super().__post_init__()
        self.swapin_read_mkwrite = True          # c18160dba5ff (6.11)
        self.thp_split_zeropage = True           # b1f202060afe (6.12)
        self.swapout_large_unsplit = True        # 5ed890ce5147, 845982eb264b (6.10)
        self.swapin_large_sync_io = True         # 242d12c98174 (6.12)
        self.swapin_map_large_swapcache = True   # "mm: swap: entirely map large folios found in swapcache" (6.10)

    def wp_large_anon_folio(self, k, vmf):
        return self.wp_can_reuse_large_anon_folio(k, vmf)

    def wp_can_reuse_large_anon_folio(self, k, vmf):
        """__wp_can_reuse_large_anon_folio() (6.15, 1da190f4d0a6): copy when
        folio_large_mapcount() <= 1 (free a mostly unmapped folio), when the
        folio is maybe mapped shared (FOLIO_MM_IDS_SHARED_BIT of 6af8cb80d3a9's
        two mm_id slots), after trying to free its swap cache when its
        mapcount is not its refcount; else mark the faulting page exclusive and
        reuse.  The model asks folio_maybe_mapped_shared(), which reads the page
        tables: "mapped by more than one MM".  The kernel's bit says the same
        while at most two MMs map the folio (a slot owner that unmaps its last
        page clears it when the other slot owns every mapping); a third MM
        mapping it meanwhile can leave it set after only one MM is left (a
        false "shared": a copy where the model reuses).  The catalog's mTHP
        cases never map a folio into three MMs at once (tests/catalog/
        test_mthp_cases.py checks it)."""
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
