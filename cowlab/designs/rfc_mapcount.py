"""rfc-mapcount: the seed thread's "mapcount > 1" rule (David Hildenbrand's
Dec 2021 RFC, cover letter 20211217113049.23850-1-david@redhat.com, as the
issue states it): a write fault reuses an anon page when its mapcount is 1;
a R/O GUP (FOLL_GET or FOLL_PIN, not KSM) first unshares (copy on read)
when mapcount > 1.  Swap entries of other processes are invisible to it
("mapcount can increase from another process faulting in an pte with that
swap entry" -- Linus, 17 Dec 2021).  Everything else as the kernels of the
thread (5.16: write_protect_seq, early COW of pinned pages and hugetlb pages
at fork, idle swap cache freed after COW).  Setting ``page_lock`` (default false): take the
page lock (sleeping) around the decision."""
from __future__ import annotations

from dataclasses import dataclass

from .base import REUSE, COPY, LOCK_PAGE, SPLIT, Setting
from .linux_5_11 import Linux511
from ..kernel.types import ZERO_PFN, FOLL_WRITE, FOLL_GET, FOLL_PIN


@dataclass
class RfcMapcount(Linux511):
    name: str = "rfc-mapcount"
    kernel: str = "RFC, Dec 2021 (on 5.16)"
    summary: str = "reuse iff mapcount == 1; R/O GUP unshares when mapcount > 1"
    sources: tuple = ("LKML 18 Dec 2021, 40e7e0ab-0828-b2e7-339f-35f68a228b3d@redhat.com",
                      "RFC cover letter 20211217113049.23850-1-david@redhat.com")
    # the RFC's base, 5.16, already had these
    fork_cow_pinned_hugetlb: bool = True     # 4eae4efa2c29 (5.12)
    frees_swapcache_after_cow: bool = True   # f4c4a3f48480 (5.14)

    SETTINGS = (Setting("page_lock", False, "take the page lock (sleeping) around the reuse decision, "
                                            "excluding a concurrent swapin (Linus, 17 Dec 2021)"),)

    def shared(self, k, pfn, idx) -> bool:
        return k.page_mapcount(pfn, idx) > 1

    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn):
            return COPY
        locked = False
        if self.settings.get("page_lock"):
            if not vmf.locked and not k.trylock_page(pfn):
                return LOCK_PAGE
            locked = True
        reuse = not self.shared(k, pfn, vmf.idx)
        if locked:
            k.unlock_page(pfn)
        return REUSE if reuse else COPY

    def huge_pmd_wp(self, k, vmf):
        """do_huge_pmd_wp_page(): the same rule on the THP (under its page
        lock when ``page_lock``: trylock, else fall back to the pte level)."""
        pfn = vmf.pfn
        if self.settings.get("page_lock"):
            if not k.trylock_page(pfn):
                return SPLIT
            reuse = not (k.PageKsm(pfn) or self.shared(k, pfn, vmf.idx))
            k.unlock_page(pfn)
            return REUSE if reuse else SPLIT
        return SPLIT if k.PageKsm(pfn) or self.shared(k, pfn, vmf.idx) else REUSE

    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        if gup_flags & FOLL_WRITE or not gup_flags & (FOLL_GET | FOLL_PIN):
            return False
        if pfn == ZERO_PFN or not k.PageAnon(pfn) or k.PageKsm(pfn):
            return False
        return self.shared(k, pfn, idx)

    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        """do_swap_page() (5.16 order: decide, map, then swap_free()): the
        page may be mapped writable when nobody else maps it (mapcount would be 1)."""
        return vmf.write and not k.PageKsm(vmf.pfn) and k.page_mapcount(vmf.pfn, vmf.idx) == 0


DESIGN = RfcMapcount()
