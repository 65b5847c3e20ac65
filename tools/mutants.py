"""Seeded design bugs for ``tools/mutate.py`` (mutation testing of the designs).

Each mutant is a small subclass of one built-in design (cowlab/designs/)
that overrides exactly one hook or attribute -- the model (cowlab/kernel/)
is untouched -- and says in its docstring which kernel rule it breaks.  A
mutant that cannot change any verdict the model can compute says why in
``equivalent=``; the tool then checks that no catalog case kills it (a kill
would refute the argument).

Names are ``<design>~<bug>``; ``@mutant`` registers the class in MUTANTS.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from cowlab.designs.base import Design, REUSE, COPY, LOCK_PAGE, SHARE, read_more
from cowlab.designs.linux_5_7 import Linux57
from cowlab.designs.linux_5_8 import Linux58
from cowlab.designs.linux_5_9 import Linux59
from cowlab.designs.linux_5_11 import Linux511
from cowlab.designs.linux_5_18 import Linux518
from cowlab.designs.linux_5_19 import Linux519
from cowlab.designs.linux_6_5 import Linux65
from cowlab.designs.linux_6_9 import Linux69
from cowlab.designs.linux_6_18 import Linux618
from cowlab.designs.rfc_mapcount import RfcMapcount
from cowlab.designs.rfc_page_anon_shared import RfcPageAnonShared
from cowlab.kernel.mm import rmap
from cowlab.kernel.mm.swapfile import swap_free, try_to_free_swap, delete_from_swap_cache
from cowlab.kernel.types import FOLL_GET, PG_dirty, PG_swapcache, PG_writeback, \
    SWP_MIGRATION_READ, SWP_MIGRATION_READ_EXCLUSIVE, SWP_MIGRATION_WRITE

#: name -> mutant class (declaration order)
MUTANTS: dict = {}


def mutant(bug: str, hook: str, equivalent: str | None = None):
    """Register a mutant of its (single) base design, overriding ``hook``."""
    def deco(cls):
        base = cls.__mro__[1]
        base_name = {f.name: f.default for f in fields(base)}["name"]
        cls.__annotations__ = {**cls.__dict__.get("__annotations__", {}), "name": str}
        cls.name = f"{base_name}~{bug}"
        cls = dataclass(cls)
        cls.base = base
        cls.base_name = base_name
        cls.hook = hook
        cls.equivalent = equivalent
        if cls.name in MUTANTS:
            raise RuntimeError(f"duplicate mutant {cls.name}")
        MUTANTS[cls.name] = cls
        return cls
    return deco


# =============================================================================== linux-5.7
@mutant("reuse-forgets-swapcount", "wp_anon")
class Reuse57ForgetsSwapcount(Linux57):
    """do_wp_page() reuses by mapcount alone: reuse_swap_page() without the
    swap count (page_trans_huge_map_swapcount() counts other processes'
    swap entries of the page; v5.7 mm/swapfile.c)."""
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) and (k.PageSwapCache(pfn) or k.page_count(pfn) != 1):
            return COPY
        if not vmf.locked and not k.trylock_page(pfn):
            return LOCK_PAGE
        if k.PageKsm(pfn):
            k.unlock_page(pfn)
            return COPY
        f = k.folio(pfn)
        count = max(m + f.entire_mapcount for m in f.mapcount)      # no swap count
        if count == 1 and f.flags & PG_swapcache and not f.flags & PG_writeback:
            k.set_flag(pfn, PG_dirty)
            delete_from_swap_cache(k, pfn)
        k.unlock_page(pfn)
        if count <= 1:
            rmap.page_move_anon_rmap(k, pfn)
            return REUSE
        return COPY


@mutant("no-page-lock", "wp_anon")
class NoLock57(Linux57):
    """do_wp_page() runs reuse_swap_page() without the page lock (the
    trylock_page()/lock_page() dropped).  Unlocked, its two loads --
    page_trans_huge_mapcount(), then page_swapcount() (v5.7
    page_trans_huge_map_swapcount()) -- are separate atomic steps that a
    concurrent swap-in of another process's entry (which maps the page,
    then frees its swap entry, under the page lock) can fall between."""
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn):
            return COPY
        f = k.folio(pfn)
        if vmf.snap is None:
            return read_more(tuple(m + f.entire_mapcount for m in f.mapcount))
        swc = [k.swap[s].count if f.flags & PG_swapcache and s >= 0 else 0 for s in f.swap]
        count = max(m + c for m, c in zip(vmf.snap, swc))
        if count == 1 and f.flags & PG_swapcache and not f.flags & PG_writeback:
            k.set_flag(pfn, PG_dirty)
            delete_from_swap_cache(k, pfn)
        if count <= 1:
            rmap.page_move_anon_rmap(k, pfn)
            return REUSE
        return COPY


@mutant("swapin-write-always-reuse", "do_swap_page_map")
class SwapinReuse57(Linux57):
    """do_swap_page() maps every write-faulted swap-in writable (the
    reuse_swap_page() test dropped)."""
    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        return vmf.write and not k.PageKsm(vmf.pfn)


@mutant("huge-pmd-always-reuse", "huge_pmd_wp")
class HugeReuse57(Linux57):
    """do_huge_pmd_wp_page() reuses the PMD-mapped THP without reuse_swap_page()."""
    def huge_pmd_wp(self, k, vmf):
        return REUSE


# =============================================================================== linux-5.8
@mutant("no-forced-cow-break", "gup_force_write")
class NoForce58(Linux58):
    """GUP does not force FOLL_WRITE on COW mappings (17839856fd58's
    should_force_cow_break() dropped): 5.7's CVE-2020-29374 again."""
    def gup_force_write(self, k, vma, gup_flags):
        return False


