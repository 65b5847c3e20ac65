"""linux-5.9: page_count-based COW (Linus' rules (a)/(b), design B).

09854ba94c6a "mm: do_wp_page() simplification": reuse only when
page_count == 1 (trylock; mapcount == 1; KSM never reused), so any extra
reference makes the writer copy; a308c71bf1e6 removes 5.8's forced COW in
GUP; 70e806e4e645 / d042035eaf5f (v5.9-rc8): fork copies maybe-pinned pages
for the child when the mm has ever pinned (no PageAnon test yet).  Swapin
and THP still use mapcount (reuse_swap_page()), so the CVE returns for them.
R/O pins and anything that maps a pinned page R/O give wrong COW."""
from __future__ import annotations

from dataclasses import dataclass

from .base import REUSE, COPY, SHARE
from .linux_5_7 import Linux57
from ..kernel.mm import rmap


@dataclass
class Linux59(Linux57):
    name: str = "linux-5.9"
    kernel: str = "v5.9 .. v5.10"
    summary: str = "page_count()==1 reuse; fork copies maybe-pinned pages; swapin/THP still mapcount"
    thp_split_page_lock: bool = True
    huge_zero_wp_thp: bool = False      # 3917c80280c9 (5.8): the huge zero PMD is split, the pte COWs
    sources: tuple = ("09854ba94c6a mm: do_wp_page() simplification",
                      "a308c71bf1e6 mm/gup: Remove enfornced COW mechanism",
                      "70e806e4e645 mm: Do early cow for pinned pages during fork() for ptes",
                      "d042035eaf5f mm/thp: Split huge pmds/puds if they're pinned when fork()")
    fork_cow_pinned: bool = True

    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) or k.page_count(pfn) != 1:
            return COPY
        if not k.trylock_page(pfn):
            return COPY
        if k.PageKsm(pfn) or k.page_mapcount(pfn, vmf.idx) != 1 or k.page_count(pfn) != 1:
            k.unlock_page(pfn)
            return COPY
        k.unlock_page(pfn)
        return REUSE

    def copy_present_anon(self, k, src_mm, addr, pfn, idx):
        """copy_present_page(): is_cow_mapping && has_pinned && page_maybe_dma_pinned -> copy."""
        if k.mm_has_pinned(src_mm) and k.folio_maybe_dma_pinned(pfn):
            from .base import COPY as C
            return C
        rmap.page_dup_rmap(k, pfn, idx)
        return SHARE


DESIGN = Linux59()
