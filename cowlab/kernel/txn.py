"""One atomic step's view of the kernel: a mutable working copy of a ``State``.

A kernel path's step runs against a ``Kernel`` object, calls kernel-named
helpers on it (``get_page``, ``page_count``, ``trylock_page``, ``set_pte_at``,
...) and either commits (a new immutable ``State``) or reports that it is
blocked on a lock (the step is then not enabled and nothing changes).  The
step is atomic because the kernel holds the lock that makes it so (PT lock,
page lock, mmap_lock) or because it is a single memory access.

The helpers only keep books: they know nothing about which design is running
or what the oracle wants; the ``effects`` list records the facts the oracle
needs (a store, a load, a copy, a fork, an unmap).
"""
from __future__ import annotations

import operator

from .types import (
    GUP_PIN_COUNTING_BIAS, PG_anon, PG_huge_zero, PG_ksm, PG_large, PG_locked, PG_lru, PG_swapcache, PG_hugetlb,
    PTE_PRESENT, PTE_SWAP, PTE_MIGRATION, ZERO, ZERO_PFN, FOLL_PIN, Folio, Mm, Pte, Ref, State, SwapSlot,
    MMF_HAS_PINNED,
)


class Blocked(Exception):
    """The step cannot run now (a lock it needs is held)."""


_pte_pfn = operator.attrgetter("pfn")


class ModelBug(Exception):
    """A kernel path did something the kernel never does (model-internal)."""


def _with(t: tuple, i: int, v):
    """``t._replace(<field i>=v)`` for a NamedTuple ``t``, without _replace's
    keyword handling (the kernel transaction's hot path: a lock, a flag, a
    refcount)."""
    return tuple.__new__(type(t), t[:i] + (v,) + t[i + 1:])


_FLAGS = Folio._fields.index("flags")
_REFCOUNT = Folio._fields.index("refcount")
_PTES = Mm._fields.index("ptes")
_MMAP_LOCK = Mm._fields.index("mmap_lock")
_PTL = Mm._fields.index("ptl")