@mutant("gup-fast-any-pte", "gup_fast_only_writable")
class FastAny58(Linux58):
    """gup-fast takes pages from R/O ptes too (17839856fd58's 'only from
    writable ptes' dropped), so a R/O gup-fast skips the forced COW break."""
    gup_fast_only_writable: bool = False


@mutant("no-thp-split-lock", "thp_split_page_lock")
class NoSplitLock58(Linux58):
    """__split_huge_pmd() without the anon THP's page lock (c444eb564fb1
    reverted): CVE-2020-29368."""
    thp_split_page_lock: bool = False


# =============================================================================== linux-5.9
@mutant("mapcount-instead-of-refcount", "wp_anon")
class Mapcount59(Linux59):
    """do_wp_page() tests page_mapcount() == 1 where 09854ba94c6a tests
    page_count() == 1: GUP references are invisible again."""
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) or k.page_mapcount(pfn, vmf.idx) != 1:
            return COPY
        if not k.trylock_page(pfn):
            return COPY
        if k.PageKsm(pfn) or k.page_mapcount(pfn, vmf.idx) != 1:
            k.unlock_page(pfn)
            return COPY
        k.unlock_page(pfn)
        return REUSE


@mutant("fork-shares-pinned", "copy_present_anon")
class ForkShares59(Linux59):
    """copy_present_pte() shares a maybe-pinned page with the child
    (70e806e4e645's early COW dropped)."""
    def copy_present_anon(self, k, src_mm, addr, pfn, idx):
        rmap.page_dup_rmap(k, pfn, idx)
        return SHARE


@mutant("fork-shares-pinned-thp", "fork_cow_pinned")
class ForkSharesThp59(Linux59):
    """copy_huge_pmd() shares a maybe-pinned THP (d042035eaf5f's split of
    pinned huge pmds at fork dropped)."""
    fork_cow_pinned: bool = False


@mutant("no-mapcount-recheck", "wp_anon", equivalent=(
        "do_wp_page() re-checks page_mapcount() == 1 only after page_count() == 1 held under the PT lock; every "
        "mapping holds a page reference (the model's ref_to_mapping(), as the kernel's get_page() per pte), so a "
        "page with page_count() == 1 mapped by this pte has mapcount 1: the dropped test never decides"))
class NoMapcountRecheck59(Linux59):
    """do_wp_page() without its page_mapcount() == 1 re-check under the page lock."""
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) or k.page_count(pfn) != 1:
            return COPY
        if not k.trylock_page(pfn):
            return COPY
        if k.PageKsm(pfn) or k.page_count(pfn) != 1:
            k.unlock_page(pfn)
            return COPY
        k.unlock_page(pfn)
        return REUSE


@mutant("trylock-dropped", "wp_anon", equivalent=(
        "09854ba94c6a's trylock_page() is reached only with page_count() == 1 read under the PT lock; every page "
        "lock holder in the model (reclaim's and migration's isolation, swap-in, the THP split, ksmd) holds a "
        "reference of its own while it holds the lock, so the trylock cannot fail there and the decision is the "
        "same without it"))
class NoTrylock59(Linux59):
    """do_wp_page() decides without trylock_page()."""
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) or k.page_count(pfn) != 1:
            return COPY
        if k.page_mapcount(pfn, vmf.idx) != 1:
            return COPY
        return REUSE


