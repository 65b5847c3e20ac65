"""Footprints: what one atomic step of the model reads and writes, for
dynamic partial-order reduction (``explore(..., dpor=True)``).

The explorer sees a footprint as an opaque value and asks the model whether
two are dependent (``CowModel.dependent``).  Here a footprint is

* ``reads`` / ``writes``: sets of keys naming one object --
  ``("f", pfn, field)`` one field of a folio (``"nr"`` its number of pages,
  ``"*"`` whether it exists; its flags one key per bit, ``("f", pfn, "flags",
  PG_x)``: ``folio_test_*()``/``folio_set_*()``/``folio_clear_*()`` read and
  write their bit, ``f.flags`` read whole reads every bit), ``("sw", slot)`` a swap slot, ``("refs", pfn)`` the
  references held on a folio, ``("refo", pfn, mm)`` the lasting ones one process holds,
  ``("refown", owner)`` those one holder holds, ``("rmap", pfn)`` who maps a folio,
  ``("pte", mm, addr)``, ``("pmd", mm, h)``,
  ``("vmas", mm)``, ``("alive", mm)``, ``("mmflags", mm)``, ``("mmap_lock", mm)``,
  ``("ptl", mm)``, ``("wps", mm)`` (write_protect_seq), ``("sig", event)`` a
  sync event, ``("inflight", mm, addr)`` a mapping a path declares in flight,
  ``("pin", mm, addr, owner)`` the coherence of one pin, ``("irqs", tid)``
  whether a thread runs with IRQs off (gup-fast; tlb_remove_table_sync_one() waits for it),
  ``("inpath", tid)`` whether a thread is inside a kernel path (do_exit() waits for it);
* ``rgroups``: whole classes a step read (``("mm", i)``: mm i used whole;
  ``("ptes", i)``/``("pmds", i)``: every entry of its page tables; ``("f", pfn)``:
  a folio used whole; ``("mm",)``, ``("f",)``, ``("refs",)``, ``("sw",)``,
  ``("sig",)``, ``("irqs",)``: every mm, folio, reference, slot, event, thread),
  dependent on any write in that class.  The tracked step sees folios and mms
  as views that record the fields it reads (``_FolioView``, ``_MmView``);
* ``glob``: the step is dependent on every other step.

Writes are exact: the difference between the state before and after.  Reads
are recorded while the step runs (``TrackingKernel``): the helpers name what
they read, and a direct scan of a class reads the whole class.  The oracle
judges a step by its effects against the whole state, so a step with effects
(a store, a load, a copy, a fork, ...) is ``glob``; a step without effects can
only change which pins are disconnected, so it writes
``("pin", mm, addr, owner)`` for every coherent pin it takes or drops and every
one whose inputs in ``disconnected()`` (its pte or pmd, its mm's liveness,
mappings in flight at its address, for a swap pte its folio's existence,
flags and swap entries) it writes.  The model's own invariant checks are not
part of a footprint: a reduced search checks them on the states it visits.

* ``incs``: keys the step only incremented -- ``mmap_read_lock``, and what
  ``add_ref`` (get_page / try_grab_folio) changes: the refcount and pincount,
  the references on the folio and the process's lasting ones.  Two increments
  commute; an increment conflicts with any read or write of the key.
* ``decs``: what a ``drop_ref`` (put_page / unpin_user_page) that leaves the
  folio in use changes.  A decrement commutes with an increment but not with
  another decrement (of two drops, either could be the one that frees), nor
  with a read or write.  A drop that frees the folio reads its counts.
  A key stays a write when the step also reads it elsewhere, reads the folio
  or its references whole, or allocated the folio (``_increments``).

Page frames, swap slots and content tokens are interchangeable identities
(allocation takes any free one; no verdict names one), so allocating one is
not a read of the others: two steps that allocate commute up to renaming them,
as the static partition of ``independent_groups`` already assumes.  Swap
offsets are not where a large folio can arise (``CowModel.rename_slots``
false): alloc_swap_folio() (6.12) swaps an mTHP in by the offsets' alignment
and order, so there a step that takes offsets reads and writes the
allocator's cursor ``("swcur",)``.
"""
from __future__ import annotations

from .kernel.txn import Kernel
from .kernel.effects import (Copy, CopyPte, DupMmap, Exit, KsmBreakCow, KsmMerge, Load, Migrate, MigrateFailed, Move,
                             Store, Unmap)
from .kernel import types as _types
from .kernel.types import PG_hugetlb, PG_large, PG_swapcache, PTE_SWAP, TRANSIENT_REFS, Folio, Mm
from .oracle import coherent

#: Mm fields -> footprint key class
_MM_FIELDS = (("alive", "alive"), ("flags", "mmflags"), ("mmap_lock", "mmap_lock"), ("ptl", "ptl"),
              ("write_protect_seq", "wps"), ("vmas", "vmas"))


def _bits(keys, groups=()) -> int:
    """A 128-bit Bloom signature of ``keys`` (and of the classes ``groups``, apart from keys)."""
    m = 0
    for k in keys:
        m |= 1 << (hash(k) & 127)
    for g in groups:
        m |= 1 << (hash((0, g)) & 127)
    return m


