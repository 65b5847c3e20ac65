"""The base of every COW/GUP design: ``cowlab.kernel.decisions.DesignInterface``
implemented with documented defaults.

The model (cowlab.kernel) runs the kernel's paths; wherever the kernel's
behaviour depended on which COW design it implemented, the path asks the
running design one of the questions ``DesignInterface`` declares (a static
fact or a hook).  A design answers only those questions, so adding one never
touches the model.  Each hook gets ``k`` (the atomic step's kernel view:
``k.page_count(pfn)``, ``k.PageAnonExclusive(pfn, idx)``,
``k.trylock_page(pfn)`` ...) and may call kernel helpers that the kernel
version it models calls at that point (``reuse_swap_page``,
``lru_add_drain``, ``try_to_free_swap``, ``page_try_dup_anon_rmap`` ...).

Four hooks have no default (``REQUIRED_HOOKS``): ``wp_anon``,
``huge_pmd_wp``, ``do_swap_page_map`` and ``copy_present_anon``; every other
hook and fact defaults to the 5.7 behaviour documented on it.

A user design is a Python file defining ``DESIGN`` (an instance) or one
subclass of ``Design`` (or of a built-in design); pass it with
``--design ./mine.py``.  docs/designs.md describes every hook.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from ..kernel.decisions import (
    COPY,
    LOCK_PAGE,
    READ_MORE,
    REUSE,
    SHARE,
    SPLIT,
    CopyHugeHugetlbResult,
    CopyHugeThpResult,
    CopyPresentResult,
    Decision,
    HugePmdWpResult,
    MigrateUnmapResult,
    ReadMore,
    UnmapResult,
    Vmf,
    WpAnonResult,
    read_more,
)
from ..kernel.types import FOLL_GET, SWP_MIGRATION_READ, SWP_MIGRATION_WRITE

__all__ = ["Design", "Setting", "REQUIRED_HOOKS",
           "Decision", "REUSE", "COPY", "LOCK_PAGE", "SHARE", "SPLIT", "READ_MORE",
           "ReadMore", "read_more", "UnmapResult", "MigrateUnmapResult", "Vmf"]


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Setting:
    """A design parameter, declared by the design (``Design.SETTINGS``) and
    typed by its default: a bool, an int (within ``min`` .. ``max``) or, with
    ``choices``, one of a few strings (an enum).  ``coerce`` takes the value
    as typed on the command line (``page_lock=false``) or as stored (a JSON
    bool) and returns it typed, or raises ValueError saying what is allowed."""
    name: str
    default: object
    help: str = ""
    choices: tuple = ()
    min: int | None = None
    max: int | None = None

    @property
    def type(self) -> str:
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "int"
        return "enum" if self.choices else "str"

    def allowed(self) -> str:
        if self.type == "bool":
            return "true or false (also yes/no, on/off, 1/0)"
        if self.type == "int":
            lo = "" if self.min is None else str(self.min)
            hi = "" if self.max is None else str(self.max)
            return f"an integer{f' in {lo}..{hi}' if lo or hi else ''}"
        if self.type == "enum":
            return ", ".join(self.choices)
        return "a string"

    def show(self, value=None) -> str:
        """A value as the command line writes it (``false``, not ``False``)."""
        v = self.default if value is None else value
        return str(v).lower() if isinstance(v, bool) else str(v)

    def coerce(self, value):
        t = self.type
        if t == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
        elif t == "int":
            v = value
            if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
                v = int(value)
            if type(v) is int and (self.min is None or v >= self.min) and (self.max is None or v <= self.max):
                return v
        elif t == "enum":
            if isinstance(value, str) and value in self.choices:
                return value
        elif isinstance(value, str):
            return value
        what = {"bool": "a bool", "int": "an integer", "enum": "one of the choices", "str": "a string"}[t]
        if t == "int" and type(v) is int:
            what = "out of range"
        raise ValueError(f"{value!r} is {'' if what == 'out of range' else 'not '}{what}; allowed: {self.allowed()}")


def required(fn):
    """Marks a hook every design must implement (``Design`` has no default for it)."""
    fn.__required_hook__ = True
    return fn


@dataclass
class Design:
    #: name used on the command line
    name: str = "abstract"
    #: the kernel release(s) it models
    kernel: str = ""
    summary: str = ""
    #: commits / mails the rules come from
    sources: tuple = ()
    #: settings (design parameters a scenario or the command line may set): name -> value, for
    #: each of ``SETTINGS``
    settings: dict = field(default_factory=dict)
    #: the settings this design declares, typed (``Setting``): ``cowlab designs NAME`` lists them and
    #: ``-d NAME:key=value`` is checked against them
    SETTINGS: ClassVar[tuple] = ()

    # ---- static properties of the kernel version --------------------------------
    #: PG_anon_exclusive exists (5.19+, 6c287605fd56); enables its invariants
    anon_exclusive: bool = False
    #: gup-fast only takes pages from already-writable ptes (5.8, 17839856fd58)
    gup_fast_only_writable: bool = False
    #: fork write-locks mm->write_protect_seq and gup-fast FOLL_PIN checks it (5.11, 57efa1fe5957)
    write_protect_seq: bool = False
    #: wp_page_copy() frees an idle swap cache page after COW (5.14, f4c4a3f48480)
    frees_swapcache_after_cow: bool = False
    #: gup flags of O_DIRECT (FOLL_GET until 6.4, FOLL_PIN from 6.5: a7e689dd1c06)
    odirect_gup: int = FOLL_GET
    #: __split_huge_pmd() takes the anon THP's page lock (5.8 / 5.7.5, c444eb564fb1)
    thp_split_page_lock: bool = False
    #: FAULT_FLAG_UNSHARE on a non-anonymous page in a COW mapping (6.2, 84209e87c696)
    unshare_non_anon: bool = False
    #: break_ksm() faults with FAULT_FLAG_UNSHARE (6cce3314b928, 6.1) instead of FAULT_FLAG_WRITE
    break_ksm_unshare: bool = False
    #: do_swap_page() maps a page it maps exclusive writable on a read fault too, not only on a write fault
    #: (6.11, c18160dba5ff "mm: swap: reuse exclusive folio directly instead of wp page faults")
    swapin_read_mkwrite: bool = False
    #: a write (or unshare) fault on the huge zero page maps a fresh THP: 5.7 (do_huge_pmd_wp_page()'s
    #: "goto alloc"; 3917c80280c9, 5.8, split the PMD instead) and 6.13+ (do_huge_zero_wp_pmd(), 1ced09e0331f);
    #: otherwise the PMD is split into ptes of the 4 KiB zero page and the pte fault copies one
    huge_zero_wp_thp: bool = False
    #: __split_huge_page() maps every all-zero subpage of an anon THP it splits to the shared zero page instead of
    #: its own page (remap_page(RMP_USE_SHARED_ZEROPAGE) -> try_to_map_unused_to_zeropage(); 6.12, b1f202060afe)
    thp_split_zeropage: bool = False
    #: madvise(MADV_COLLAPSE) exists (7d8faaf15545 "mm/madvise: introduce MADV_COLLAPSE sync hugepage collapse",
    #: 6.1); before, madvise_behavior_valid() refuses the advice: -EINVAL
    madv_collapse: bool = False
    #: hpage_collapse_scan_pmd() / __collapse_huge_page_isolate() collapse a range none of whose ptes is writable
    #: (6.18: the SCAN_PAGE_RO test dropped, "mm: Enable khugepaged to operate on non-writable VMAs",
    #: 20250903054635.19949-1-dev.jain@arm.com; a live probe on 6.18.44 collapses an all-R/O range); before,
    #: such a range fails with SCAN_PAGE_RO (MADV_COLLAPSE: -EINVAL)
    collapse_ro_ptes: bool = False
    #: a write fault in a VM_HUGEPAGE vma allocates an anonymous large folio of the highest enabled size (the case
    #: setting ``thp_sizes``) below the PMD size that fits, mapped by ptes (mTHP: alloc_anon_folio(), 6.8,
    #: 19eaf44954df "mm: thp: support allocation of anonymous multi-size THP"); otherwise only the PMD size exists
    anon_mthp: bool = False
    #: MADV_PAGEOUT and reclaim swap out a PTE-mapped large folio whole: madvise_cold_or_pageout_pte_range() splits
    #: only a folio the range maps part of, shrink_folio_list() only a partially mapped one (5ed890ce5147 "mm: vmscan:
    #: avoid split during shrink_folio_list()", Ryan Roberts' "mm: madvise: avoid split during MADV_PAGEOUT and
    #: MADV_COLD" and 845982eb264b "mm: swap: allow storage of all mTHP orders", all 6.10).  Before: the madvise walk
    #: splits every PTE-mapped large folio it meets (or stops the walk of that PMD where it cannot), and
    #: shrink_folio_list() splits every large folio with no PMD mapping (``!folio_entire_mapcount()``) before
    #: add_to_swap(); only a PMD-mapped THP goes out whole (CONFIG_THP_SWAP, x86-64, since 4.13/4.14: 38d8b4e6bdc8,
    #: bd4c82c22c36)
    swapout_large_unsplit: bool = False
    #: (read only without ``swapout_large_unsplit``) the madvise walk's "shared" test of a PTE-mapped large folio
    #: reads the first subpage's mapcount (folio_estimated_sharers() 2f406263e3e9, 6.4/6.5;
    #: folio_likely_mapped_shared() 6.9) instead of the mapcount of the subpage the pte maps (page_mapcount(page),
    #: 5.4 .. 6.1; 6.2 .. 6.3's folio_mapcount() is no design's)
    pageout_sharers_head: bool = False
    #: do_swap_page() on a SWP_SYNCHRONOUS_IO device (zram) swaps in a large folio of an enabled mTHP order below
    #: PMD order when the faulting entry's swap count is 1 and the aligned range is swap ptes of consecutive entries,
    #: none in the swap cache (alloc_swap_folio(), can_swapin_thp(); 242d12c98174 "mm: support large folios swap-in
    #: for sync io devices", 6.12)
    swapin_large_sync_io: bool = False
    #: do_swap_page() maps a large folio it finds in the swap cache whole (set_ptes() of every pte when all the ptes
    #: of its range are its swap entries, swap_pte_batch()), and should_try_to_free_swap() expects
    #: ``folio_ref_count() == 1 + folio_nr_pages()`` ("mm: swap: entirely map large folios found in swapcache" and
    #: "mm: swap: make should_try_to_free_swap() support large-folio", Barry Song, 6.10); before, only the
    #: faulting subpage is mapped
    swapin_map_large_swapcache: bool = False

    def __post_init__(self):
        self.settings = {**self.default_settings(), **(self.settings or {})}

    def default_settings(self) -> dict:
        """The settings' defaults (from ``SETTINGS``; a subclass may override the defaults here)."""
        decl = self.SETTINGS if isinstance(self.SETTINGS, tuple) else ()      # a bad one: contract says so
        return {s.name: s.default for s in decl if isinstance(s, Setting)}

    def setting_types(self) -> dict:
        """name -> ``Setting`` for every setting: the declared ones, and one typed by
        its default for a setting only ``default_settings()`` names (an older user design)."""
        declared = {s.name: s for s in (self.SETTINGS if isinstance(self.SETTINGS, tuple) else ())
                    if isinstance(s, Setting)}
        defaults = self.default_settings()
        out = {}
        for n, v in defaults.items():
            s = declared.get(n) or Setting(n, v)
            out[n] = s if s.default == v else Setting(s.name, v, s.help, s.choices, s.min, s.max)
        for n, s in declared.items():
            out.setdefault(n, s)
        return out

    @property
    def label(self) -> str:
        """The name, with the settings that differ from the defaults:
        ``rfc-mapcount:page_lock=true`` (a column of the matrix)."""
        types = self.setting_types()
        diff = [f"{n}={types[n].show(v) if n in types else v}" for n, v in self.settings.items()
                if n not in types or types[n].default != v]
        return self.name + (":" + ",".join(diff) if diff else "")

    def describe(self) -> str:
        return f"{self.name} ({self.kernel}): {self.summary}"

    # ---- GUP ---------------------------------------------------------------------
    def gup_force_write(self, k, vma, gup_flags: int) -> bool:
        """__get_user_pages(): turn a read reference into FOLL_WRITE (5.8's
        should_force_cow_break()).  Default: no."""
        return False

    def gup_must_unshare(self, k, gup_flags: int, pfn: int, idx: int) -> bool:
        """gup_must_unshare(): a R/O GUP of a page mapped R/O must first
        trigger FAULT_FLAG_UNSHARE.  Default (before 5.19): never."""
        return False

    # ---- write faults ----------------------------------------------------------------
    @required
    def wp_anon(self, k, vmf: Vmf) -> WpAnonResult:
        """do_wp_page() on an anonymous small page mapped R/O: REUSE, COPY or
        LOCK_PAGE (or read_more(snapshot)).  Called with the PT lock held (and
        the page lock when vmf.locked, which a REUSE or COPY answer unlocks)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement wp_anon")

    @required
    def huge_pmd_wp(self, k, vmf: Vmf) -> HugePmdWpResult:
        """do_huge_pmd_wp_page(): REUSE the PMD-mapped THP or SPLIT and COW at pte level."""
        raise NotImplementedError(f"{type(self).__name__} does not implement huge_pmd_wp")

    def hugetlb_wp_reuse(self, k, vmf: Vmf) -> bool:
        """hugetlb_cow()/hugetlb_wp(): reuse the huge page? All versions:
        mapcount == 1 and anon (David Hildenbrand, 20240502085259.103784-3)."""
        f = k.folio(vmf.pfn)
        return k.PageAnon(vmf.pfn) and f.entire_mapcount == 1

    @required
    def do_swap_page_map(self, k, vmf: Vmf, slot: int, swp_excl: bool, fresh: bool) -> bool:
        """do_swap_page(), PT lock and page lock held, page not yet mapped:
        may the page be mapped exclusively (writable on a write fault)?
        ``slot`` is the swap slot of the pte, ``swp_excl`` its exclusive bit;
        the hook may ``swap_free(k, slot)`` (5.18+), else the kernel frees the
        entry after mapping."""
        raise NotImplementedError(f"{type(self).__name__} does not implement do_swap_page_map")

    # ---- fork ------------------------------------------------------------------------
    @required
    def copy_present_anon(self, k, src_mm: int, addr: int, pfn: int, idx: int) -> CopyPresentResult:
        """copy_present_pte() on an anon page: SHARE (and dup the rmap the
        way the version does) or COPY for the child.  Must call
        ``rmap.page_dup_rmap`` (or ``page_try_dup_anon_rmap``) when sharing."""
        raise NotImplementedError(f"{type(self).__name__} does not implement copy_present_anon")

    #: (read by the default copy_huge_anon only, not by the kernel)
    #: fork copies maybe-pinned pages for the child early (5.9+, 70e806e4e645; THP split d042035eaf5f)
    fork_cow_pinned: bool = False
    #: ... and hugetlb pages (5.12+, 4eae4efa2c29)
    fork_cow_pinned_hugetlb: bool = False

    def copy_huge_anon(self, k, src_mm: int, pfn: int,
                       hugetlb: bool = False) -> CopyHugeThpResult | CopyHugeHugetlbResult:
        """copy_huge_pmd() / copy_hugetlb_page_range(): SHARE the large folio,
        or SPLIT (THP: split the PMD, then copy per pte) / COPY (hugetlb) a
        maybe-pinned one.  With PG_anon_exclusive this is
        page_try_dup_anon_rmap(compound) (5.19)."""
        early = self.fork_cow_pinned_hugetlb if hugetlb else self.fork_cow_pinned
        f = k.folio(pfn)
        if early and (not self.anon_exclusive or any(f.anon_exclusive)):
            if k.mm_has_pinned(src_mm) and k.folio_maybe_dma_pinned(pfn):
                return COPY if hugetlb else SPLIT
        if self.anon_exclusive:
            k.folios[pfn] = f._replace(anon_exclusive=(False,) * f.nr)
        return SHARE

    def copy_swap_pte_clear_exclusive(self) -> bool:
        """copy_nonpresent_pte(): clear the swp pte exclusive bit in the parent (5.19+).
        Default: when the design has PG_anon_exclusive."""
        return self.anon_exclusive

    # ---- reclaim, KSM, migration, mprotect, soft-dirty --------------------------------
    def may_add_to_swap(self, k, pfn: int) -> bool:
        """shrink_page_list(): may this anon page be added to the swap cache?  Default: yes."""
        return True

    def try_to_unmap_anon(self, k, pfn: int, idx: int) -> UnmapResult:
        """try_to_unmap_one() after clearing the pte: (ok, swp pte exclusive bit).
        Default: always, without the exclusive bit."""
        return UnmapResult(True, False)

    def clear_refs_skip(self, k, mm: int, pfn: int) -> bool:
        """clear_refs soft-dirty: leave this page's pte writable?  Default: no."""
        return False

    def mprotect_make_writable(self, k, vma, pte, pfn: int, idx: int) -> bool:
        """change_pte_range(): map a R/O anon pte writable directly when the
        vma becomes writable (6.0+, 64fe24a3e05e can_change_pte_writable()).  Default: no."""
        return False

    def ksm_may_merge(self, k, pfn: int, idx: int, swapped: int) -> bool:
        """write_protect_page(): may KSM write-protect and merge this page?"""
        # 5.7..5.18: refuse pages with references beyond mappings + swap cache
        return k.page_mapcount(pfn, idx) + 1 + swapped == k.page_count(pfn)

    def migrate_try_unmap(self, k, pfn: int, idx: int, pte) -> MigrateUnmapResult:
        """try_to_migrate_one(): (ok, migration entry type).  Default: always; a
        writable pte gets a writable entry, any other a readable one."""
        return MigrateUnmapResult(True, SWP_MIGRATION_WRITE if pte.write else SWP_MIGRATION_READ)

    def migration_restore_exclusive(self, typ: int) -> bool:
        """remove_migration_pte(): map RMAP_EXCLUSIVE?  Default: never."""
        return False

    @classmethod
    def missing_hooks(cls) -> list[str]:
        """The required hooks this class does not implement."""
        return [n for n in REQUIRED_HOOKS if getattr(getattr(cls, n, None), "__required_hook__", False)]


#: the hooks without a default
REQUIRED_HOOKS = tuple(n for n, v in vars(Design).items() if getattr(v, "__required_hook__", False))
