"""The facts a kernel step records for the oracle, the invariant checks and
the trace: one immutable type per kind of effect.

A step calls ``k.effect(Store(mm, addr, pfn, idx, data, via))``; nothing
changes in the state by it (the step has already done what the kernel does).
Each consumer handles every type by its own handler:

* ``cowlab.oracle.Oracle.JUDGES`` maps a type to the method that judges it;
  ``Oracle.NOT_JUDGED`` names, with the reason, the types it does not judge;
* ``cowlab.report.trace.RENDERERS`` maps every type to its renderer;
* ``cowlab.kernel.checks.check_pin`` checks every ``Pin``;
* conformance (``cowlab.conformance.runner``) reads ``Store.data`` and
  ``Load.data`` by name.

A test (tests/kernel/test_effects.py) fails when a type here lacks a renderer or is
neither judged nor listed as not judged, so a new effect cannot be silently
ignored.  Adding an effect: a class here (and in ``EFFECT_TYPES``), a renderer
in report/trace.py, and a judge or a NOT_JUDGED reason in oracle.py.

Common fields: ``mm`` a process (its index in the state's mms), ``addr`` a
page-sized virtual address (a page index), ``pfn`` a folio and ``idx`` the
subpage in it, ``data`` the token a page holds.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from .types import Ref


class Store(NamedTuple):
    """A write of ``data`` into subpage (``pfn``, ``idx``), which ``mm`` maps
    at ``addr``: a CPU store after the fault path made the pte writable
    (``via`` None), or DMA into the page through the GUP reference ``via``
    (io_uring's fixed-buffer read, an O_DIRECT read).  From
    ``mm/memory.store()``, called by access.write and the I/O paths."""
    mm: int
    addr: int
    pfn: int
    idx: int
    data: Any
    via: Ref | None


class Load(NamedTuple):
    """A read of ``data`` from subpage (``pfn``, ``idx``) that ``mm`` maps (or
    mapped, for a reference) at ``addr``.  ``reader`` is ``"cpu"`` for a CPU
    load (``mm/memory.user_read()``, access.read) or the kind of the GUP
    reference read through: ``"gup_test"`` (gup_test.c
    ``pin_longterm_test_read()``), ``"io_uring"`` (``io_write_fixed()``),
    ``"pipe"`` (a vmsplice'd pipe's ``pipe_read()``), ``"odirect"`` (an
    O_DIRECT write, ``dio_write_io()``); ``owner`` names the holder
    (``"mm<n>"`` for the CPU, the reference's owner otherwise); ``mm`` is -1
    for a reference taken for no process address."""
    reader: str
    owner: str
    mm: int
    addr: int
    pfn: int
    idx: int
    data: Any


class Copy(NamedTuple):
    """A COW copy: ``mm`` now maps (``new_pfn``, ``new_idx``), a copy of
    (``old_pfn``, ``old_idx``), at ``addr``.  ``path`` says who copied:
    ``"wp_page_copy"`` or ``"unshare"`` (``wp_page_copy()`` from do_wp_page(),
    ``mm/memory.wp_page_copy_commit()``), ``"hugetlb_wp"`` or ``"unshare"``
    (``hugetlb_wp()``), ``"fork"`` (``copy_present_page()`` in
    copy_pte_range(), or hugetlb's copy_hugetlb_page_range() early copy, for
    the child ``mm``)."""
    path: str
    mm: int
    addr: int
    old_pfn: int
    old_idx: int
    new_pfn: int
    new_idx: int


class Reuse(NamedTuple):
    """``mm`` keeps (``pfn``, ``idx``) at ``addr`` on a ``fault`` (``"write"``
    or ``"unshare"``) instead of copying: ``wp_page_reuse()`` from
    ``do_wp_page()`` (``mm/memory._wp_decided()``), ``do_huge_pmd_wp_page()``
    (``huge_memory.huge_pmd_fault()``) or ``hugetlb_wp()``
    (``hugetlb.hugetlb_fault()``)."""
    mm: int
    addr: int
    pfn: int
    idx: int
    fault: str


class Pin(NamedTuple):
    """A FOLL_PIN taken on anonymous subpage (``pfn``, ``idx``) that ``mm``
    maps at ``addr``, with ``gup_flags``: ``try_grab_folio()``
    (``gup.try_grab_page()``), or gup-fast's references handed over to the
    caller (``gup._gup_fast_hand_over()``)."""
    mm: int
    addr: int
    pfn: int
    idx: int
    gup_flags: int


class Fork(NamedTuple):
    """``dup_mmap()`` finished (``fork.dup_mmap_end()``): ``child`` has a copy
    of ``parent``'s address space."""
    parent: int
    child: int


class DupMmap(NamedTuple):
    """``dup_mmap()`` began (``fork.dup_mmap_begin()``): ``child`` has
    ``parent``'s vmas, and no page-table entry yet."""
    parent: int
    child: int


class CopyPte(NamedTuple):
    """``copy_pte_range()`` / ``copy_huge_pmd()`` / ``copy_hugetlb_page_range()``
    set the child's entries for ``[addr, addr + nr)`` (``fork.copy_present_pte()``,
    ``fork.copy_present_pte_wrprotect()``, ``huge_memory.copy_huge()``,
    ``hugetlb.copy_hugetlb()``): from now on the child has what the parent had
    there at this moment (fork copies each page when it reaches it)."""
    parent: int
    child: int
    addr: int
    nr: int = 1


class Unmap(NamedTuple):
    """The mapping of ``addr`` in ``mm`` is gone: ``zap_pte_range()``
    (``memory.zap_pte()``) or ``zap_huge_pmd()`` (``huge_memory.zap_huge()``)."""
    mm: int
    addr: int


class Move(NamedTuple):
    """mremap moved ``mm``'s page at ``old_addr`` to ``new_addr``
    (``move_page_tables()``, ``mmap.do_mremap()``)."""
    mm: int
    old_addr: int
    new_addr: int


class Exit(NamedTuple):
    """``mm`` exited: ``exit_mmap()`` (``mmap.do_exit()``)."""
    mm: int


class Swapin(NamedTuple):
    """``do_swap_page()`` mapped (``pfn``, ``idx``) at ``addr`` of ``mm``,
    ``exclusive`` (RMAP_EXCLUSIVE) or not (``memory.do_swap_page_map()``'s
    step)."""
    mm: int
    addr: int
    pfn: int
    idx: int
    exclusive: bool


class SplitPmd(NamedTuple):
    """``__split_huge_pmd_locked()``: ``mm``'s PMD number ``hidx`` (haddr /
    HPAGE_PMD_NR) mapping folio ``pfn`` is replaced by ptes
    (``huge_memory.__split_huge_pmd_locked()`` and the split path's second
    half)."""
    mm: int
    hidx: int
    pfn: int


class CollapsePmd(NamedTuple):
    """collapse_huge_page() (MADV_COLLAPSE, khugepaged): ``mm``'s PMD number
    ``hidx`` now maps the new THP ``pfn``, a copy of what the ptes of the
    range mapped (the folios ``old``, which lost these mappings)
    (``khugepaged.collapse_huge_page()``)."""
    mm: int
    hidx: int
    pfn: int
    old: tuple = ()


class Segv(NamedTuple):
    """A fault at ``addr`` of ``mm`` found no VMA or a VMA without the access
    (``do_user_addr_fault()``'s access_error(), handle_mm_fault()): SIGSEGV
    (``memory.lock_mm_and_find_vma()``, ``memory.handle_pte_fault()``)."""
    mm: int
    addr: int


class Error(NamedTuple):
    """A system call ``call`` failed for ``mm`` at ``addr``: ``"mremap"``
    (``do_mremap()``, ``mmap.do_mremap()``), ``"PIN_LONGTERM_TEST_START"``
    (gup_test.c pin_longterm_test_start(), ``gup_test.pin_longterm_test_started()``),
    ``"io_uring_register"`` (io_sqe_buffer_register(),
    ``rsrc.io_sqe_buffer_registered()``), ``"vmsplice"`` (vmsplice_to_pipe(),
    ``splice.vmsplice_done()``), ``"odirect_read"`` / ``"odirect_write"``
    (__iomap_dio_rw(), ``direct_io.dio_read_io()``), ``"io_uring_read_fixed"``
    / ``"io_uring_write_fixed"`` (no buffer registered: io_import_fixed()),
    ``"madvise(MADV_PAGEOUT)"`` (``vmscan.madvise_pageout()``),
    ``"madvise(MADV_COLLAPSE)"`` (``khugepaged.madvise_collapse()``: EINVAL
    before 6.1 or for a range that cannot be collapsed, EAGAIN for a
    transient failure, ENOMEM for a hole): GUP failed on
    the range, or the call was refused.  ``errno``: the error the call returns
    to the process (EAGAIN 11, ENOMEM 12, EFAULT 14, EBUSY 16, EINVAL 22), 0 where the model does not say."""
    call: str
    mm: int
    addr: int
    errno: int = 0


class KsmMerge(NamedTuple):
    """``try_to_merge_two_pages()`` made ``mm``'s page at ``addr`` the stable
    KSM page ``pfn`` and replaced the tree page (``tree_mm``'s page at
    ``tree_addr``) by it (``replace_page()``; ``ksm.ksm_merge()``)."""
    mm: int
    addr: int
    tree_mm: int
    tree_addr: int
    pfn: int


class KsmBreakCow(NamedTuple):
    """``try_to_merge_two_pages()`` made ``mm``'s page at ``addr`` (``pfn``) a
    KSM page, then the tree page was refused (write_protect_page(): a
    reference beyond its mappings), so ``break_cow()`` takes the first back by
    a fault (FAULT_FLAG_WRITE; FAULT_FLAG_UNSHARE from 6.1) (``ksm.ksm_merge()``)."""
    mm: int
    addr: int
    pfn: int


class Migrate(NamedTuple):
    """``migrate_pages()`` moved folio ``src`` to the new folio ``dst``
    (``move_to_new_folio()`` and remove_migration_ptes();
    ``migrate.migrate_move()``)."""
    src: int
    dst: int


class MigrateFailed(NamedTuple):
    """``migrate_pages()`` gave up on folio ``pfn``: it is mapped again or has
    references beyond the expected count (folio_migrate_mapping()'s refcount
    check), so the migration entries are restored (``migrate.migrate_move()``)."""
    pfn: int


#: every effect type, in the order of this file
EFFECT_TYPES: tuple[type, ...] = (Store, Load, Copy, Reuse, Pin, Fork, DupMmap, CopyPte, Unmap, Move, Exit, Swapin,
                                  SplitPmd, CollapsePmd, Segv, Error, KsmMerge, KsmBreakCow, Migrate, MigrateFailed)