class Footprint:
    """``wbits``/``abits``: Bloom signatures of what the step writes or
    increments (and the classes it writes) and of what it reads or writes
    (and the classes it reads): two steps can be dependent only if one's
    ``wbits`` meets the other's ``abits`` (``dependent`` tests that first)."""
    __slots__ = ("reads", "writes", "rgroups", "wgroups", "glob", "incs", "decs", "room", "wbits", "abits", "_h")

    def __init__(self, reads=frozenset(), writes=frozenset(), rgroups=frozenset(), wgroups=frozenset(), glob=False,
                 incs=frozenset(), decs=frozenset(), room=None):
        self.reads, self.writes, self.rgroups, self.wgroups, self.glob = reads, writes, rgroups, wgroups, glob
        self.incs, self.decs = incs, decs
        #: {("f", pfn, "refcount"): n} for a refcount in incs or decs: an increment's amount; a decrement's
        #: (count left, amount): what the zero test of put_page() needs (``_counts_commute``)
        self.room = room or {}
        if glob:
            self.wbits = self.abits = -1
        else:
            w = _bits(writes, wgroups)
            d = _bits(decs) if decs else 0
            self.wbits = (w | _bits(incs) if incs else w) | d
            self.abits = w | _bits(reads, rgroups) | d

    def _key(self):
        return (self.glob, self.reads, self.writes, self.rgroups, self.wgroups, self.incs, self.decs,
                frozenset(self.room.items()))

    def __eq__(self, other):
        return other is self or (type(other) is Footprint and self._key() == other._key())

    def __hash__(self):
        try:
            return self._h
        except AttributeError:              # (computed once: DPOR's summaries hash each footprint many times)
            self._h = h = hash(self._key())
            return h

    def __repr__(self):
        if self.glob:
            return "Footprint(global)"
        return f"Footprint(reads={sorted(map(str, self.reads))}, writes={sorted(map(str, self.writes))}, " \
               f"scans={sorted(map(str, self.rgroups))})"


def dependent(a: Footprint, b: Footprint) -> bool:
    """Two steps (of different threads) are dependent when one writes what the
    other reads or writes, or one is global.  Two increments (``incs``: taking
    or dropping mmap_lock for read) commute; an increment is dependent on any
    read or write of what it increments."""
    if a.glob or b.glob:
        return True
    if not (a.wbits & b.abits or b.wbits & a.abits):
        return False          # (nothing one writes is anything the other touches)
    aw, bw = a.writes, b.writes
    if (a.incs and (a.incs & b.reads or a.incs & bw)) or (b.incs and (b.incs & a.reads or b.incs & aw)):
        return True
    if a.decs:
        if a.decs & b.reads or a.decs & bw:
            return True
        if (b.decs or b.incs) and not _counts_commute(a, b):
            return True
    if b.decs:
        if b.decs & a.reads or b.decs & aw:
            return True
        if a.incs and not _counts_commute(b, a):
            return True
    return bool((aw and (aw & b.reads or aw & bw)) or (bw and bw & a.reads)
                or (a.wgroups and a.wgroups & b.rgroups) or (b.wgroups and b.wgroups & a.rgroups))


#: the references taken without holding one (or a mapping under the PT lock) already: gup-fast's
#: try_grab_folio_fast() on a lockless pte snapshot, a pfn walker's get_page_unless_zero().  Only such a get
#: can race with the drop that frees the folio: any other get_page() leaves a reference the drop does not take.
TRY_GET_REFS = frozenset({"gup_fast", "speculative"})


def _counts_commute(a: Footprint, b: Footprint) -> bool:
    """``a`` decrements, ``b`` increments or decrements: whether the zero test of
    put_page() comes out the same in either order.  Only a refcount has one
    (a drop to zero frees the folio); the pincount and the holders' records
    commute.  A decrement of refcount that leaves ``left`` after taking ``d``
    commutes with another (``left2``, ``d2``) when one of them, run second,
    still leaves the folio in use (``left - d2 > 0`` or ``left2 - d > 0``: at
    one state both say the same; as they ran, the second one's own test); with
    an increment when ``left > g``, ``g`` the units a try-get took
    (``TRY_GET_REFS``; moved before that get, the drop still leaves the folio
    in use; any other get is 0: its caller holds a reference of its own)."""
    shared = a.decs & (b.decs | b.incs)
    for k in shared:
        if k[-1] != "refcount":
            continue
        left, d = a.room[k]
        if k in b.decs:
            left2, d2 = b.room[k]
            if left - d2 <= 0 and left2 - d <= 0:
                return False
        elif left <= b.room[k]:
            return False
    return True


class _Rec:
    __slots__ = ("reads", "groups", "quiet", "fresh", "gets", "puts", "got", "dropped")

    def __init__(self):
        self.reads, self.groups, self.quiet = set(), set(), 0
        self.fresh = set()       # ("f", pfn) / ("sw", slot) this step allocated
        self.gets = set()        # the keys add_ref() incremented (see ``_add_ref``)
        self.puts = set()        # the keys drop_ref() decremented without freeing the folio (``_drop_ref``)
        self.got = {}            # pfn -> units add_ref() added to its refcount by a try-get (``TRY_GET_REFS``)
        self.dropped = {}        # pfn -> [units drop_ref() took from its refcount, the lowest count it left]


