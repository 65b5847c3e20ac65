"""What the kernel paths ask a COW/GUP design, and the types of the answers.

Wherever the kernel's behaviour depends on which COW design it implements, a
path asks the running design (``k.design``) one of the questions declared
by ``DesignInterface`` below: a static fact of the kernel version (a
``bool`` or an ``int`` attribute) or a hook (a method) with typed arguments
and a typed result.  The kernel package owns these types, so kernel code
never imports a design; ``cowlab.designs.base.Design`` implements the
interface with documented defaults, and ``cowlab.designs.contract`` checks
a user's design file against it (tests/designs/test_interface.py checks
that the kernel asks nothing this module does not declare).

The decisions are one ``str`` enum, ``Decision``: its members compare equal
to the strings the model used before (``Decision.REUSE == "reuse"``), and a
hook's return annotation names the members that hook may answer
(``Literal[REUSE, COPY, LOCK_PAGE]``).  Two-part answers are NamedTuples, so
``ok, excl = design.try_to_unmap_anon(...)`` still unpacks.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple, Protocol

from .txn import Kernel
from .types import (FOLL_GET, FOLL_PIN, SWP_MIGRATION_READ, SWP_MIGRATION_READ_EXCLUSIVE, SWP_MIGRATION_WRITE, Pte,
                    Vma)



class Decision(StrEnum):
    """A design's answer at a branching decision point."""
    REUSE = "reuse"          # wp: map the existing page writable (or, for unshare, keep it)
    COPY = "copy"            # wp / fork: copy the page
    LOCK_PAGE = "lock_page"  # wp: drop the PT lock, sleep in lock_page(), ask again with vmf.locked
    SHARE = "share"          # fork: share the page read-only with the child
    SPLIT = "split"          # THP wp / THP fork: split the PMD and fall back to the pte level
    READ_MORE = "read_more"  # wp: continue the decision in the next atomic step (see ReadMore)


REUSE = Decision.REUSE
COPY = Decision.COPY
LOCK_PAGE = Decision.LOCK_PAGE
SHARE = Decision.SHARE
SPLIT = Decision.SPLIT
READ_MORE = Decision.READ_MORE


class ReadMore(NamedTuple):
    """``wp_anon``'s answer "not decided yet": the decision continues in the
    next atomic step, where ``wp_anon`` is called again with ``vmf.snap`` =
    ``snapshot`` (what this step read; it must be hashable, it becomes part
    of the state).  Build it with ``read_more(snapshot)``."""
    decision: Literal[Decision.READ_MORE]
    snapshot: object


def read_more(snapshot) -> ReadMore:
    """Return this from ``wp_anon`` to split a decision into two atomic
    steps (two separate loads of two counters): ``wp_anon`` is called again,
    in the next step, with ``vmf.snap`` = snapshot."""
    return ReadMore(READ_MORE, snapshot)


#: the migration entry types (include/linux/swapops.h), values of kernel.types.SWP_MIGRATION_*
MigrationEntryType = Literal[0, 1, 2]
assert (SWP_MIGRATION_READ, SWP_MIGRATION_READ_EXCLUSIVE, SWP_MIGRATION_WRITE) == (0, 1, 2)


class UnmapResult(NamedTuple):
    """try_to_unmap_one()'s answer for one anon pte."""
    ok: bool            # False: leave this pte mapped (unsharing a maybe-pinned page failed)
    exclusive: bool     # the swap pte's exclusive bit (5.19+ SWP_PTE_EXCLUSIVE)


class MigrateUnmapResult(NamedTuple):
    """try_to_migrate_one()'s answer for one anon pte."""
    ok: bool                    # False: leave this pte mapped (the page may be pinned)
    entry: MigrationEntryType   # SWP_MIGRATION_READ / _READ_EXCLUSIVE / _WRITE


@dataclass
class Vmf:
    """struct vm_fault, reduced to what the decisions read."""
    mm: int
    addr: int
    pfn: int
    idx: int               # the subpage of the folio at pfn
    write: bool            # FAULT_FLAG_WRITE
    unshare: bool          # FAULT_FLAG_UNSHARE (5.19+)
    locked: bool = False   # the page lock is held by this path (after LOCK_PAGE)
    snap: object = None    # what an earlier step of this decision read (see read_more)


# the answers each hook may give
WpAnonResult = Literal[Decision.REUSE, Decision.COPY, Decision.LOCK_PAGE] | ReadMore
HugePmdWpResult = Literal[Decision.REUSE, Decision.SPLIT]
CopyPresentResult = Literal[Decision.SHARE, Decision.COPY]
CopyHugeThpResult = Literal[Decision.SHARE, Decision.SPLIT]         # copy_huge_anon(..., hugetlb=False)
CopyHugeHugetlbResult = Literal[Decision.SHARE, Decision.COPY]      # copy_huge_anon(..., hugetlb=True)
OdirectGupFlags = Literal[2, 4]                                      # FOLL_GET or FOLL_PIN
assert (FOLL_GET, FOLL_PIN) == (2, 4)