# =============================================================================== linux-5.11
@mutant("no-write-protect-seq", "write_protect_seq")
class NoSeq511(Linux511):
    """fork does not write-lock mm->write_protect_seq, gup-fast does not
    re-check it (57efa1fe5957 reverted)."""
    write_protect_seq: bool = False


@mutant("pinned-into-swapcache", "may_add_to_swap")
class PinnedSwap511(Linux511):
    """shrink_page_list() adds maybe-pinned pages to the swap cache
    (feb889fb40fa reverted): try_to_unmap() then replaces the pinned
    page's ptes by swap entries."""
    def may_add_to_swap(self, k, pfn):
        return True


@mutant("softdirty-wp-pinned", "clear_refs_skip")
class SoftDirty511(Linux511):
    """clear_refs soft-dirty write-protects ptes of maybe-pinned pages
    (9348b73c2e1b reverted): the next write COWs away from the pin."""
    def clear_refs_skip(self, k, mm, pfn):
        return False


# =============================================================================== linux-5.18
@mutant("no-lru-drain", "wp_anon")
class NoDrain518(Linux518):
    """do_wp_page() does not drain the local lru_add batch of a !PageLRU
    page (d4c470970d45 dropped): the batch's reference makes it copy."""
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) or k.page_count(pfn) > 3:
            return COPY
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


@mutant("swapcache-not-discounted", "wp_anon")
class NoSwapDiscount518(Linux518):
    """do_wp_page() does not discount the swap cache's reference
    (53a05ad9f21d dropped): a page in the swap cache is always copied."""
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) or k.page_count(pfn) > 3:
            return COPY
        if not k.PageLRU(pfn):
            from cowlab.kernel.mm.swap import lru_add_drain
            lru_add_drain(k)
        if k.page_count(pfn) > 1:
            return COPY
        if not k.trylock_page(pfn):
            return COPY
        if k.PageKsm(pfn) or k.page_count(pfn) != 1:
            k.unlock_page(pfn)
            return COPY
        k.unlock_page(pfn)
        return self.reused(k, vmf)


@mutant("reuse-without-trylock", "wp_anon", equivalent=(
        "the trylock is reached only when page_count() <= 1 + PageSwapCache(), i.e. no reference but this pte's "
        "and the swap cache's; every page lock holder in the model (swap-in, reclaim and migration isolation, the "
        "THP split) holds a reference of its own while it holds the lock, so the trylock cannot fail there and "
        "the decision is the same.  (The kernel's folio_free_swap() also VM_BUG_ONs an unlocked folio; the model "
        "does not check that)"))
class NoTrylock518(Linux518):
    """do_wp_page() frees the swap cache and decides without
    trylock_page(): a concurrent lock holder (swap-in of another process's
    entry, reclaim) is ignored."""
    def wp_anon(self, k, vmf):
        pfn = vmf.pfn
        if k.PageKsm(pfn) or k.page_count(pfn) > 3:
            return COPY
        if not k.PageLRU(pfn):
            from cowlab.kernel.mm.swap import lru_add_drain
            lru_add_drain(k)
        if k.page_count(pfn) > 1 + k.PageSwapCache(pfn):
            return COPY
        if k.PageSwapCache(pfn):
            try_to_free_swap(k, pfn)
        if k.PageKsm(pfn) or k.page_count(pfn) != 1:
            return COPY
        return self.reused(k, vmf)


@mutant("swapin-reuse-off-by-one", "do_swap_page_map")
class SwapinOffByOne518(Linux518):
    """do_swap_page() (c145e0b47c77) maps a write-faulted swap-in
    exclusively when page_count() <= 2 -- the swap cache's reference
    discounted once too often: with the page still in the swap cache
    (another process holds the swap entry), it is the swap cache plus this
    fault's reference.  Only a third sharer shows it: with two, the other
    process either maps the page (its reference) or the swap-in is fresh and
    sits in the lru_add batch (another); it takes a process that swapped the
    page in and went away, its batch drained (swapin-write-third-sharer)."""
    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        swap_free(k, slot)
        if self.should_try_to_free_swap(k, vmf):
            try_to_free_swap(k, vmf.pfn)
        return vmf.write and not k.PageKsm(vmf.pfn) and (fresh or k.page_count(vmf.pfn) <= 2)