class _TList(list):
    """A list that records which items a step reads (``cls``: the key class)."""
    __slots__ = ("rec", "cls")

    def __getitem__(self, i):
        rec = self.rec
        if not rec.quiet:
            if type(i) is int:
                rec.reads.add((self.cls, i))
            else:
                rec.groups.add((self.cls,))
        return list.__getitem__(self, i)

    def __iter__(self):
        if not self.rec.quiet:
            self.rec.groups.add((self.cls,))
        return list.__iter__(self)

    def __reversed__(self):
        if not self.rec.quiet:
            self.rec.groups.add((self.cls,))
        return list.__reversed__(self)

    def __contains__(self, x):
        if not self.rec.quiet:
            self.rec.groups.add((self.cls,))
        return list.__contains__(self, x)

    def index(self, *a):
        if not self.rec.quiet:
            self.rec.groups.add((self.cls,))
        return list.index(self, *a)


_FOLIO_FIELDS = frozenset(Folio._fields) | {"nr"}


class _TupleView:
    """What the folio and mm views share: a NamedTuple of class ``_BASE``
    (its id in the instance's ``__dict__`` under ``_ID``) used whole
    (compared, hashed, iterated, indexed) reads the group ``(_GROUP, id)``
    (``(_GROUP,)`` for a copy that has no id yet); ``_replace`` and slicing
    copy it into a plain ``_BASE`` and read nothing."""
    __slots__ = ()

    def _whole(self):
        rec = _VIEW_REC[0]
        if rec is not None and not rec.quiet:
            cls = type(self)
            i = object.__getattribute__(self, "__dict__").get(cls._ID)
            rec.groups.add((cls._GROUP,) if i is None else (cls._GROUP, i))

    def _replace(self, **kw):
        base = type(self)._BASE
        return tuple.__new__(base, [kw.pop(f, v) for f, v in zip(base._fields, tuple.__iter__(self))])

    def __getitem__(self, i):
        if type(i) is not slice:
            self._whole()
        return tuple.__getitem__(self, i)

    def __iter__(self):
        self._whole()
        return tuple.__iter__(self)

    def __len__(self):
        return tuple.__len__(self)

    def __eq__(self, other):
        self._whole()
        return tuple.__eq__(self, other)

    def __ne__(self, other):
        self._whole()
        return tuple.__ne__(self, other)

    def __hash__(self):
        self._whole()
        return tuple.__hash__(self)

    def __repr__(self):
        return type(self).__name__ + tuple.__repr__(self)


class _FolioView(_TupleView, Folio):
    """A folio as a tracked step sees it: reading a field reads ``("f", pfn,
    field)`` (``nr``: the number of pages, ``("f", pfn, "nr")``); using it
    whole (comparing, hashing, iterating, indexing) reads the whole folio (the
    read group ``("f", pfn)``).  Copying it with fields replaced (``_replace``,
    slicing) reads nothing: the fields copied keep their value in the result,
    whichever step changed them.  A copy stored back into ``folios`` is
    stored as a plain ``Folio``; a copy read before it is stored reads every
    folio (``("f",)``)."""

    _BASE, _ID, _GROUP = Folio, "pfn", "f"

    def __getattribute__(self, name):
        if name in _FOLIO_FIELDS:
            d = object.__getattribute__(self, "__dict__")
            rec = _VIEW_REC[0]
            if rec is not None and not rec.quiet:
                pfn = d.get("pfn")
                if pfn is None:
                    rec.groups.add(("f",))
                else:
                    rec.reads.add(("f", pfn, name))
        return Folio.__getattribute__(self, name)


#: the record the folio views of the step being tracked write to (steps run one at a time)
_VIEW_REC = [None]


class _FolioList(_TList):
    """The folios: indexing one reads whether it exists (``("f", pfn, "*")``)
    and gives a ``_FolioView``; storing one stores a plain ``Folio``."""
    __slots__ = ()

    def __getitem__(self, i):
        rec = self.rec
        if rec.quiet:
            return list.__getitem__(self, i)
        if type(i) is not int:
            rec.groups.add(("f",))
            return list.__getitem__(self, i)
        f = list.__getitem__(self, i)
        rec.reads.add(("f", i if i >= 0 else len(self) + i, "*"))
        if f is None:
            return None
        v = tuple.__new__(_FolioView, f)
        v.pfn = i if i >= 0 else len(self) + i
        return v

    def __setitem__(self, i, v):
        if type(i) is slice:
            v = [tuple.__new__(Folio, x) if isinstance(x, _FolioView) else x for x in v]
        elif isinstance(v, _FolioView):
            v = tuple.__new__(Folio, tuple.__iter__(v))
        list.__setitem__(self, i, v)

    def append(self, v):
        list.append(self, tuple.__new__(Folio, tuple.__iter__(v)) if isinstance(v, _FolioView) else v)


#: Mm field -> the key a read of it names (``ptes`` and ``pmds`` read whole: the groups ``("ptes", mm)``,
#: ``("pmds", mm)``)
_MM_READ = {"alive": "alive", "flags": "mmflags", "mmap_lock": "mmap_lock", "ptl": "ptl",
            "write_protect_seq": "wps", "vmas": "vmas", "ptes": "ptes", "pmds": "pmds"}


class _MmView(_TupleView, Mm):
    """An mm as a tracked step sees it: reading a field reads that field's key
    (``ptes``/``pmds``: every entry of the mm, the read groups ``("ptes", mm)``,
    ``("pmds", mm)``); using it whole reads the group ``("mm", mm)``.  Copying
    it with fields replaced reads nothing (see ``_FolioView``); a copy read
    before it is stored reads every mm."""

    _BASE, _ID, _GROUP = Mm, "mm", "mm"

    def __getattribute__(self, name):
        key = _MM_READ.get(name)
        if key is not None:
            rec = _VIEW_REC[0]
            if rec is not None and not rec.quiet:
                i = object.__getattribute__(self, "__dict__").get("mm")
                if i is None:
                    rec.groups.add(("mm",))
                elif key in ("ptes", "pmds"):
                    rec.groups.add((key, i))
                else:
                    rec.reads.add((key, i))
        return Mm.__getattribute__(self, name)