class Kernel:
    __slots__ = ("s", "folios", "mms", "swap", "refs", "threads", "signals", "next_token", "swap_next", "effects",
                 "tid", "mm", "design", "spec", "HPAGE_PMD_NR", "ret", "SWP_SYNCHRONOUS_IO", "cpu",
                 "THP_SIZES", "thread_mm")

    def __init__(self, state: State, design, tid: int, mm: int, hpage_pmd_nr: int = 2, ret=None):
        self.s = state
        self.folios = list(state.folios)
        self.mms = list(state.mms)
        self.swap = list(state.swap)
        self.refs = list(state.refs)
        self.threads = list(state.threads)
        self.signals = state.signals
        self.next_token = state.next_token
        self.swap_next = state.swap_next
        self.spec = state.spec
        self.effects: list = []
        self.tid = tid
        self.mm = mm
        self.design = design
        #: subpages of a PMD-mapped THP / hugetlb page in this case (its geometry)
        self.HPAGE_PMD_NR = hpage_pmd_nr
        #: the mm of each thread (``CowModel.tmm``; the model sets it, as it sets ``cpu``)
        self.thread_mm = ()
        #: the swap device has SWP_SYNCHRONOUS_IO (zram: the default, as on the machine conformance runs on,
        #: conformance/zram.py); False for a disk (the case setting ``swap_device = "disk"``)
        self.SWP_SYNCHRONOUS_IO = True
        #: the anonymous THP sizes enabled for VM_HUGEPAGE vmas, in pages (the case setting ``thp_sizes``, as
        #: /sys/kernel/mm/transparent_hugepage/hugepages-<kB>kB/enabled = madvise): today's PMD size alone by default
        self.THP_SIZES = (hpage_pmd_nr,)
        #: the CPU the thread runs on (its per-CPU lru_add batch): CowModel.cpu_of
        self.cpu = tid
        #: what the path this thread last returned from gave back (a fault's VM_FAULT_*, GUP's error)
        self.ret = ret

    def commit(self) -> State:
        """The state the step leaves.  A part the step did not change is the
        parent's tuple itself: equal states stay equal either way, and later
        steps (the oracle's and the invariants' memos) tell "unchanged" by
        identity."""
        s = self.s
        folios = tuple(self.folios)
        if folios == s.folios:
            folios = s.folios
        mms = tuple(self.mms)
        if mms == s.mms:
            mms = s.mms
        swap = tuple(self.swap)
        if swap == s.swap:
            swap = s.swap
        refs = tuple(self.refs)
        if refs == s.refs:
            refs = s.refs
        else:
            refs = tuple(sorted(refs))            # (sorted only when changed)
            if refs == s.refs:
                refs = s.refs
        return State(folios, mms, swap, refs, tuple(self.threads), self.signals, self.next_token, self.spec,
                     self.swap_next)

    # ------------------------------------------------------------------ folios
    def folio(self, pfn: int) -> Folio:
        f = self.folios[pfn]
        if f is None:
            raise ModelBug(f"use of freed folio pfn {pfn}")
        return f

    def set_folio(self, pfn: int, **kw) -> None:
        self.folios[pfn] = self.folio(pfn)._replace(**kw)

    def alloc_folio(self, nr: int = 1, flags: int = PG_anon, data=None) -> int:
        """folio_alloc()/alloc_page_vma(): a new folio with refcount 1, held by
        the calling thread as a 'tmp' reference until it is mapped
        (``ref_to_mapping``) or put."""
        f = Folio(flags | (PG_large if nr > 1 and not flags & PG_hugetlb else 0), 0, (0,) * nr, 0, 0,
                  (False,) * nr, tuple(data) if data is not None else (ZERO,) * nr, (-1,) * nr)
        pfn = None
        for i in range(1, len(self.folios)):
            if self.folios[i] is None:
                pfn = i
                break
        if pfn is None:
            self.folios.append(None)
            pfn = len(self.folios) - 1
        self.folios[pfn] = f
        self.add_ref("tmp", pfn)
        return pfn

    def ref_to_mapping(self, pfn: int) -> None:
        """The thread's temporary reference becomes the page table's (the
        refcount stays; the mapping now accounts for it)."""
        self.refs.remove(self.my_tmp_ref(pfn))

    def other_threads_in_kernel(self) -> list:
        """The other threads of this process inside a kernel path (past the
        first step of an operation, not yet at its end): each holds the mm
        (its task's mm_users reference, include/linux/sched/mm.h mmget()), so
        exit_mmap(), at the last mmput(), runs after they leave the kernel."""
        tm = self.thread_mm
        return [t for t, th in enumerate(self.threads) if t != self.tid and tm[t] == self.mm and th.stack]

    def test(self, pfn: int, flag: int) -> bool:
        return bool(self.folio(pfn).flags & flag)

    def set_flag(self, pfn: int, flag: int) -> None:
        f = self.folio(pfn)
        self.folios[pfn] = _with(f, _FLAGS, f.flags | flag)

    def clear_flag(self, pfn: int, flag: int) -> None:
        f = self.folio(pfn)
        self.folios[pfn] = _with(f, _FLAGS, f.flags & ~flag)

    # page_count(), page_mapcount(), ...
    def page_count(self, pfn: int) -> int:
        return self.folio(pfn).refcount

    def page_mapcount(self, pfn: int, idx: int = 0) -> int:
        f = self.folio(pfn)
        return f.mapcount[idx] + f.entire_mapcount

    def total_mapcount(self, pfn: int) -> int:
        f = self.folio(pfn)
        return sum(f.mapcount) + f.entire_mapcount

    def folio_maybe_mapped_shared(self, pfn: int) -> bool:
        """folio_maybe_mapped_shared() (6.15): mapped by more than one mm.
        (The kernel tracks the mms of a large folio in folio->_mm_id; the
        model looks at the page tables, which say the same.)"""
        f = self.folio(pfn)
        if sum(f.mapcount) + f.entire_mapcount <= 1:
            return False
        found = 0
        for m in self.mms:
            # (the C-level membership test is only a fast filter: a swap pte's field holds a slot)
            if any(p is not None and p.pfn == pfn for p in m.pmds) or \
                    (pfn in map(_pte_pfn, filter(None, m.ptes)) and
                     any(p is not None and p.kind == 1 and p.pfn == pfn for p in m.ptes)):
                found += 1
                if found > 1:
                    return True
        return False

    def PageAnon(self, pfn: int) -> bool:
        return pfn != ZERO_PFN and self.test(pfn, PG_anon)

    def PageKsm(self, pfn: int) -> bool:
        return self.test(pfn, PG_ksm)

    def PageSwapCache(self, pfn: int) -> bool:
        return self.test(pfn, PG_swapcache)

    def PageLRU(self, pfn: int) -> bool:
        return self.test(pfn, PG_lru)

    def PageLocked(self, pfn: int) -> bool:
        return self.test(pfn, PG_locked)

    def folio_test_large(self, pfn: int) -> bool:
        return self.test(pfn, PG_large)

    def is_huge_zero_pfn(self, pfn: int) -> bool:
        """is_huge_zero_folio() / is_huge_zero_pmd()."""
        f = self.folios[pfn]
        return f is not None and bool(f.flags & PG_huge_zero)

    def PageAnonExclusive(self, pfn: int, idx: int = 0) -> bool:
        return self.folio(pfn).anon_exclusive[idx]

    def SetPageAnonExclusive(self, pfn: int, idx: int = 0) -> None:
        f = self.folio(pfn)
        ex = list(f.anon_exclusive)
        ex[idx] = True
        self.folios[pfn] = f._replace(anon_exclusive=tuple(ex))

    def ClearPageAnonExclusive(self, pfn: int, idx: int = 0) -> None:
        f = self.folio(pfn)
        ex = list(f.anon_exclusive)
        ex[idx] = False
        self.folios[pfn] = f._replace(anon_exclusive=tuple(ex))

    def folio_maybe_dma_pinned(self, pfn: int) -> bool:
        """include/linux/mm.h folio_maybe_dma_pinned() (page_maybe_dma_pinned()
        before 6.x): exact _pincount on large folios, refcount >= bias on
        small ones (false positives with >= 1024 ordinary references)."""
        f = self.folio(pfn)
        if f.flags & (PG_large | PG_hugetlb):
            return f.pincount > 0
        return f.refcount >= GUP_PIN_COUNTING_BIAS

    # page lock
    def trylock_page(self, pfn: int) -> bool:
        if self.test(pfn, PG_locked):
            return False
        self.set_flag(pfn, PG_locked)
        return True

    def lock_page(self, pfn: int) -> None:
        """lock_page(): sleeps while another holds it (the step is blocked)."""
        if not self.trylock_page(pfn):
            raise Blocked(f"page lock of pfn {pfn}")

    def unlock_page(self, pfn: int) -> None:
        self.clear_flag(pfn, PG_locked)

    # --------------------------------------------------------------- references
    def add_ref(self, kind: str, pfn: int, idx: int = 0, owner: str = "", mm: int = -1, addr: int = -1,
                gup_flags: int = 0) -> Ref:
        """try_grab_page()/get_page(): take a reference and record its holder."""
        f = self.folio(pfn)
        if gup_flags & FOLL_PIN:
            if f.flags & (PG_large | PG_hugetlb):
                units = 1
                self.folios[pfn] = f._replace(refcount=f.refcount + 1, pincount=f.pincount + 1)
            else:
                units = GUP_PIN_COUNTING_BIAS
                self.folios[pfn] = f._replace(refcount=f.refcount + units)
        else:
            units = 1
            self.folios[pfn] = _with(f, _REFCOUNT, f.refcount + 1)
        r = Ref(kind, owner or f"t{self.tid}", mm, addr, pfn, idx, gup_flags, units, addr)
        self.refs.append(r)
        return r

    def get_page(self, pfn: int, kind: str = "tmp", **kw) -> Ref:
        return self.add_ref(kind, pfn, **kw)

    def drop_ref(self, r: Ref) -> None:
        """put_page()/unpin_user_page(): drop a recorded reference."""
        try:
            self.refs.remove(r)
        except ValueError:
            raise ModelBug(f"dropping a reference that is not held: {r}") from None
        f = self.folio(r.pfn)
        pin = 1 if (r.gup_flags & FOLL_PIN and f.flags & (PG_large | PG_hugetlb)) else 0
        self.folios[r.pfn] = f._replace(refcount=f.refcount - r.units, pincount=f.pincount - pin)
        self._maybe_free(r.pfn)

    def put_page(self, pfn: int) -> None:
        """put_page() of a reference that has no holder record (a page-table
        mapping's reference after the mapcount was dropped, the swap cache's)."""
        f = self.folio(pfn)
        self.folios[pfn] = _with(f, _REFCOUNT, f.refcount - 1)
        self._maybe_free(pfn)

    def ref_put_units(self, pfn: int, n: int) -> None:
        f = self.folio(pfn)
        self.folios[pfn] = f._replace(refcount=f.refcount - n)
        self._maybe_free(pfn)

    def _maybe_free(self, pfn: int) -> None:
        f = self.folios[pfn]
        if f.refcount < 0:
            raise ModelBug(f"refcount of pfn {pfn} went negative")
        if f.refcount == 0:
            if sum(f.mapcount) or f.entire_mapcount:
                raise ModelBug(f"pfn {pfn} freed while still mapped")
            self.folios[pfn] = None    # __free_pages()

    def rmap_walk_pmds(self, pfn: int) -> list:
        """rmap_walk_anon() over the folio's anon_vma (all versions), PMD
        mappings: [(mm, hidx)] of the live mms mapping ``pfn`` by a PMD, in
        mm order (the model keeps no anon_vma: it looks at every mm)."""
        return [(mm, h) for mm, m in enumerate(self.mms) if m.alive
                for h, p in enumerate(m.pmds) if p is not None and p.pfn == pfn]

    def rmap_walk_ptes(self, pfn: int) -> list:
        """rmap_walk_anon(), pte mappings: [(mm, addr, pte)] of the present
        ptes of live mms that map a page of ``pfn``, in mm then address order."""
        return [(mm, a, p) for mm, m in enumerate(self.mms) if m.alive
                for a, p in enumerate(m.ptes) if self.is_present(p) and p.pfn == pfn]

    def refs_held_by(self, owner: str) -> list:
        """The references one holder holds, in the order taken (the model's
        book of what the kernel keeps in the holder's own structure: a CPU's
        lru_add folio batch, gup-fast's pages array, reclaim's and migration's
        isolation lists, an O_DIRECT bio, a pipe buffer, an io_uring fixed
        buffer): a holder finds its own without looking at anyone else's."""
        return [r for r in self.refs if r.owner == owner]

    def my_tmp_ref(self, pfn: int) -> Ref:
        for r in reversed(self.refs):      # a path's own references are the newest
            if r.pfn == pfn and r.kind == "tmp" and r.owner == f"t{self.tid}":
                return r
        raise ModelBug(f"thread {self.tid} holds no temporary reference on pfn {pfn}")

    # ------------------------------------------------------------------ mm / ptes
    def mmv(self, mm: int | None = None) -> Mm:
        return self.mms[self.mm if mm is None else mm]

    def set_mm(self, mm: int, **kw) -> None:
        self.mms[mm] = self.mms[mm]._replace(**kw)

    def pte(self, addr: int, mm: int | None = None):
        return self.mmv(mm).ptes[addr]

    def set_pte_at(self, addr: int, pte, mm: int | None = None) -> None:
        mm = self.mm if mm is None else mm
        m = self.mms[mm]
        ptes = list(m.ptes)
        ptes[addr] = pte
        self.mms[mm] = _with(m, _PTES, tuple(ptes))

    def pmd(self, hidx: int, mm: int | None = None):
        return self.mmv(mm).pmds[hidx]

    def set_pmd_at(self, hidx: int, pmd, mm: int | None = None) -> None:
        mm = self.mm if mm is None else mm
        m = self.mms[mm]
        pmds = list(m.pmds)
        pmds[hidx] = pmd
        self.mms[mm] = m._replace(pmds=tuple(pmds))

    def find_vma(self, addr: int, mm: int | None = None):
        for v in self.mmv(mm).vmas:
            if v.start <= addr < v.end:
                return v
        return None

    def mm_set_has_pinned_flag(self, mm: int | None = None) -> None:
        m = self.mmv(mm)
        self.set_mm(self.mm if mm is None else mm, flags=m.flags | MMF_HAS_PINNED)

    def mm_has_pinned(self, mm: int | None = None) -> bool:
        return bool(self.mmv(mm).flags & MMF_HAS_PINNED)

    # locks: mmap_lock (rw semaphore) and the page-table lock
    def mmap_read_lock(self, mm: int | None = None) -> None:
        mm = self.mm if mm is None else mm
        m = self.mms[mm]
        if m.mmap_lock < 0:
            raise Blocked("mmap_lock held for write")
        self.mms[mm] = _with(m, _MMAP_LOCK, m.mmap_lock + 1)

    def mmap_read_unlock(self, mm: int | None = None) -> None:
        mm = self.mm if mm is None else mm
        m = self.mms[mm]
        self.mms[mm] = _with(m, _MMAP_LOCK, m.mmap_lock - 1)

    def mmap_write_lock(self, mm: int | None = None) -> None:
        mm = self.mm if mm is None else mm
        m = self.mms[mm]
        if m.mmap_lock != 0:
            raise Blocked("mmap_lock held")
        self.mms[mm] = _with(m, _MMAP_LOCK, -1)

    def mmap_write_unlock(self, mm: int | None = None) -> None:
        mm = self.mm if mm is None else mm
        self.mms[mm] = _with(self.mms[mm], _MMAP_LOCK, 0)

    def pte_lock(self, mm: int | None = None) -> None:
        """pte_offset_map_lock(): take the page-table lock."""
        mm = self.mm if mm is None else mm
        m = self.mms[mm]
        if m.ptl != -1:
            raise Blocked("page-table lock held")
        self.mms[mm] = _with(m, _PTL, self.tid)

    def pte_unlock(self, mm: int | None = None) -> None:
        mm = self.mm if mm is None else mm
        self.mms[mm] = _with(self.mms[mm], _PTL, -1)

    # ------------------------------------------------------------------ swap
    def swap_alloc(self, data: int) -> int:
        """get_swap_page() / folio_alloc_swap() for a small folio: the next
        free offset from the order-0 cursor (``State.swap_next``), which then
        moves past it -- the per-CPU swap cluster hands out offsets in order
        and moves on, never back to one freed before it (a live 6.18 probe:
        eight pages paged out, freed, eight more paged out take offsets 9..16,
        not 1..8 again; swapoff/swapon starts from 1).  Offset 0 holds the
        swap header and is never allocated (setup_swap_map(): ``swap_map[0] =
        SWAP_MAP_BAD``, every version).  Large folios take runs of their own
        (``swapfile.folio_alloc_swap``: the kernel keeps a cluster per order),
        which the cursor steps over.  Offsets matter from 6.12 on:
        alloc_swap_folio() takes an mTHP only when the entry's offset and the
        address agree modulo its size (thp_swap_suitable_orders()) and the
        entries are consecutive.  One cursor stands for every CPU's (the
        kernel keeps one per CPU and order, in clusters of SWAPFILE_CLUSTER
        offsets)."""
        swap = self.swap
        i = max(self.swap_next, 1)
        while i < len(swap) and swap[i] is not None:
            i += 1
        while len(swap) <= i:
            swap.append(None)
        swap[i] = SwapSlot(0, -1, data)
        self.swap_next = i + 1
        return i

    def set_slot(self, slot: int, **kw) -> None:
        self.swap[slot] = self.swap[slot]._replace(**kw)

    def page_swapcount(self, pfn: int, idx: int = 0) -> int:
        """page_swapcount(): swap ptes referencing this page's swap slot."""
        f = self.folio(pfn)
        if not f.flags & PG_swapcache or f.swap[idx] < 0:
            return 0
        return self.swap[f.swap[idx]].count

    def maybe_free_slot(self, slot: int) -> None:
        s = self.swap[slot]
        if s.count == 0 and s.cache == -1:       # no SWAP_HAS_CACHE (swapcache_prepare() sets it with no folio)
            self.swap[slot] = None

    # ------------------------------------------------------------------ data
    def new_token(self) -> int:
        self.next_token += 1
        return self.next_token

    def effect(self, e) -> None:
        """Record ``e``, one of the types of kernel/effects.py, for the oracle and the trace."""
        self.effects.append(e)

    # present-pte helpers
    @staticmethod
    def mk_pte(pfn: int, idx: int = 0, write: bool = False, dirty: bool = False, soft_dirty: bool = True) -> Pte:
        return Pte(PTE_PRESENT, pfn, idx, write, dirty, soft_dirty, 0)

    @staticmethod
    def swp_pte(slot: int, excl: bool) -> Pte:
        return Pte(PTE_SWAP, slot, 0, False, False, True, int(excl))

    @staticmethod
    def migration_pte(pfn: int, idx: int, typ: int) -> Pte:
        return Pte(PTE_MIGRATION, pfn, idx, False, False, True, typ)

    @staticmethod
    def is_present(pte) -> bool:
        return pte is not None and pte.kind == PTE_PRESENT

    @staticmethod
    def is_migration(pte) -> bool:
        return pte is not None and pte.kind == PTE_MIGRATION
