"""linux-6.9: 6.5 plus cd197c3a2040 (6.9), Barry Song's "mm: prohibit the
last subpage from reusing the entire large folio" (20240308092721.144735-1-21cnbao@gmail.com):
wp_can_reuse_anon_folio() never reuses a large folio by its refcount, so a
write fault on a PTE-mapped large folio that is not PageAnonExclusive
always copies, until 6.15 (see linux-6.18).

It has anonymous mTHP (``anon_mthp``; 19eaf44954df, 6.8): with sizes below
the PMD size enabled (the case setting ``thp_sizes``) a write fault in a
VM_HUGEPAGE vma maps a large folio with ptes from its birth, so the write
fault after fork meets a PTE-mapped large folio -- which this release copies.

Its range straddles c18160dba5ff (6.11): from then do_swap_page() maps a
page it maps exclusive writable on a read fault too (``swapin_read_mkwrite``).
The design models v6.9/v6.10 by default; the setting ``swapin_read_mkwrite``
(``--set swapin_read_mkwrite=true``) gives v6.11 .. v6.14.  No verdict
depends on it: the page is PageAnonExclusive either way, and the later write
fault of v6.9/v6.10 reuses it (wp_anon: REUSE when exclusive).

It also straddles b1f202060afe (6.12): from then a THP split (split_folio(),
e.g. MADV_PAGEOUT of part of a THP) maps each all-zero subpage to the shared
zero page (``thp_split_zeropage``).  Off by default (v6.9 .. v6.11); v6.12
.. v6.14 are ``--set swapin_read_mkwrite=true --set thp_split_zeropage=true``
(6.13's do_huge_zero_wp_pmd(), ``huge_zero_wp_thp``, stays off: a write to
the huge zero page splits it, as in 6.12).  Only the page tables differ (a
zero-page pte instead of a private zero-filled page, which reads the same).

Large-folio swap (the settings default to v6.9):
``swapout_large_unsplit`` (6.10: 5ed890ce5147, 845982eb264b and Ryan Roberts'
"mm: madvise: avoid split during MADV_PAGEOUT and MADV_COLD") swaps a
PTE-mapped large folio out whole instead of splitting it first;
``swapin_map_large_swapcache`` (6.10, Barry Song's "mm: swap: entirely map
large folios found in swapcache") maps a large swap-cache folio whole;
``swapin_large_sync_io`` (6.12: 242d12c98174) swaps an mTHP (an enabled order
below PMD order, case setting ``thp_sizes``) back in whole from zram.  v6.12 ..
v6.14 is ``--set swapin_read_mkwrite=true --set thp_split_zeropage=true --set
swapout_large_unsplit=true --set swapin_map_large_swapcache=true --set
swapin_large_sync_io=true``."""
from __future__ import annotations

from dataclasses import dataclass

from .base import REUSE, COPY
from .linux_6_5 import Linux65


@dataclass
class Linux69(Linux65):
    name: str = "linux-6.9"
    kernel: str = "v6.9 .. v6.14"
    summary: str = "6.5 + a large folio is never reused by refcount (copy unless exclusive)"
    sources: tuple = Linux65.sources + ("cd197c3a2040 mm: prohibit the last subpage from reusing the entire "
                                        "large folio",
                                        "19eaf44954df mm: thp: support allocation of anonymous multi-size THP")
    anon_mthp: bool = True              # alloc_anon_folio() (6.8)

    def default_settings(self):
        return {"swapin_read_mkwrite": False, "thp_split_zeropage": False, "swapout_large_unsplit": False,
                "swapin_map_large_swapcache": False, "swapin_large_sync_io": False}

    def __post_init__(self):
        super().__post_init__()
        self.swapin_read_mkwrite = bool(self.settings.get("swapin_read_mkwrite", False))
        self.thp_split_zeropage = bool(self.settings.get("thp_split_zeropage", False))
        self.swapout_large_unsplit = bool(self.settings.get("swapout_large_unsplit", False))
        self.swapin_large_sync_io = bool(self.settings.get("swapin_large_sync_io", False))
        self.swapin_map_large_swapcache = bool(self.settings.get("swapin_map_large_swapcache", False))

    def wp_anon(self, k, vmf):
        if k.PageAnonExclusive(vmf.pfn, vmf.idx):
            return REUSE
        if k.folio_test_large(vmf.pfn):
            return self.wp_large_anon_folio(k, vmf)
        return super().wp_anon(k, vmf)

    def wp_large_anon_folio(self, k, vmf):
        """wp_can_reuse_anon_folio(): ``if (folio_test_large(folio)) return false``."""
        return COPY


DESIGN = Linux69()