def _mm_view(m, i):
    v = tuple.__new__(_MmView, m)
    v.mm = i
    return v


class _MmList(_TList):
    """The mms (as many as the case has processes, always): indexing or
    iterating gives ``_MmView``s, which record the fields read; storing one
    stores a plain ``Mm``."""
    __slots__ = ()

    def __getitem__(self, i):
        rec = self.rec
        if rec.quiet:
            return list.__getitem__(self, i)
        if type(i) is not int:
            rec.groups.add(("mm",))
            return list.__getitem__(self, i)
        return _mm_view(list.__getitem__(self, i), i if i >= 0 else len(self) + i)

    def __iter__(self):
        if self.rec.quiet:
            return list.__iter__(self)
        return (_mm_view(m, i) for i, m in enumerate(list.__iter__(self)))

    def __setitem__(self, i, v):
        if type(i) is slice:
            v = [tuple.__new__(Mm, x) if isinstance(x, _MmView) else x for x in v]
        elif isinstance(v, _MmView):
            v = tuple.__new__(Mm, tuple.__iter__(v))
        list.__setitem__(self, i, v)


class _RefList(_TList):
    __slots__ = ()

    def remove(self, r):
        if not self.rec.quiet:
            self.rec.reads.add(("refs", r.pfn))
        list.remove(self, r)


class _TSet(frozenset):
    """The set of sync events: membership reads one event."""
    rec = None

    def __contains__(self, x):
        if self.rec is not None and not self.rec.quiet:
            self.rec.reads.add(("sig", x))
        return frozenset.__contains__(self, x)

    def __iter__(self):
        if self.rec is not None and not self.rec.quiet:
            self.rec.groups.add(("sig",))
        return frozenset.__iter__(self)


def _tl(cls_, rec, key, items):
    t = cls_(items)
    t.rec, t.cls = rec, key
    return t


def _quiet(keys):
    """Wrap a Kernel helper: record ``keys(self, *args)`` as its reads and run it untracked."""
    def deco(name):
        base = getattr(Kernel, name)

        def f(self, *a, **kw):
            rec = self.rec
            if not rec.quiet:
                rec.reads.update(keys(self, *a, **kw))
            rec.quiet += 1
            try:
                return base(self, *a, **kw)
            finally:
                rec.quiet -= 1
        f.__name__ = f.__qualname__ = name
        f.__doc__ = base.__doc__
        return f
    return deco


#: the folio flag bits (kernel/types.py ``PG_*``): a folio's flags are one key per bit, ``("f", pfn, "flags",
#: bit)``, so that PG_dirty set by a store and PG_locked taken by reclaim do not conflict; a read of the whole field
#: (``f.flags`` through a view) reads every bit (``_whole_flags``)
_FLAG_BITS = tuple(sorted(v for n, v in vars(_types).items() if n.startswith("PG_") and type(v) is int))


def _flag_keys(pfn, mask):
    return [("f", pfn, "flags", b) for b in _FLAG_BITS if mask & b]


def _flag_read(k, pfn, flag):
    """What ``test``/``set_flag``/``clear_flag`` read: whether the folio exists, and the bits of ``flag``."""
    return (("f", pfn, "*"), *_flag_keys(pfn, flag))


def _whole_flags(keys):
    """Replace each read of a whole flags field, ``("f", pfn, "flags")``, by its bits."""
    whole = [k for k in keys if len(k) == 3 and k[2] == "flags" and k[0] == "f"]
    if whole:
        keys.difference_update(whole)
        for k in whole:
            keys.update(_flag_keys(k[1], -1))


def _mm(k, mm):
    return k.mm if mm is None else mm


def _rmap_keys(k, pfn):
    """What an rmap walk of ``pfn`` reads: ``("rmap", pfn)`` (written by any
    change of a pte or pmd that maps it, before or after) and the liveness of
    every mm with an entry for it (read from the untracked mms)."""
    keys = [("rmap", pfn)]
    for i, m in enumerate(list.__iter__(k.mms)):
        if (any(p is not None and p.kind != PTE_SWAP and p.pfn == pfn for p in m.ptes)
                or any(p is not None and p.pfn == pfn for p in m.pmds)):
            keys.append(("alive", i))
    return keys