@mutant("swapin-no-free-swap", "should_try_to_free_swap", equivalent=(
        "when should_try_to_free_swap() would have let do_swap_page() map the page writable (page_count() == 2: "
        "the swap cache and this fault, the page on the LRU, no swap pte left), the write fault goes on into "
        "do_wp_page() in the same atomic step, under the same PT lock, with the counts unchanged (this fault's "
        "reference became the mapping's): 53a05ad9f21d's test frees the swap cache and reuses the same page.  "
        "In the kernel a lockless gup-fast could take the page between set_pte_at() and do_wp_page(); the "
        "model's single step does not admit that"))
class NoFreeSwap518(Linux518):
    """do_swap_page() never tries to free the swap cache
    (should_try_to_free_swap() always false): the write-faulted page stays
    in the swap cache and is not mapped exclusively."""
    def should_try_to_free_swap(self, k, vmf):
        return False


@mutant("fork-shares-pinned-hugetlb", "fork_cow_pinned_hugetlb")
class ForkSharesHugetlb518(Linux518):
    """copy_hugetlb_page_range() shares a maybe-pinned hugetlb page
    (4eae4efa2c29 reverted)."""
    fork_cow_pinned_hugetlb: bool = False


# =============================================================================== linux-5.19
@mutant("reuse-forgets-exclusive", "reused")
class ReuseNoExcl519(Linux519):
    """do_wp_page() reuses a page by its refcount without setting
    PG_anon_exclusive (page_move_anon_rmap() forgotten)."""
    def reused(self, k, vmf):
        return REUSE


@mutant("swapin-always-exclusive", "do_swap_page_map")
class SwapinExcl519(Linux519):
    """do_swap_page() maps every swapped-in page exclusive, as if the swp
    pte's exclusive bit were always set."""
    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        return super().do_swap_page_map(k, vmf, slot, True, fresh)


@mutant("swapin-never-exclusive", "do_swap_page_map")
class SwapinNotExcl519(Linux519):
    """do_swap_page() ignores the swp pte's exclusive bit (1493a1913e34's
    reader side dropped): only page_count() == 1 makes it exclusive."""
    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        return super().do_swap_page_map(k, vmf, slot, False, fresh)


@mutant("swap-pte-loses-exclusive", "try_to_unmap_anon")
class SwapPteNoExcl519(Linux519):
    """try_to_unmap_one() installs the swap pte without the exclusive bit
    (1493a1913e34's writer side dropped)."""
    def try_to_unmap_anon(self, k, pfn, idx):
        ok, _ = super().try_to_unmap_anon(k, pfn, idx)
        return ok, False


@mutant("unmap-ignores-pin", "try_to_unmap_anon")
class UnmapPinned519(Linux519):
    """try_to_unmap_one() clears PG_anon_exclusive of a maybe-pinned page
    and unmaps it (page_try_share_anon_rmap()'s -EBUSY ignored)."""
    def try_to_unmap_anon(self, k, pfn, idx):
        excl = k.PageAnonExclusive(pfn, idx)
        if excl:
            k.ClearPageAnonExclusive(pfn, idx)
        return True, excl


@mutant("fork-swap-pte-keeps-exclusive", "copy_swap_pte_clear_exclusive")
class ForkSwapExcl519(Linux519):
    """copy_nonpresent_pte() leaves the parent's swp pte exclusive when
    fork duplicates the entry."""
    def copy_swap_pte_clear_exclusive(self):
        return False


@mutant("fork-shares-pinned", "copy_present_anon")
class ForkShares519(Linux519):
    """copy_present_pte() shares an exclusive, maybe-pinned page
    (page_try_dup_anon_rmap()'s -EBUSY ignored)."""
    def copy_present_anon(self, k, src_mm, addr, pfn, idx):
        if k.PageAnonExclusive(pfn, idx):
            k.ClearPageAnonExclusive(pfn, idx)
        rmap.page_dup_rmap(k, pfn, idx)
        return SHARE


@mutant("ksm-ignores-pin", "ksm_may_merge")
class KsmPinned519(Linux519):
    """write_protect_page() merges a pinned page: neither the
    mapcount + 1 + swapcache == page_count test nor
    page_try_share_anon_rmap()'s -EBUSY."""
    def ksm_may_merge(self, k, pfn, idx, swapped):
        if k.PageAnonExclusive(pfn, idx):
            k.ClearPageAnonExclusive(pfn, idx)
        return True


