"""The state of anonymous memory, as immutable and hashable values.

Everything here is a NamedTuple of ints, bools and tuples, so a whole system
state hashes and compares by value: two paths that reach the same memory state
reach an equal ``State``.  Field names follow the kernel's structures
(``struct folio``/``struct page``, ``pte_t``, ``struct mm_struct``,
``struct vm_area_struct``, ``swap_info_struct->swap_map``).

Addresses are page indices inside one mm (0, 1, 2, ...); a THP covers
``HPAGE_PMD_NR`` consecutive aligned indices.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

# ---------------------------------------------------------------------------
# Constants (include/linux/mm.h, include/linux/page-flags.h)
# ---------------------------------------------------------------------------

#: include/linux/mm.h: FOLL_PIN adds this much to the refcount of a small folio
#: (3faa52c03f44 "mm/gup: track FOLL_PIN pages", 5.7).
GUP_PIN_COUNTING_BIAS = 1024

#: The default subpages of a model THP and of a hugetlb page (the kernel's PMD
#: THP has 512 on x86-64; the model keeps the structure with fewer subpages so
#: that state spaces stay small).  Only a default: the size a run uses is its
#: case's (``Case.hpage_pmd_nr``, read by kernel code as ``k.HPAGE_PMD_NR``),
#: so cases of several sizes run in one process (conformance builds the THP
#: variants at the kernel's size with ``catalog.get(id, hpage_pmd_nr=512)``).
HPAGE_PMD_NR = 2

#: pfn of the shared zero page (vm_normal_page() returns NULL for it).
ZERO_PFN = 0
#: content token of zero-filled memory
ZERO = 0

# folio flags (page-flags.h).  PG_anon_exclusive is per subpage and lives in
# Folio.anon_exclusive; everything else is per folio.
PG_anon = 1 << 0        # PageAnon (folio->mapping & PAGE_MAPPING_ANON)
PG_ksm = 1 << 1         # PageKsm
PG_swapcache = 1 << 2   # PageSwapCache
PG_locked = 1 << 3      # PageLocked (the page lock)
PG_lru = 1 << 4         # PageLRU: on an LRU list (not while in a per-CPU lru_add batch)
PG_writeback = 1 << 5   # PageWriteback
PG_dirty = 1 << 6       # PageDirty
PG_hugetlb = 1 << 7     # folio_test_hugetlb
PG_large = 1 << 8       # folio_test_large (THP)
PG_huge_zero = 1 << 9   # is_huge_zero_folio(): the huge zero folio (mm/huge_memory.c huge_zero_folio)

FLAG_NAMES = {
    PG_anon: "anon", PG_ksm: "ksm", PG_swapcache: "swapcache", PG_locked: "locked",
    PG_lru: "lru", PG_writeback: "writeback", PG_dirty: "dirty", PG_hugetlb: "hugetlb",
    PG_large: "large", PG_huge_zero: "huge_zero",
}

# gup flags (include/linux/mm_types.h / mm.h)
FOLL_WRITE = 1 << 0
FOLL_GET = 1 << 1
FOLL_PIN = 1 << 2
FOLL_LONGTERM = 1 << 3
FOLL_FAST = 1 << 4      # model-only: the caller used the *_fast variant (gup-fast first)


def gup_flag_names(flags: int) -> str:
    names = [n for b, n in ((FOLL_GET, "FOLL_GET"), (FOLL_PIN, "FOLL_PIN"), (FOLL_WRITE, "FOLL_WRITE"),
                            (FOLL_LONGTERM, "FOLL_LONGTERM"), (FOLL_FAST, "fast")) if flags & b]
    return "|".join(names) or "0"


# vma flags (include/linux/mm.h)
VM_READ = 1 << 0
VM_WRITE = 1 << 1
VM_MAYWRITE = 1 << 2
VM_SHARED = 1 << 3
VM_DONTCOPY = 1 << 4      # MADV_DONTFORK
VM_HUGEPAGE = 1 << 5      # MADV_HUGEPAGE
VM_NOHUGEPAGE = 1 << 6    # MADV_NOHUGEPAGE
VM_HUGETLB = 1 << 7
VM_SOFTDIRTY = 1 << 8     # soft-dirty tracking *not* active for this vma (set at mmap, cleared by clear_refs)
VM_MERGEABLE = 1 << 9     # MADV_MERGEABLE

# mm flags
MMF_HAS_PINNED = 1 << 0   # 5.14 a458b76a4171 (mm->has_pinned since 5.9): FOLL_PIN ever used

# pte kinds
PTE_PRESENT = 1
PTE_SWAP = 2
PTE_MIGRATION = 3

# migration entry types (include/linux/swapops.h)
SWP_MIGRATION_READ = 0
SWP_MIGRATION_READ_EXCLUSIVE = 1
SWP_MIGRATION_WRITE = 2


class Folio(NamedTuple):
    """struct folio (a small folio is one struct page; a large one a THP or hugetlb page).

    ``refcount`` is folio->_refcount (page_count()); ``mapcount[i]`` is
    page->_mapcount + 1 of subpage i (PTE mappings); ``entire_mapcount`` is
    folio->_entire_mapcount + 1 (PMD mappings of a THP, hugetlb mappings);
    ``pincount`` is folio->_pincount (exact FOLL_PIN count, large folios only);
    ``anon_exclusive[i]`` is PG_anon_exclusive of subpage i (the head's for a
    PMD mapping); ``data[i]`` is an abstract content token; ``swap[i]`` the
    swap slot in page->private while PG_swapcache (-1 otherwise).
    """
    flags: int
    refcount: int
    mapcount: tuple
    entire_mapcount: int
    pincount: int
    anon_exclusive: tuple
    data: tuple
    swap: tuple

    @property
    def nr(self) -> int:
        return len(self.data)


class Pte(NamedTuple):
    """pte_t.  kind PTE_PRESENT: (pfn, idx) is the mapped subpage, ``write``,
    ``dirty`` and ``soft_dirty`` are the pte bits.  kind PTE_SWAP: ``pfn`` is
    the swap slot, ``excl`` is the swp pte exclusive bit (1493a1913e34, 5.19).
    kind PTE_MIGRATION: (pfn, idx) is the folio under migration and ``excl``
    its entry type (SWP_MIGRATION_*)."""
    kind: int
    pfn: int
    idx: int = 0
    write: bool = False
    dirty: bool = False
    soft_dirty: bool = True
    excl: int = 0


class Pmd(NamedTuple):
    """A PMD (or hugetlb) leaf entry mapping a whole large folio."""
    pfn: int
    write: bool = False
    dirty: bool = False


class Vma(NamedTuple):
    """struct vm_area_struct: [start, end) in page indices.

    ``anon_vma``: vma->anon_vma is set (mm/rmap.c anon_vma_prepare() on the
    first fault that maps an anonymous page, anon_vma_fork() at fork when the
    parent's vma has one; split_vma(), mprotect and mremap's copy_vma() keep
    it).  Only whether there is one is kept: the model has no rmap walk that
    would tell two anon_vmas apart.  A vma without one maps no anonymous page
    (at most the shared zero page) and fork copies none of its ptes
    (vma_needs_copy()).  ``fork_child``: the vma's anon_vma_chain is not
    singular -- it was inherited at fork with an anon_vma (mm/vma.c
    vma_is_fork_child(), the list_is_singular() test of is_mergeable_anon_vma()
    in older releases); such a vma does not merge with one that has no anon_vma."""
    start: int
    end: int
    flags: int
    anon_vma: bool = False
    fork_child: bool = False
    #: vm_pgoff - start: 0 for a vma mmap() made (vm_pgoff follows the address); mremap() of a vma with an
    #: anon_vma keeps its vm_pgoff (copy_vma()), so its shift moves by the distance; two vmas merge only with equal
    #: shifts (contiguous vm_pgoffs: is_mergeable_vma() / can_vma_merge_*())
    pgoff_shift: int = 0


class Mm(NamedTuple):
    """struct mm_struct.  ``mmap_lock``: 0 free, n>0 readers, -1 a writer.
    ``ptl``: thread id holding the page-table lock (split PTLs collapse into
    one per mm at the model's scale), or -1."""
    alive: bool
    flags: int
    mmap_lock: int
    ptl: int
    write_protect_seq: int
    vmas: tuple
    ptes: tuple
    pmds: tuple


class SwapSlot(NamedTuple):
    """One slot of a swap device: swap_map count (number of swap ptes),
    whether SWAP_HAS_CACHE is set (the slot's page is in the swap cache: the
    folio pfn is ``cache``), and the content written to the device."""
    count: int
    cache: int
    data: int


class Ref(NamedTuple):
    """A reference to a folio held by something other than a page table.

    kind: 'pipe' (vmsplice pipe buffer), 'io_uring' (fixed buffer),
    'odirect' (in-flight O_DIRECT), 'gup_test' (PIN_LONGTERM_TEST_* pins),
    'gup' (a plain get_user_pages reference), 'lru_batch' (per-CPU lru_add
    batch), 'speculative' (get_page_unless_zero from a page-cache/pfn
    walker), 'isolate' (isolated for migration/reclaim), 'tmp' (a kernel
    path's own temporary reference, e.g. do_wp_page's get_page()),
    'gup_fast' (gup-fast's try_grab before its pte re-check).
    ``mm``/``addr`` name the process address it was taken for (-1 if none),
    ``owner`` the holder (pipe or buffer name, thread id), ``gup_flags`` the
    FOLL_* flags it was taken with, ``units`` what it adds to the refcount.
    ``taken_at`` is the address it was taken at, which mremap() does not
    change (``addr`` follows the page, mmap._move_refs()): a pipe's buffers
    and a fixed buffer's pages keep the order of the range they were taken
    from (fs/splice.c iter_to_pipe(), io_uring/rsrc.c io_sqe_buffer_register()).
    """
    kind: str
    owner: str
    mm: int
    addr: int
    pfn: int
    idx: int
    gup_flags: int
    units: int
    taken_at: int = -1


#: Reference kinds that exist only for a moment inside the kernel and never
#: legitimately observe a process's data.
TRANSIENT_REFS = frozenset({"lru_batch", "speculative", "isolate", "tmp", "gup_fast"})


class Thread(NamedTuple):
    """A thread running its operation list: ``pc`` is the index of the
    current operation; ``stack`` the kernel call stack of that operation,
    innermost last, as ``(label, frame)`` pairs: the next atomic step of each
    path and its typed locals (a caller's label is where it resumes when the
    path it called returns); empty at an operation boundary.  ``irqs_off``:
    the thread runs with local IRQs disabled (gup-fast); ``ret``: what the path
    it last returned from gave back (a fault's VM_FAULT_*, GUP's error), read
    by the caller's next step."""
    pc: int
    stack: tuple = ()
    irqs_off: bool = False
    ret: object = None

    @property
    def label(self) -> Optional[str]:
        """The next atomic step (None at an operation boundary)."""
        return self.stack[-1][0] if self.stack else None

    @property
    def frame(self):
        """The innermost path's locals (None at an operation boundary)."""
        return self.stack[-1][1] if self.stack else None


class Spec(NamedTuple):
    """The oracle's ghost state: what each process may observe.

    ``value[mm][addr]`` is the data the process must read at addr (ZERO when
    never written or unmapped); ``history[mm][addr]`` every value the process
    ever had there (its own data, inherited at fork); ``detached`` the refs
    whose address was unmapped (no longer required to stay coherent)."""
    value: tuple
    history: tuple
    detached: frozenset
    #: (mm, token): data DMA'd through a reference of mm after its address was unmapped (the reference may return it)
    dma: frozenset = frozenset()


class State(NamedTuple):
    folios: tuple      # index = pfn; None = free
    mms: tuple
    swap: tuple        # index = swap slot; None = free
    refs: tuple        # sorted tuple of Ref
    threads: tuple
    signals: frozenset
    next_token: int
    spec: Spec
    #: the next swap offset a small folio takes (the per-CPU swap cluster's cursor for order 0; offset 0 is the
    #: header): small folios take offsets in order from here, large ones runs of their own (``swap_alloc``)
    swap_next: int = 1