_HELPERS = {
    # page tables and the mm's fields: exactly the entry or field read
    "pte": lambda k, addr, mm=None: (("pte", _mm(k, mm), addr),),
    "set_pte_at": lambda k, addr, pte, mm=None: (),
    "pmd": lambda k, hidx, mm=None: (("pmd", _mm(k, mm), hidx),),
    "set_pmd_at": lambda k, hidx, pmd, mm=None: (),
    "find_vma": lambda k, addr, mm=None: (("vmas", _mm(k, mm)),),
    "set_mm": lambda k, mm, **kw: (),
    # set_bit(MMF_HAS_PINNED): idempotent, its caller does not look at the old bit -- ("mmf_set", mm), an
    # increment of ("mmflags", mm): two of them commute, either conflicts with a step that reads the flags
    "mm_set_has_pinned_flag": lambda k, mm=None: (("mmf_set", _mm(k, mm)),),
    "mm_has_pinned": lambda k, mm=None: (("mmflags", _mm(k, mm)),),
    # folio flags: one key per bit (``_flag_keys``); setting or clearing a bit reads it (set or not, the same
    # footprint: the write is the difference the step made)
    "test": _flag_read,
    "set_flag": _flag_read,
    "clear_flag": _flag_read,
    # taking and dropping mmap_lock for read: ("mmap_rl", mm), an increment of the lock (see ``footprint``)
    "mmap_read_lock": lambda k, mm=None: (("mmap_rl", _mm(k, mm)),),
    "mmap_read_unlock": lambda k, mm=None: (("mmap_rl", _mm(k, mm)),),
    "mmap_write_lock": lambda k, mm=None: (("mmap_lock", _mm(k, mm)),),
    "mmap_write_unlock": lambda k, mm=None: (),
    "pte_lock": lambda k, mm=None: (("ptl", _mm(k, mm)),),
    "pte_unlock": lambda k, mm=None: (),
    # allocation takes any free frame or slot (interchangeable identities, see the module doc)
    "alloc_folio": lambda k, nr=1, flags=0, data=None: (),
    "swap_alloc": lambda k, data: (),
    # an rmap walk: who maps the folio, and whether each mm that has an entry for it is alive
    "rmap_walk_pmds": _rmap_keys,
    "rmap_walk_ptes": _rmap_keys,
    # the references one holder holds (its own batch, array, list, bio, pipe or buffer)
    "refs_held_by": lambda k, owner: (("refown", owner),),
    # a path's own temporary reference on a folio: the references on that folio
    "my_tmp_ref": lambda k, pfn: (("refs", pfn),),
    # whether the process's other threads are inside a kernel path (do_exit() waits for them)
    "other_threads_in_kernel": lambda k: [("inpath", t) for t in range(len(k.thread_mm))
                                          if t != k.tid and k.thread_mm[t] == k.mm],
    # building the new State reads nothing the step decides by
    "commit": lambda k: (),
}


class TrackingKernel(Kernel):
    """A ``Kernel`` that records what the step reads (into ``rec``)."""
    __slots__ = ("rec",)

    def __init__(self, rec, state, design, tid, mm, hpage_pmd_nr=2, ret=None):
        Kernel.__init__(self, state, design, tid, mm, hpage_pmd_nr, ret)
        self.rec = rec
        self.folios = _tl(_FolioList, rec, "f", self.folios)
        self.swap = _tl(_TList, rec, "sw", self.swap)
        self.refs = _tl(_RefList, rec, "refs", self.refs)
        self.mms = _tl(_MmList, rec, "mm", self.mms)
        # the threads: another thread's irqs_off is what an IPI waits for (("irqs", tid))
        self.threads = _tl(_TList, rec, "irqs", self.threads)
        sig = _TSet(self.signals)
        sig.rec = rec
        self.signals = sig


for _name, _keys in _HELPERS.items():
    setattr(TrackingKernel, _name, _quiet(_keys)(_name))


def _alloc_folio(self, *a, **kw):
    pfn = _quiet_alloc_folio(self, *a, **kw)
    self.rec.fresh.add(pfn)
    return pfn


def _swap_alloc(self, *a, **kw):
    slot = _quiet_swap_alloc(self, *a, **kw)
    self.rec.fresh.add(("sw", slot))
    return slot


_quiet_alloc_folio, _quiet_swap_alloc = TrackingKernel.alloc_folio, TrackingKernel.swap_alloc
TrackingKernel.alloc_folio, TrackingKernel.swap_alloc = _alloc_folio, _swap_alloc


def _add_ref(self, kind, pfn, idx=0, owner="", mm=-1, addr=-1, gup_flags=0):
    """``Kernel.add_ref`` tracked: it reads whether the folio exists and its
    flags (small or large), and increments its refcount (and pincount), the
    references on it and, for a lasting reference, those its process holds
    (``_Rec.gets``; ``footprint`` keeps them as increments when the step reads
    them nowhere else)."""
    rec = self.rec
    if rec.quiet:
        return Kernel.add_ref(self, kind, pfn, idx, owner, mm, addr, gup_flags)
    rec.reads.add(("f", pfn, "*"))
    rec.reads.update(_flag_keys(pfn, PG_large | PG_hugetlb))     # small or large
    gets = rec.gets
    gets.add(("f", pfn, "refcount"))
    gets.add(("f", pfn, "pincount"))
    gets.add(("refs", pfn))
    if kind not in TRANSIENT_REFS:
        gets.add(("refo", pfn, mm))
    rec.quiet += 1
    try:
        r = Kernel.add_ref(self, kind, pfn, idx, owner, mm, addr, gup_flags)
    finally:
        rec.quiet -= 1
    if kind in TRY_GET_REFS:
        rec.got[pfn] = rec.got.get(pfn, 0) + r.units
    return r


TrackingKernel.add_ref = _add_ref