@mutant("migrate-ignores-pin", "migrate_try_unmap", equivalent=(
        "folio_migrate_mapping() freezes the refcount at the isolation reference (+ the swap cache): a pinned "
        "page always fails there, and remove_migration_ptes() maps it back with the exclusivity its migration "
        "entry recorded (the mutant still records it), so the page ends as it began; the early -EBUSY only "
        "saves the work (migrate-pinned exercises this)"))
class MigratePinned519(Linux519):
    """try_to_migrate_one() replaces the ptes of a maybe-pinned exclusive
    page by migration entries (page_try_share_anon_rmap()'s -EBUSY
    ignored; the entry still records exclusivity)."""
    def migrate_try_unmap(self, k, pfn, idx, pte):
        excl = k.PageAnonExclusive(pfn, idx)
        if excl:
            k.ClearPageAnonExclusive(pfn, idx)
        if pte.write:
            return True, SWP_MIGRATION_WRITE
        return True, SWP_MIGRATION_READ_EXCLUSIVE if excl else SWP_MIGRATION_READ


@mutant("migration-loses-exclusive", "migration_restore_exclusive")
class MigrateNoExcl519(Linux519):
    """remove_migration_pte() maps the new page without RMAP_EXCLUSIVE."""
    def migration_restore_exclusive(self, typ):
        return False


@mutant("never-unshare", "gup_must_unshare")
class NoUnshare519(Linux519):
    """R/O FOLL_PIN never triggers FAULT_FLAG_UNSHARE (a7f226604170 dropped)."""
    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        return False


@mutant("hugetlb-reuse-by-mapcount", "hugetlb_wp_reuse", equivalent=(
        "hugetlb_wp() reuses when PageAnonExclusive or mapcount == 1; PG_anon_exclusive is set only on a hugetlb "
        "page mapped by one pte (fault, early COW at fork, the reuse itself) and cleared by fork before a second "
        "mapping exists, so an exclusive hugetlb page always has mapcount 1 and the first test adds nothing"))
class HugetlbMapcount519(Linux519):
    """hugetlb_wp() decides by mapcount == 1 alone, as before 5.19."""
    def hugetlb_wp_reuse(self, k, vmf):
        return Design.hugetlb_wp_reuse(self, k, vmf)


@mutant("huge-pmd-always-reuse", "huge_pmd_wp")
class HugeReuse519(Linux519):
    """do_huge_pmd_wp_page() reuses a PMD-mapped THP that is not exclusive."""
    def huge_pmd_wp(self, k, vmf):
        return REUSE


# =============================================================================== linux-6.5
@mutant("no-unshare-zero-page", "gup_must_unshare_non_anon")
class NoZeroUnshare65(Linux65):
    """A R/O FOLL_LONGTERM pin of the shared zero page in a private mapping
    does not unshare (84209e87c696 dropped): the pin keeps the zero page
    while a later write maps a new page."""
    def gup_must_unshare_non_anon(self, k, gup_flags, pfn):
        return False


@mutant("mprotect-writable-not-exclusive", "mprotect_make_writable")
class MprotectShared65(Linux65):
    """can_change_pte_writable() maps an anon pte writable without testing
    PageAnonExclusive (64fe24a3e05e's anon test dropped)."""
    def mprotect_make_writable(self, k, vma, pte, pfn, idx):
        from cowlab.kernel.types import VM_WRITE, VM_SOFTDIRTY
        if not vma.flags & VM_WRITE:
            return False
        return bool(vma.flags & VM_SOFTDIRTY or pte.soft_dirty)


@mutant("mprotect-ignores-softdirty", "mprotect_make_writable", equivalent=(
        "can_change_pte_writable()'s soft-dirty test only keeps a write fault so that soft-dirty tracking sees "
        "the write; the page is PageAnonExclusive (still tested), and do_wp_page() reuses an exclusive page, so "
        "with or without the fault the write lands in the same page; no verdict reads the soft-dirty bit"))
class MprotectSoftDirty65(Linux65):
    """can_change_pte_writable() ignores soft-dirty tracking."""
    def mprotect_make_writable(self, k, vma, pte, pfn, idx):
        from cowlab.kernel.types import VM_WRITE
        return bool(vma.flags & VM_WRITE) and k.PageAnonExclusive(pfn, idx)


@mutant("break-ksm-write", "break_ksm_unshare", equivalent=(
        "break_cow() with FAULT_FLAG_WRITE instead of FAULT_FLAG_UNSHARE (6cce3314b928 reverted): both copy the "
        "KSM page into an exclusive page (do_wp_page() never reuses a KSM page from 5.9); the write fault maps it "
        "writable, the unshare R/O, and a later write to the R/O exclusive page reuses it without a copy, so data "
        "and verdicts are the same"))