class DesignInterface(Protocol):
    """Every question the kernel model asks a design, with its arguments and
    its answer.  ``k`` is the atomic step's kernel view (``k.page_count(pfn)``,
    ``k.PageAnonExclusive(pfn, idx)``, ``k.trylock_page(pfn)`` ...); a hook
    may call the kernel helpers the version it models calls at that point
    (``reuse_swap_page``, ``lru_add_drain``, ``try_to_free_swap``,
    ``swap_free``, ``rmap.page_dup_rmap``, ``rmap.page_try_dup_anon_rmap``
    ...).  Unless a hook says otherwise it returns with every page lock and
    PT lock as it found them.  ``pfn`` is a folio's number, ``idx`` the
    subpage within it; ``mm`` numbers a process."""

    # ---- who it is (asked by the reports, not by the kernel) ------------------------
    name: str
    kernel: str
    summary: str
    sources: tuple
    settings: dict

    # ---- static facts of the kernel version ------------------------------------------
    #: PG_anon_exclusive exists (5.19+, 6c287605fd56); enables its invariants
    anon_exclusive: bool
    #: gup-fast only takes pages from already-writable ptes (5.8, 17839856fd58)
    gup_fast_only_writable: bool
    #: fork write-locks mm->write_protect_seq and gup-fast FOLL_PIN checks it (5.11, 57efa1fe5957)
    write_protect_seq: bool
    #: wp_page_copy() frees an idle swap cache page after COW (5.14, f4c4a3f48480)
    frees_swapcache_after_cow: bool
    #: gup flags of O_DIRECT: FOLL_GET until 6.4, FOLL_PIN from 6.5 (a7e689dd1c06)
    odirect_gup: OdirectGupFlags
    #: __split_huge_pmd() takes the anon THP's page lock (5.8 / 5.7.5, c444eb564fb1)
    thp_split_page_lock: bool
    #: FAULT_FLAG_UNSHARE on a non-anonymous page (the shared zeropage) in a COW mapping (6.2, 84209e87c696)
    unshare_non_anon: bool
    #: break_ksm() faults with FAULT_FLAG_UNSHARE (6.1, 6cce3314b928) instead of FAULT_FLAG_WRITE
    break_ksm_unshare: bool
    #: do_swap_page() maps an exclusive page writable on a read fault too (6.11, c18160dba5ff)
    swapin_read_mkwrite: bool
    #: a write/unshare fault on the huge zero page maps a fresh THP (5.7; 6.13+ 1ced09e0331f) instead of splitting it
    huge_zero_wp_thp: bool
    #: a THP split maps its all-zero subpages to the shared zero page (6.12, b1f202060afe)
    thp_split_zeropage: bool
    #: madvise(MADV_COLLAPSE) exists (6.1, 7d8faaf15545); before, the advice is -EINVAL
    madv_collapse: bool
    #: a collapse no longer needs a writable pte in the range (SCAN_PAGE_RO gone: 6.18)
    collapse_ro_ptes: bool
    #: a write fault in a VM_HUGEPAGE vma may allocate an anonymous large folio of any enabled size below the PMD
    #: size and map it with ptes (mTHP: alloc_anon_folio(), 6.8, 19eaf44954df)
    anon_mthp: bool
    #: reclaim / MADV_PAGEOUT swap out a PTE-mapped large folio whole, splitting only partially mapped ones (6.10,
    #: 5ed890ce5147, 845982eb264b); before, every PTE-mapped large folio is split first
    swapout_large_unsplit: bool
    #: (before 6.10) MADV_PAGEOUT's shared test of a large folio reads its first subpage's mapcount (6.5+)
    pageout_sharers_head: bool
    #: do_swap_page() swaps in large folios (mTHP orders below PMD) on SWP_SYNCHRONOUS_IO devices (6.12, 242d12c98174)
    swapin_large_sync_io: bool
    #: do_swap_page() maps a large swap-cache folio whole when every pte of its range is its swap entry (6.10)
    swapin_map_large_swapcache: bool

    # ---- GUP ---------------------------------------------------------------------------
    def gup_force_write(self, k: Kernel, vma: Vma, gup_flags: int) -> bool:
        """__get_user_pages() (mmap_lock held): make this GUP FOLL_WRITE, so it
        breaks COW first (5.8's should_force_cow_break())."""
        ...

    def gup_must_unshare(self, k: Kernel, gup_flags: int, pfn: int, idx: int) -> bool:
        """gup_must_unshare() (PT lock held, or IRQs off in gup-fast): must a
        GUP without FOLL_WRITE of this R/O-mapped page first fault with
        FAULT_FLAG_UNSHARE?  pfn may be ZERO_PFN (0, the shared zeropage)."""
        ...

    # ---- write faults ------------------------------------------------------------------
    def wp_anon(self, k: Kernel, vmf: Vmf) -> WpAnonResult:
        """do_wp_page() on an anonymous small page mapped R/O (PT lock held; the
        page lock too when vmf.locked): REUSE it, COPY it, or LOCK_PAGE (drop the
        PT lock, sleep in lock_page(), ask again with vmf.locked, never when
        vmf.locked already); or read_more(snapshot) to continue in the next
        atomic step.  When vmf.locked, a REUSE or COPY answer unlocks the page."""
        ...

    def huge_pmd_wp(self, k: Kernel, vmf: Vmf) -> HugePmdWpResult:
        """do_huge_pmd_wp_page() on a PMD-mapped anon THP (PT lock held): REUSE
        the THP, or SPLIT the PMD and retry the fault at the pte level."""
        ...

    def hugetlb_wp_reuse(self, k: Kernel, vmf: Vmf) -> bool:
        """hugetlb_cow() / hugetlb_wp() (PT lock held): reuse the hugetlb page
        (True) or copy it (False)?"""
        ...

    def do_swap_page_map(self, k: Kernel, vmf: Vmf, slot: int, swp_excl: bool, fresh: bool) -> bool:
        """do_swap_page() (PT lock and page lock held, the page is in the swap
        cache and not yet mapped): may it be mapped exclusive (and writable on
        a write fault)?  ``slot`` is this pte's swap slot, ``swp_excl`` the swap
        pte's exclusive bit, ``fresh`` whether the page was just read from swap
        (the model passes False).  The hook may ``swap_free(k, slot)`` itself
        (5.18+ order); otherwise the kernel frees the entry after mapping."""
        ...

    # ---- fork --------------------------------------------------------------------------
    def copy_present_anon(self, k: Kernel, src_mm: int, addr: int, pfn: int, idx: int) -> CopyPresentResult:
        """copy_present_pte() on a present anon pte (parent's PT lock held):
        SHARE the page read-only with the child (the hook must then dup the
        rmap: ``rmap.page_dup_rmap`` or ``rmap.page_try_dup_anon_rmap``) or
        COPY it for the child now (early COW of a maybe-pinned page)."""
        ...

    def copy_huge_anon(self, k: Kernel, src_mm: int, pfn: int,
                       hugetlb: bool = False) -> CopyHugeThpResult | CopyHugeHugetlbResult:
        """copy_huge_pmd() (THP: SHARE or SPLIT the parent's PMD and copy per
        pte) / copy_hugetlb_page_range() (hugetlb=True: SHARE or COPY), parent's
        PT lock held."""
        ...

    def copy_swap_pte_clear_exclusive(self) -> bool:
        """copy_nonpresent_pte(): clear the exclusive bit of the parent's swap pte (5.19+)?"""
        ...

    # ---- reclaim, KSM, migration, mprotect, soft-dirty -----------------------------------
    def may_add_to_swap(self, k: Kernel, pfn: int) -> bool:
        """shrink_page_list() (page lock held): may this anon page be added to the swap cache?"""
        ...

    def try_to_unmap_anon(self, k: Kernel, pfn: int, idx: int) -> UnmapResult:
        """try_to_unmap_one() for one pte mapping the page (page lock, that mm's
        PT lock): unmap it (ok) and with which swap pte exclusive bit."""
        ...

    def clear_refs_skip(self, k: Kernel, mm: int, pfn: int) -> bool:
        """clear_refs soft-dirty (PT lock held): leave this writable pte alone?"""
        ...

    def mprotect_make_writable(self, k: Kernel, vma: Vma, pte: Pte, pfn: int, idx: int) -> bool:
        """change_pte_range() when the vma becomes writable (PT lock held): map
        this R/O anon pte writable directly (6.0+ can_change_pte_writable())?
        ``vma`` carries the new flags."""
        ...

    def ksm_may_merge(self, k: Kernel, pfn: int, idx: int, swapped: int) -> bool:
        """write_protect_page() (page lock held): may KSM write-protect and merge
        this page?  ``swapped`` is 1 when the page is in the swap cache."""
        ...

    def migrate_try_unmap(self, k: Kernel, pfn: int, idx: int, pte: Pte) -> MigrateUnmapResult:
        """try_to_migrate_one() for one present pte (page lock held): replace it
        by a migration entry (ok) of which type."""
        ...

    def migration_restore_exclusive(self, typ: MigrationEntryType) -> bool:
        """remove_migration_pte(): map the new page RMAP_EXCLUSIVE, given the entry's type?"""
        ...


#: the names the reports read, not the kernel
IDENTITY = ("name", "kernel", "summary", "sources", "settings")
#: the static facts the kernel reads (attributes)
FACTS = tuple(n for n in DesignInterface.__annotations__ if n not in IDENTITY)
#: the hooks the kernel calls (methods)
HOOKS = tuple(n for n, v in vars(DesignInterface).items() if callable(v) and not n.startswith("_"))