def _drop_ref(self, r):
    """``Kernel.drop_ref`` tracked: dropping a reference that leaves the folio
    in use decrements what ``add_ref`` increments (``_Rec.puts``): it commutes
    with taking one, not with another drop (one of two drops may be the one that
    frees).  A drop that frees the folio read its counts (a write, as before)."""
    rec = self.rec
    if rec.quiet:
        return Kernel.drop_ref(self, r)
    pfn = r.pfn
    rec.reads.add(("f", pfn, "*"))
    rec.reads.update(_flag_keys(pfn, PG_large | PG_hugetlb))     # small or large
    rec.quiet += 1
    try:
        Kernel.drop_ref(self, r)
    finally:
        rec.quiet -= 1
    f = list.__getitem__(self.folios, pfn)
    if f is None:
        rec.reads.update((("f", pfn, "refcount"), ("f", pfn, "mapcount"), ("f", pfn, "entire_mapcount"),
                          ("refs", pfn)))
        return
    d = rec.dropped.get(pfn)
    rec.dropped[pfn] = [r.units, f.refcount] if d is None else [d[0] + r.units, min(d[1], f.refcount)]
    puts = rec.puts
    puts.add(("f", pfn, "refcount"))
    puts.add(("f", pfn, "pincount"))
    puts.add(("refs", pfn))
    if r.kind not in TRANSIENT_REFS:
        puts.add(("refo", pfn, r.mm))


TrackingKernel.drop_ref = _drop_ref


def _increments(rec, writes: set, incs: set, decs: set, room: dict) -> None:
    """Move from ``writes`` to ``incs`` what the step changed only by taking
    references (``add_ref``): two ``get_page()``s commute (an atomic increment
    each, the holders' records a set), and either conflicts with any step that
    reads or writes the count.  A key stays a write when the step also read it,
    its folio whole, or the references (on that folio or all of them)."""
    groups, reads = rec.groups, rec.reads
    if ("f",) in groups or ("refs",) in groups:
        return
    gets, puts, fresh = rec.gets, rec.puts, rec.fresh
    for k in gets | puts:
        if k not in writes or k in reads:
            continue
        pfn = k[1]
        if pfn in fresh or ("f", pfn) in groups or ("f", pfn) in reads or ("refs", pfn) in reads:
            continue              # (a folio the step allocated: its keys are left out, ``_drop_fresh``)
        writes.discard(k)
        (decs if k in puts else incs).add(k)
        if k[-1] == "refcount":
            if k in puts:
                units, left = rec.dropped[pfn]
                # (a step that took and dropped: as if it left nothing, dependent on every other count)
                room[k] = (0 if k in gets else left, units)
            else:
                room[k] = rec.got.get(pfn, 0)


def _drop_fresh(keys, fresh):
    """A frame or slot free before the step is no other step's business (allocation
    takes any free one): keys naming what the step allocated are left out (its
    existence is kept as an increment: see ``footprint``)."""
    if not fresh:
        return keys
    return {k for k in keys if not ((k[0] in ("f", "refs", "refo", "rmap", "ifp") and len(k) > 1 and k[1] in fresh)
                                    or (k[0] in ("sw", "rmapswap") and len(k) > 1 and ("sw", k[1]) in fresh))}


# ----------------------------------------------------------------------------- writes


def _diff_tuple(old, new, cls, out):
    if old is new:
        return
    n = max(len(old), len(new))
    for i in range(n):
        a = old[i] if i < len(old) else None
        b = new[i] if i < len(new) else None
        if a != b:
            out.add((cls, i))


def _diff_folios(old, new, out, groups):
    """Per field: ``("f", pfn, field)``, ``("f", pfn, "nr")`` when the number of
    pages changes, ``("f", pfn, "*")`` (and every field) when the folio is
    allocated or freed; the write groups ``("f", pfn)`` and ``("f",)``."""
    if old is new:
        return
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else None
        b = new[i] if i < len(new) else None
        if a == b:
            continue
        groups.add(("f", i))
        groups.add(("f",))
        if a is None or b is None:
            out.add(("f", i, "*"))
            out.add(("f", i, "nr"))
            out.update(("f", i, f) for f in Folio._fields if f != "flags")
            out.update(_flag_keys(i, -1))
            continue
        for f, x, y in zip(Folio._fields, a, b):
            if x != y:
                if f == "flags":
                    out.update(_flag_keys(i, x ^ y))
                else:
                    out.add(("f", i, f))
        if len(a.data) != len(b.data):
            out.add(("f", i, "nr"))