class BreakKsmWrite65(Linux65):
    """ksmd breaks COW with a write fault, as before 6.1."""
    break_ksm_unshare: bool = False


# =============================================================================== linux-6.9
@mutant("large-folio-refcount-reuse", "wp_large_anon_folio")
class LargeRefcount69(Linux69):
    """wp_can_reuse_anon_folio() reuses a large folio by its refcount again
    (cd197c3a2040 reverted)."""
    def wp_large_anon_folio(self, k, vmf):
        return Linux65.wp_anon(self, k, vmf)


# =============================================================================== linux-6.18
@mutant("always-reuse", "wp_anon")
class AlwaysReuse618(Linux618):
    """do_wp_page() reuses every anonymous page."""
    def wp_anon(self, k, vmf):
        return REUSE


@mutant("never-unshare", "gup_must_unshare")
class NoUnshare618(Linux618):
    """gup_must_unshare() is always false: R/O pins never unshare."""
    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        return False


@mutant("fork-shares-pinned-thp", "copy_huge_anon")
class ForkSharesThp618(Linux618):
    """copy_huge_pmd() shares an exclusive, maybe-pinned THP
    (page_try_dup_anon_rmap(compound)'s -EBUSY ignored)."""
    def copy_huge_anon(self, k, src_mm, pfn, hugetlb=False):
        f = k.folio(pfn)
        k.folios[pfn] = f._replace(anon_exclusive=(False,) * f.nr)
        return SHARE


@mutant("large-reuse-ignores-mapped-shared", "wp_can_reuse_large_anon_folio")
class LargeShared618(Linux618):
    """__wp_can_reuse_large_anon_folio() without folio_maybe_mapped_shared():
    a folio mapped by another MM as well is reused when the counts add up."""
    def wp_can_reuse_large_anon_folio(self, k, vmf):
        pfn = vmf.pfn
        f = k.folio(pfn)
        mapcount = sum(f.mapcount) + f.entire_mapcount
        if mapcount <= 1 or k.PageKsm(pfn):
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


@mutant("large-reuse-ignores-refcount", "wp_can_reuse_large_anon_folio")
class LargeRefs618(Linux618):
    """__wp_can_reuse_large_anon_folio() without the refcount == mapcount
    test: a folio held by a GUP reference of a process that unmapped it is
    reused."""
    def wp_can_reuse_large_anon_folio(self, k, vmf):
        pfn = vmf.pfn
        f = k.folio(pfn)
        mapcount = sum(f.mapcount) + f.entire_mapcount
        if mapcount <= 1 or k.folio_maybe_mapped_shared(pfn) or k.PageKsm(pfn):
            return COPY
        k.SetPageAnonExclusive(pfn, vmf.idx)
        return REUSE


# =============================================================================== rfc-mapcount
@mutant("no-unshare", "gup_must_unshare")
class NoUnshareRfc(RfcMapcount):
    """The RFC without its GUP half: a R/O GUP never unshares."""
    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        return False


@mutant("unshare-pin-only", "gup_must_unshare")
class UnsharePinOnlyRfc(RfcMapcount):
    """The RFC's unsharing for FOLL_PIN only, as 5.19 does it: a R/O
    FOLL_GET (vmsplice) keeps the shared page."""
    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        if gup_flags & FOLL_GET:
            return False
        return super().gup_must_unshare(k, gup_flags, pfn, idx)


# =============================================================================== rfc-page-anon-shared
@mutant("swapin-by-mapcount", "do_swap_page_map")
class SwapinMapcountPas(RfcPageAnonShared):
    """do_swap_page() decides by mapcount alone (as rfc-mapcount does):
    the swap entries of other processes are not counted."""
    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        return vmf.write and not k.PageKsm(vmf.pfn) and k.page_mapcount(vmf.pfn, vmf.idx) == 0


@mutant("shared-by-mapcount", "shared")
class SharedMapcountPas(RfcPageAnonShared):
    """page_anon_shared() without the swap references (rfc-mapcount's
    predicate under the page lock)."""
    def shared(self, k, pfn, idx):
        return k.PageKsm(pfn) or k.page_mapcount(pfn, idx) > 1


@mutant("no-page-lock", "default_settings")
class NoLockPas(RfcPageAnonShared):
    """page_anon_shared() read without the page lock (setting page_lock
    false by default): two loads a concurrent swap-in can fall between."""
    def default_settings(self):
        return {"page_lock": False}
