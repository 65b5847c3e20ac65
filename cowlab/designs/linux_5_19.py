"""linux-5.19: PageAnonExclusive ("mm: COW fixes part 2: reliable GUP pins of
anonymous pages", David Hildenbrand; design C).

A per-subpage flag PG_anon_exclusive (6c287605fd56, 78fbe906cc90) is set on
fresh anon pages and when do_wp_page re-detects exclusivity (the 5.18
page_count test); an exclusive page is reused on a write fault with no
refcount check.  It is cleared only where sharing starts, and clearing fails
for maybe-pinned pages: fork (page_try_dup_anon_rmap -> copy for the child),
swapout / migration / KSM (page_try_share_anon_rmap).  R/O FOLL_PIN on a
page that is not exclusive triggers FAULT_FLAG_UNSHARE (c89357e27f20,
a7f226604170).  The swap pte keeps the bit (1493a1913e34).  FOLL_GET (vmsplice)
still never unshares.  hugetlb: exclusive, else mapcount == 1.

Its range ends with v6.1, which brought madvise(MADV_COLLAPSE) (7d8faaf15545,
the design's ``madv_collapse``): off by default (v5.19 .. v6.0, where the
advice is -EINVAL); ``--set madv_collapse=true`` gives v6.1."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import REUSE, COPY, SHARE, MigrateUnmapResult, Setting, UnmapResult
from .linux_5_18 import Linux518
from ..kernel.mm import rmap
from ..kernel.mm.swapfile import try_to_free_swap, swap_free
from ..kernel.types import (ZERO_PFN, FOLL_PIN, FOLL_WRITE, SWP_MIGRATION_READ, SWP_MIGRATION_READ_EXCLUSIVE,
                            SWP_MIGRATION_WRITE)


@dataclass
class Linux519(Linux518):
    name: str = "linux-5.19"
    kernel: str = "v5.19 .. v6.1"
    summary: str = "PageAnonExclusive: exclusive => reuse; R/O FOLL_PIN unshares; sharing pinned pages fails"
    sources: tuple = ("6c287605fd56 mm: remember exclusively mapped anonymous pages with PG_anon_exclusive",
                      "c89357e27f20 mm: support GUP-triggered unsharing of anonymous pages",
                      "a7f226604170 mm/gup: trigger FAULT_FLAG_UNSHARE when R/O-pinning a possibly shared "
                      "anonymous page",
                      "1493a1913e34 mm/swap: remember PG_anon_exclusive via a swp pte bit",
                      "cover letter 20220428083441.37290-1-david@redhat.com")
    anon_exclusive: bool = True

    SETTINGS: ClassVar[tuple] = (Setting("madv_collapse", False, "v6.1: madvise(MADV_COLLAPSE) exists (7d8faaf15545)"),)

    def __post_init__(self):
        super().__post_init__()
        if "madv_collapse" in self.settings:
            self.madv_collapse = bool(self.settings["madv_collapse"])

    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        """gup_must_unshare(): only R/O FOLL_PIN; anon pages that are not
        exclusive (KSM pages never are)."""
        if (gup_flags & (FOLL_WRITE | FOLL_PIN)) != FOLL_PIN:
            return False
        if pfn == ZERO_PFN or not k.PageAnon(pfn):
            return self.gup_must_unshare_non_anon(k, gup_flags, pfn)
        return not k.PageAnonExclusive(pfn, idx)

    def gup_must_unshare_non_anon(self, k, gup_flags, pfn):
        return False

    def wp_anon(self, k, vmf):
        if k.PageAnonExclusive(vmf.pfn, vmf.idx):
            return REUSE
        return super().wp_anon(k, vmf)

    def reused(self, k, vmf):
        """page_move_anon_rmap() sets PG_anon_exclusive (5.19)."""
        k.SetPageAnonExclusive(vmf.pfn, vmf.idx)
        return REUSE

    def huge_pmd_wp(self, k, vmf):
        if k.PageAnonExclusive(vmf.pfn, 0):
            return REUSE
        return super().huge_pmd_wp(k, vmf)

    def hugetlb_wp_reuse(self, k, vmf):
        return k.PageAnonExclusive(vmf.pfn, 0) or super().hugetlb_wp_reuse(k, vmf)

    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        pfn = vmf.pfn
        exclusive = False
        if not k.PageKsm(pfn):
            exclusive = swp_excl or fresh
        swap_free(k, slot)
        if self.should_try_to_free_swap(k, vmf):
            try_to_free_swap(k, pfn)
        return not k.PageKsm(pfn) and (exclusive or k.page_count(pfn) == 1)

    def copy_present_anon(self, k, src_mm, addr, pfn, idx):
        if rmap.page_try_dup_anon_rmap(k, pfn, idx, src_mm):
            return COPY
        return SHARE

    def try_to_unmap_anon(self, k, pfn, idx):
        excl = k.PageAnonExclusive(pfn, idx)
        if excl and rmap.page_try_share_anon_rmap(k, pfn, idx):
            return UnmapResult(False, False)
        return UnmapResult(True, excl)

    def ksm_may_merge(self, k, pfn, idx, swapped):
        if not super().ksm_may_merge(k, pfn, idx, swapped):
            return False
        return not (k.PageAnonExclusive(pfn, idx) and rmap.page_try_share_anon_rmap(k, pfn, idx))

    def migrate_try_unmap(self, k, pfn, idx, pte):
        excl = k.PageAnonExclusive(pfn, idx)
        if excl and rmap.page_try_share_anon_rmap(k, pfn, idx):
            return MigrateUnmapResult(False, SWP_MIGRATION_READ)
        if pte.write:
            return MigrateUnmapResult(True, SWP_MIGRATION_WRITE)
        return MigrateUnmapResult(True, SWP_MIGRATION_READ_EXCLUSIVE if excl else SWP_MIGRATION_READ)

    def migration_restore_exclusive(self, typ):
        return typ in (SWP_MIGRATION_WRITE, SWP_MIGRATION_READ_EXCLUSIVE)


DESIGN = Linux519()