def state_writes(before, after, nr: int, in_flight_maps) -> tuple[set, set]:
    """The keys ``after`` differs from ``before`` in (and their classes)."""
    w = set()
    _diff_tuple(before.swap, after.swap, "sw", w)
    groups = {(c,) for c, _ in w}
    _diff_folios(before.folios, after.folios, w, groups)
    if before.mms is not after.mms:
        for i, (a, b) in enumerate(zip(before.mms, after.mms)):
            if a is b or a == b:
                continue
            groups.add(("mm", i))
            groups.add(("mm",))
            for f, key in _MM_FIELDS:
                if getattr(a, f) != getattr(b, f):
                    w.add((key, i))
            if a.ptes != b.ptes:
                groups.add(("ptes", i))
                for j, (p, q) in enumerate(zip(a.ptes, b.ptes)):
                    if p != q:
                        w.add(("pte", i, j))
                        for x in (p, q):       # who maps which folio (the oracle's observers)
                            if x is not None:
                                w.add(("rmapswap", x.pfn) if x.kind == PTE_SWAP else ("rmap", x.pfn))
            if a.pmds != b.pmds:
                groups.add(("pmds", i))
                for j, (p, q) in enumerate(zip(a.pmds, b.pmds)):
                    if p != q:
                        w.add(("pmd", i, j))
                        for x in (p, q):
                            if x is not None:
                                w.add(("rmap", x.pfn))
    if before.refs is not after.refs and before.refs != after.refs:
        ra, rb = set(before.refs), set(after.refs)
        for r in ra ^ rb:
            w.add(("refs", r.pfn))
            w.add(("refown", r.owner))
            if r.kind not in TRANSIENT_REFS:
                w.add(("refo", r.pfn, r.mm))    # the references one process holds (a store's observers)
        groups.add(("refs",))
    if before.threads is not after.threads:
        for i, (a, b) in enumerate(zip(before.threads, after.threads)):
            if a.irqs_off != b.irqs_off:            # what another CPU's IPI waits for (khugepaged)
                w.add(("irqs", i))
                groups.add(("irqs",))
            if bool(a.stack) != bool(b.stack):      # inside a kernel path or not (what exit_mmap() waits for)
                w.add(("inpath", i))
                groups.add(("inpath",))
    if before.signals != after.signals:
        for e in before.signals ^ after.signals:
            w.add(("sig", e))
        groups.add(("sig",))
    fa, fb = set(in_flight_maps(before)), set(in_flight_maps(after))
    if fa != fb:
        for mm, a, pfn, _ in fa ^ fb:
            w.add(("inflight", mm, a))
            w.add(("ifp", pfn))
        groups.add(("inflight",))
    # pins whose coherence the step may change: one it takes or drops, one whose inputs it writes
    if w:
        ra = rb = ()
        if before.refs is not after.refs:
            ra, rb = set(before.refs), set(after.refs)
            for r in ra ^ rb:
                if r.kind not in TRANSIENT_REFS and coherent(r.gup_flags) and r.mm >= 0:
                    w.add(("pin", r.mm, r.addr, r.owner))
        for r in ra or before.refs:
            _pin_inputs(r, w, nr)
        if rb:
            for r in rb - ra:
                _pin_inputs(r, w, nr)
    return w, groups


