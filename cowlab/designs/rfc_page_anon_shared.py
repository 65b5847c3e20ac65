"""rfc-page-anon-shared: David Hildenbrand's page_anon_shared() predicate
(LKML 18 Dec 2021, 40e7e0ab-0828-b2e7-339f-35f68a228b3d@redhat.com): a page
is shared when it is KSM or when its mapcount plus the swap references of
other processes' swap entries ("inactive sharing") exceeds 1.  One predicate
for both COW reuse (reuse iff not shared) and GUP unsharing (a R/O GUP
unshares iff shared).  Setting ``page_lock`` (default true): the decision is
made under the page lock, which excludes a concurrent swapin (Linus: "mmap_sem
doesn't protect against that. Again, page_lock() does")."""
from __future__ import annotations

from dataclasses import dataclass

from .rfc_mapcount import RfcMapcount
from .base import COPY, REUSE, Setting, read_more


@dataclass
class RfcPageAnonShared(RfcMapcount):
    name: str = "rfc-page-anon-shared"
    kernel: str = "proposal, Dec 2021"
    summary: str = "page_anon_shared(): KSM or mapcount + other processes' swap entries > 1"
    sources: tuple = ("LKML 18 Dec 2021, 40e7e0ab-0828-b2e7-339f-35f68a228b3d@redhat.com",)

    SETTINGS = (Setting("page_lock", True, "decide under the page lock, one atomic read of page_anon_shared(); "
                                           "false: mapcount and swapcount are two loads a swapin can fall between"),)

    def shared(self, k, pfn, idx) -> bool:
        return k.PageKsm(pfn) or k.page_mapcount(pfn, idx) + k.page_swapcount(pfn, idx) > 1

    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        from ..kernel.types import ZERO_PFN, FOLL_WRITE, FOLL_GET, FOLL_PIN
        if gup_flags & FOLL_WRITE or not gup_flags & (FOLL_GET | FOLL_PIN):
            return False
        if pfn == ZERO_PFN or not k.PageAnon(pfn):
            return False
        return self.shared(k, pfn, idx)

    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        """Decide before mapping (5.16 order): only this pte's own swap entry
        may reference the page."""
        return (vmf.write and not k.PageKsm(vmf.pfn)
                and k.page_mapcount(vmf.pfn, vmf.idx) + k.page_swapcount(vmf.pfn, vmf.idx) == 1)

    def wp_anon(self, k, vmf):
        """Under the page lock the predicate is one atomic read; without it,
        page_mapcount() and page_swapcount() are two loads that a concurrent
        swapin in another mm (under its own PT lock) can fall between."""
        if self.settings.get("page_lock"):
            return super().wp_anon(k, vmf)
        pfn = vmf.pfn
        if k.PageKsm(pfn):
            return COPY
        if vmf.snap is None:
            return read_more(k.page_mapcount(pfn, vmf.idx))
        return COPY if vmf.snap + k.page_swapcount(pfn, vmf.idx) > 1 else REUSE


DESIGN = RfcPageAnonShared()