def _pin_inputs(r, w, nr):
    """``("pin", mm, addr, owner)`` into ``w`` when ``r`` is a coherent pin whose
    inputs in ``disconnected()`` are in ``w``: its pte or pmd, its mm's liveness,
    a mapping in flight at its address, and for a swap pte whether its folio
    exists, its flags and swap entries."""
    if r.kind in TRANSIENT_REFS or not coherent(r.gup_flags) or r.mm < 0:
        return
    if (("pte", r.mm, r.addr) in w or ("pmd", r.mm, r.addr // nr) in w or ("alive", r.mm) in w
            or ("inflight", r.mm, r.addr) in w
            or ("f", r.pfn, "*") in w or ("f", r.pfn, "swap") in w
            or ("f", r.pfn, "flags", PG_swapcache) in w):
        w.add(("pin", r.mm, r.addr, r.owner))


def footprint(model, s, tid: int):
    """``CowModel.footprint``: run the step against a ``TrackingKernel``.  A
    ``wait`` at its start whose event is not set (sync.wait would block) is
    answered without running: it reads that event and its process's
    liveness, as the tracked run records."""
    ev = model.waits_unset(s, tid)
    if ev is not None and s.mms[model.tmm[tid]].alive:
        return None, Footprint(frozenset((("sig", ev), ("alive", model.tmm[tid]))))
    rec = _Rec()
    _VIEW_REC[0] = rec
    try:
        tr = model.step(s, tid, kernel_cls=lambda *a: TrackingKernel(rec, *a))
    finally:
        _VIEW_REC[0] = None
    reads = rec.reads
    reads.add(("alive", model.tmm[tid]))
    rl = {k for k in reads if k[0] == "mmap_rl"}
    if rl:
        reads -= rl
    mset = {k for k in reads if k[0] == "mmf_set"}
    if mset:
        reads -= mset
    if tr is None:
        reads.update(("mmap_lock", k[1]) for k in rl)      # a reader blocked by a writer read the lock
        reads.update(("mmflags", k[1]) for k in mset)
        _whole_flags(reads)
        return None, Footprint(frozenset(reads), rgroups=frozenset(rec.groups))
    if tr.bugs:
        return tr, Footprint(glob=True)
    w, g = state_writes(s, tr.state, model.case.hpage_pmd_nr, model._in_flight_maps)
    groups = rec.groups
    if tr.effects:
        if model.oracle is None:
            pass
        elif not oracle_footprint(s, tr.state, tr.effects, reads, w, groups):
            return tr, Footprint(glob=True)
    # a step whose only use of mmap_lock is mmap_read_lock()/mmap_read_unlock() increments it (or decrements
    # it): two such steps commute, and neither disables the other (a reader waits only for a writer)
    incs = set()
    for _, m in rl:
        if ("mmap_lock", m) not in reads:
            incs.add(("mmap_lock", m))
            w.discard(("mmap_lock", m))
    reads.update(("mmap_lock", m) for _, m in rl if ("mmap_lock", m) not in incs)
    # ... and so does a step whose only use of an mm's flags is setting MMF_HAS_PINNED (``_mm_set_has_pinned_flag``)
    for _, m in mset:
        k = ("mmflags", m)
        if k in reads:
            w.add(k)
        else:
            incs.add(k)
            w.discard(k)
    decs, room = set(), {}
    if rec.gets or rec.puts:
        _increments(rec, w, incs, decs, room)
    fresh = rec.fresh
    # ... where no large folio can arise (``CowModel.rename_slots``); where one can, offsets are not interchangeable
    # (alloc_swap_folio() looks at alignment and consecutive entries): a step that takes swap offsets (a small
    # folio's moves the order-0 cursor, a large one's run may grow the table) reads and writes the allocator's
    # cursor, ("swcur",), so two swap-outs do not commute (their offsets would be swapped)
    if not model.rename_slots and (tr.state.swap_next != s.swap_next or len(tr.state.swap) != len(s.swap)):
        reads.add(("swcur",))
        w.add(("swcur",))
    # ... but a frame or slot that was free can still be named by a thread holding a stale snapshot (gup-fast's
    # pte of a page freed since, a swap entry read before the slot was freed): allocating it is an increment of
    # its existence -- two allocations commute (up to renaming), a step that looks that frame or slot up does not
    for x in fresh:
        incs.add(x if type(x) is tuple else ("f", x, "*"))
    _whole_flags(reads)
    # a whole-folio read (the oracle's, a folio used whole) is the read group ("f", pfn)
    whole = {k for k in reads if k[0] == "f" and len(k) == 2}
    if whole:
        reads -= whole
        groups |= whole
    return tr, Footprint(frozenset(_drop_fresh(reads, fresh)), frozenset(_drop_fresh(w, fresh)),
                         frozenset(_drop_fresh(groups, fresh)), frozenset(_drop_fresh(g, fresh)), incs=frozenset(incs),
                         decs=frozenset(decs), room=room)


#: effects the footprint does not analyse (KSM's two processes, migration): a step with one is global
GLOBAL_EFFECTS = (KsmMerge, KsmBreakCow, Migrate, MigrateFailed)


def oracle_footprint(before, after, effects, reads: set, writes: set, groups: set) -> bool:
    """Add what the oracle reads and writes judging ``effects`` (see
    ``oracle.Oracle.check``), judge by judge: the spec rows of the processes a
    judge reads (``("spec", mm)``; written only by the judges that change them:
    a load or a copy reads its process's rows and changes none), the detached
    references (``("det", mm, addr)``), and for a store or a copy the page's
    observers -- who maps it (``("rmap", pfn)``, ``("rmapswap", slot)``, the
    mappings in flight), the spec and liveness of each process that maps or
    references it; a store reads only the folio's existence, flags and swap
    entries (``observers()``) and the references other processes hold
    (``("refo", pfn, mm)``), a copy reads the folio and its references whole
    (``classify_copy()``).  Effects the oracle does not judge (``NOT_JUDGED``:
    a pin, a reuse, a swapin, ...) read nothing: what they change is seen by
    ``disconnected()``, which the ``("pin", mm, addr)`` keys stand for.  False
    when an effect is one of ``GLOBAL_EFFECTS``."""
    store_pfns, copy_pfns = set(), set()
    for e in effects:
        if isinstance(e, GLOBAL_EFFECTS):
            return False
        t = type(e)
        if t is Store:
            reads.add(("spec", e.mm))
            writes.add(("spec", e.mm))
            if e.via is not None:
                reads.add(("det", e.via.mm, e.via.addr))
            store_pfns.add((e.pfn, e.mm))
        elif t is Load:
            if e.mm < 0:
                continue
            reads.add(("spec", e.mm))
            reads.add(("det", e.mm, e.addr))          # the reader's reference detached?
            if e.reader != "cpu":
                groups.add(("refs",))
        elif t is Copy:
            reads.add(("spec", e.mm))
            reads.add(("det", e.mm, e.addr))
            copy_pfns.add(e.old_pfn)
        elif t is Unmap:
            # detaches the references taken for the address (their coherence is no longer required)
            reads.add(("spec", e.mm))
            writes.update((("spec", e.mm), ("det", e.mm, e.addr)))
            writes.update(("pin", r.mm, r.addr, r.owner) for st in (before, after) for r in st.refs
                          if r.mm == e.mm and r.addr == e.addr)
            groups.add(("refs",))
        elif t is DupMmap or t is CopyPte:
            reads.update((("spec", e.parent), ("spec", e.child)))
            writes.add(("spec", e.child))
            if t is DupMmap:
                reads.add(("vmas", e.child))
        elif t is Move or t is Exit:
            reads.add(("spec", e.mm))
            writes.add(("spec", e.mm))
    if not store_pfns and not copy_pfns:
        return True
    pfns = {p for p, _ in store_pfns} | copy_pfns
    nmm = len(before.mms)
    for st in (before, after):
        for p in pfns:
            f = st.folios[p] if p < len(st.folios) else None
            slots = {x for x in f.swap if x >= 0} if f is not None else ()
            reads.update(("rmapswap", x) for x in slots)
            for i, m in enumerate(st.mms):
                hit = False
                for a, q in enumerate(m.ptes):
                    if q is not None and (q.pfn in slots if q.kind == PTE_SWAP else q.pfn == p):
                        hit = True
                        reads.add(("inflight", i, a))       # a path replacing the entry
                if hit or any(q is not None and q.pfn == p for q in m.pmds):
                    reads.update((("spec", i), ("alive", i)))
        for r in st.refs:
            if r.pfn in pfns and r.mm >= 0:
                reads.update((("spec", r.mm), ("alive", r.mm)))
    for p in pfns:
        reads.update((("rmap", p), ("ifp", p)))
    for p, mm in store_pfns:
        reads.update((("f", p, "*"), ("f", p, "flags", PG_swapcache), ("f", p, "swap")))
        reads.update(("refo", p, x) for x in range(-1, nmm) if x != mm)
    for p in copy_pfns:
        reads.update((("refs", p), ("f", p)))
    return True
