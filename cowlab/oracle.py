"""The oracle: an abstract specification of what every process and every
reference holder may observe, checked at every atomic step.

Specification (independent of any COW design):

* fork gives the child a snapshot of the parent's memory; afterwards each
  process sees exactly its own writes (``Spec.value``);
* a long-term FOLL_PIN (R/O or R/W), and any FOLL_WRITE reference while its
  I/O is in flight, stays coherent with the pinning process's mapping at that
  address until it is dropped or the address is unmapped: what goes through
  it is what the process has there, and DMA through it is what the process
  then reads;
* any other reference (a short-term FOLL_GET: vmsplice, O_DIRECT writes
  before 6.5, a R/O short-term pin) may keep a snapshot of its own process's
  data (any value the process ever had at that address, ``Spec.history``)
  but never another process's data.

Verdicts, each an incident counted once (``key``):

* **missed COW** -- a store lands in a page that another process maps or
  references, or an observer reads data its process never had;
* **wrong COW** -- a coherent pin no longer refers to the page its process
  maps at that address (checked after every step), or a process/pin reads
  stale data of its own;
* **unnecessary COW** -- a copy made while only transient references
  (LRU batch, swap cache, speculative, isolation, in-flight kernel refs)
  could observe the old page.

Every copy is also classified (``correct`` / ``unnecessary`` / ``wrong``).
"""
from __future__ import annotations

from typing import ClassVar, NamedTuple

from .kernel.effects import (Copy, CopyPte, DupMmap, Error, Exit, Fork, KsmBreakCow, KsmMerge, Load, Migrate,
                             MigrateFailed, Move, Pin, Reuse, Segv, SplitPmd, Store, Swapin, Unmap, CollapsePmd)
from .kernel.types import (FOLL_LONGTERM, FOLL_PIN, FOLL_WRITE, PG_ksm, PG_swapcache, PTE_MIGRATION, PTE_PRESENT,
                           PTE_SWAP, Spec, State, TRANSIENT_REFS, ZERO, ZERO_PFN)

from .verdict import MISSED, UNNECESSARY, WRONG

#: State's spec field (``Oracle.check`` replaces it without _replace's keyword handling)
_SPEC = State._fields.index("spec")

#: a copy the oracle finds needed (a copy kind, not a verdict)
CORRECT = "correct"


class Event(NamedTuple):
    kind: str          # missed | wrong | unnecessary | correct
    what: str          # copy | store | load | pin
    key: tuple         # incident identity (one bug counts once)
    text: str


def initial_spec(nmm: int, naddr: int) -> Spec:
    return Spec(tuple((ZERO,) * naddr for _ in range(nmm)),
                tuple((frozenset({ZERO}),) * naddr for _ in range(nmm)), frozenset())


def coherent(gup_flags: int) -> bool:
    return bool((gup_flags & FOLL_PIN and gup_flags & FOLL_LONGTERM) or gup_flags & FOLL_WRITE)


def ref_key(r) -> tuple:
    """A reference's identity for the spec (``Spec.detached``): its holder, the
    address it stands for now and the one it was taken at (so that a reference
    mremap() moved onto an address is not one unmapped there before)."""
    return (r.kind, r.owner, r.mm, r.addr, r.taken_at)


class _Rows:
    """The spec's per-process rows (values or histories), copied on first use:
    a step that touches one process's rows leaves every other row (and, when
    nothing changes, the whole tuple) the same object, shared with the parent."""
    __slots__ = ("orig", "rows")

    def __init__(self, orig: tuple):
        self.orig = orig
        self.rows: dict = {}

    def __getitem__(self, mm: int) -> list:
        r = self.rows.get(mm)
        if r is None:
            r = self.rows[mm] = list(self.orig[mm])
        return r

    def __setitem__(self, mm: int, row) -> None:
        self.rows[mm] = list(row)

    def freeze(self) -> tuple:
        """The rows as the spec's tuple: the original one where nothing changed."""
        if not self.rows:
            return self.orig
        out = None
        for mm, r in self.rows.items():
            t = tuple(r)
            if t != self.orig[mm]:
                if out is None:
                    out = list(self.orig)
                out[mm] = t
        return self.orig if out is None else tuple(out)


class _Step:
    """What judging one step's effects accumulates: the spec's values and
    histories (per process, per address), the detached references, the events."""
    __slots__ = ("after", "before", "detached", "dma", "events", "hist", "value")

    def __init__(self, before: State, after: State, value, hist, detached: set, dma: set):
        self.before, self.after, self.value, self.hist, self.detached = before, after, value, hist, detached
        self.dma = dma
        self.events: list[Event] = []


def _pname(names, mm):
    return names[mm] if names and 0 <= mm < len(names) else f"mm{mm}"


class Oracle:
    def __init__(self, process_names=None, in_flight_maps=None, hpage_pmd_nr: int = 2, in_flight_copies=None):
        self.names = process_names or []
        #: state -> [(mm, addr, pfn, idx)]: mappings a path is installing or
        #: moving across two steps (the kernel holds that mm's PT lock); they
        #: are observers all the same
        self.in_flight_maps = in_flight_maps or (lambda s: ())
        #: state -> [(parent mm, child mm, addr)]: entries fork is half-way through copying (the child's
        #: mapping is among the in-flight maps); the child takes the parent's data there when the copy
        #: completes (judge_copy_pte), so a store of the parent's at addr before then is the child's too
        self.in_flight_copies = in_flight_copies or (lambda s: ())
        self.HPAGE_PMD_NR = hpage_pmd_nr
        self._coherent_memo: dict = {}
        #: (id(refs), id(mms), id(folios), id(detached), in-flight maps) -> (those objects, disconnected set):
        #: a step's "before" is the same for every thread's step from one state, and most steps leave
        #: the refs, page tables and folios alone (the kernel transaction keeps unchanged tuples)
        self._disconnected_memo: dict = {}

    # ----------------------------------------------------------------- helpers
    def observers(self, s: State, pfn: int, idx: int, exclude_mm: int, exclude_addr: int | None = None):
        """Who may legitimately observe subpage (pfn, idx), other than the
        mapping (exclude_mm, exclude_addr): [(kind, mm, addr, ref or None)]."""
        out = []
        f = s.folios[pfn] if pfn < len(s.folios) else None
        flight = self.in_flight_maps(s)
        replacing = {(mm, a) for mm, a, _, _ in flight}
        for mm, m in enumerate(s.mms):
            if not m.alive:
                continue
            for a, p in enumerate(m.ptes):
                if p is None or (mm == exclude_mm and (exclude_addr is None or a == exclude_addr)):
                    continue
                if (mm, a) in replacing:
                    continue      # a path holding this mm's PT lock is replacing the entry
                if p.kind in (PTE_PRESENT, PTE_MIGRATION) and p.pfn == pfn and p.idx == idx:
                    out.append(("map", mm, a, None))
                elif p.kind == PTE_SWAP and f is not None and f.flags & PG_swapcache and f.swap[idx] == p.pfn:
                    out.append(("swap", mm, a, None))
            for h, pmd in enumerate(m.pmds):
                a = h * self.HPAGE_PMD_NR + idx
                if (pmd is not None and pmd.pfn == pfn
                        and not (mm == exclude_mm and (exclude_addr is None or a == exclude_addr))):
                    out.append(("map", mm, a, None))
        for mm, a, p_, i in flight:
            if p_ == pfn and i == idx and not (mm == exclude_mm and (exclude_addr is None or a == exclude_addr)):
                out.append(("map", mm, a, None))
        for r in s.refs:
            if r.pfn == pfn and r.idx == idx and r.kind not in TRANSIENT_REFS and r.mm != exclude_mm:
                out.append(("ref", r.mm, r.addr, r))
        return out

    def coherent_refs(self, refs: tuple) -> list:
        """The references of ``refs`` that must stay coherent (see the module
        docstring), memoised per refs tuple: most steps leave the refs alone,
        and a THP at the kernel's size can hold 512 of them."""
        if not refs:
            return ()
        hit = self._coherent_memo.get(id(refs))
        if hit is not None and hit[0] is refs:
            return hit[1]
        out = [r for r in refs if r.kind not in TRANSIENT_REFS and coherent(r.gup_flags)]
        if len(self._coherent_memo) > 256:
            self._coherent_memo.clear()
        self._coherent_memo[id(refs)] = (refs, out)     # holding refs keeps its id from being reused
        return out

    def disconnected(self, s: State, detached=None) -> frozenset:
        """Coherent, still-valid references whose process maps something
        else at their address (``detached``: the spec's detached references
        to take, ``s.spec.detached`` by default).  Memoised on its inputs
        (the refs, page tables and folios by identity, the in-flight maps by
        value)."""
        if detached is None:
            detached = s.spec.detached
        crefs = self.coherent_refs(s.refs)
        if not crefs:
            return frozenset()
        flight = self.in_flight_maps(s)
        key = (id(s.refs), id(s.mms), id(s.folios), id(detached), flight)
        hit = self._disconnected_memo.get(key)
        if hit is not None:
            return hit[1]
        bad = self._disconnected(s, crefs, detached, flight)
        if len(self._disconnected_memo) > 64:
            self._disconnected_memo.clear()
        # (holding the objects keeps their ids from being reused)
        self._disconnected_memo[key] = ((s.refs, s.mms, s.folios, detached), bad)
        return bad

    def _disconnected(self, s: State, crefs, detached, flight) -> frozenset:
        bad = set()
        pending = None
        for r in crefs:
            if detached and (r.kind, r.owner, r.mm, r.addr, r.taken_at) in detached:     # ref_key(r)
                continue
            if r.mm < 0 or not s.mms[r.mm].alive:
                continue
            if pending is None:
                pending = {(mm, a): (p_, i) for mm, a, p_, i in flight}
            if (r.mm, r.addr) in pending:
                if pending[(r.mm, r.addr)] != (r.pfn, r.idx):
                    bad.add((r.mm, r.addr, r.kind, r.owner))
                continue
            m = s.mms[r.mm]
            pmd = m.pmds[r.addr // self.HPAGE_PMD_NR]
            if pmd is not None:
                ok = pmd.pfn == r.pfn
            else:
                p = m.ptes[r.addr]
                if p is None:
                    ok = True        # unmapped without an unmap effect cannot happen; be lenient
                elif p.kind in (PTE_PRESENT, PTE_MIGRATION):
                    ok = p.pfn == r.pfn and p.idx == r.idx
                else:
                    f = s.folios[r.pfn]
                    ok = f is not None and f.flags & PG_swapcache and f.swap[r.idx] == p.pfn
            if not ok:
                bad.add((r.mm, r.addr, r.kind, r.owner))
        return frozenset(bad)

    # ----------------------------------------------------------------- the step
    def check(self, before: State, after: State, effects: list) -> tuple[State, list]:
        """Judge one step's effects and check every coherent pin after it:
        (``after`` with the spec updated, the events).  The spec's rows a step
        does not change stay the objects of the parent's spec (and the whole
        spec when the step changes none)."""
        spec = after.spec
        judges = self.JUDGES
        st = None
        for e in effects:
            judge = judges.get(type(e))
            if judge is not None:
                if st is None:
                    st = _Step(before, after, _Rows(spec.value), _Rows(spec.history), set(spec.detached),
                               set(spec.dma))
                judge(self, st, e)
            elif type(e) not in self.NOT_JUDGED:
                raise TypeError(f"the oracle neither judges nor lists as not judged the effect {e!r}")
        if st is None:
            events = []
            new_spec = spec
        else:
            events = st.events
            value, hist = st.value.freeze(), st.hist.freeze()
            detached = spec.detached if len(st.detached) == len(spec.detached) else frozenset(st.detached)
            dma = spec.dma if len(st.dma) == len(spec.dma) else frozenset(st.dma)
            if value is spec.value and hist is spec.history and detached is spec.detached and dma is spec.dma:
                new_spec = spec
            else:
                new_spec = Spec(value, hist, detached, dma)
                after = tuple.__new__(State, after[:_SPEC] + (new_spec,) + after[_SPEC + 1:])   # _replace(spec=)
        n = self.names
        now = self.disconnected(after)
        if now:
            # (``before`` with the new spec's detached references: a pin its step detached is not lost)
            gone = now - self.disconnected(before, new_spec.detached)
            for mm, a, rkind, owner in sorted(gone):
                events.append(Event(WRONG, "pin", ("wrong", mm, a),
                                    f"{_pname(n, mm)}'s {rkind} pin ({owner}) on page {a} no longer refers to the "
                                    f"page {_pname(n, mm)} maps there"))
        return after, events

    # ------------------------------------------------- one judge per effect type
    def judge_dup_mmap(self, st: _Step, e: DupMmap) -> None:
        """The child starts with the parent's data where it inherited a VMA
        (each entry is then taken again when fork copies it: judge_copy_pte)."""
        value, hist = st.value, st.hist
        parent, child = e.parent, e.child
        cm = st.after.mms[child]
        for a in range(len(value[child])):
            inherited = any(v.start <= a < v.end for v in cm.vmas)
            value[child][a] = value[parent][a] if inherited else ZERO
            hist[child][a] = hist[parent][a] if inherited else frozenset({ZERO})

    def judge_copy_pte(self, st: _Step, e: CopyPte) -> None:
        """fork reached these entries: the child has what the parent has there
        now.  A store that lands in the parent's page after fork copied it for
        the child is the parent's alone; one that lands before fork reaches the
        page is the child's too (the kernel copies each page when fork gets to it)."""
        value, hist = st.value, st.hist
        for a in range(e.addr, min(e.addr + e.nr, len(value[e.child]))):
            value[e.child][a] = value[e.parent][a]
            hist[e.child][a] = hist[e.parent][a]

    def judge_unmap(self, st: _Step, e: Unmap) -> None:
        """The address reads zero again; references taken for it are detached
        (not one the same step's mremap() moves onto it afterwards: its
        ``addr`` is new, its ``taken_at`` another address)."""
        mm, a = e.mm, e.addr
        st.value[mm][a] = ZERO
        st.hist[mm][a] = st.hist[mm][a] | {ZERO}
        for r in st.after.refs:
            if r.mm == mm and r.addr == a and r.taken_at == a:
                st.detached.add(ref_key(r))
        for r in st.before.refs:
            if r.mm == mm and r.addr == a:
                st.detached.add(ref_key(r))

    def judge_move(self, st: _Step, e: Move) -> None:
        """mremap carries the data (and its history) to the new address; the
        old address reads zero.  A history only grows (every value the process
        ever had there): a reference left on a page that no longer maps at its
        address -- unmapped under a fixed buffer, or not moved with it -- may
        still return what the process had at that address, even once mremap
        has brought other data there."""
        mm, a, b = e.mm, e.old_addr, e.new_addr
        value, hist = st.value, st.hist
        value[mm][b], hist[mm][b] = value[mm][a], hist[mm][b] | hist[mm][a]
        value[mm][a], hist[mm][a] = ZERO, hist[mm][a] | {ZERO}

    def judge_exit(self, st: _Step, e: Exit) -> None:
        """Every address of the process reads zero."""
        st.value[e.mm] = [ZERO] * len(st.value[e.mm])

    def judge_store(self, st: _Step, e: Store) -> None:
        """Missed COW: the page written is one another process maps or references.

        Not the child's mapping fork is installing at this very address
        (``in_flight_copies``): between copy_present_pte()'s rmap dup
        (page_dup_rmap() before 5.19, page_try_dup_anon_rmap() 5.19 .. 6.7,
        folio_try_dup_anon_rmap_pte(s)() 6.8+) and
        the write-protect of the parent's pte (ptep_set_wrprotect() /
        wrprotect_ptes() in __copy_present_pte(s), mm/memory.c, 5.7 .. 6.18)
        the parent's pte is still writable -- the PT lock fork holds does not
        stop the MMU -- so another thread's store lands in the page fork then
        shares with the child.  That store is before fork's copy of the page
        (the child's data is taken when the copy completes: judge_copy_pte),
        so the child may see it: no missed COW.  The same holds for DMA
        through a reference of the parent's at that address; a store after
        the copy (into the page the child then maps) is still a missed COW."""
        mm, a, pfn, idx, token, via = e.mm, e.addr, e.pfn, e.idx, e.data, e.via
        n = self.names
        hist = st.hist
        detached = via is not None and ref_key(via) in st.detached
        if detached:
            # DMA into memory the process no longer has there: its own data no more, but still a
            # leak if another process maps or references the page; what it stored the reference may return
            st.dma.add((mm, token))
        copying = None
        for okind, omm, oa, r in self.observers(st.after, pfn, idx, mm, a if via is None else None):
            if detached and omm == mm:
                continue
            if okind == "map" and oa == a and not detached:
                if copying is None:
                    copying = self.in_flight_copies(st.after)
                if (mm, omm, a) in copying:
                    continue        # fork's copy of this entry for omm takes the store with it
            if okind == "ref" and token in hist[omm][oa]:
                continue
            if okind != "ref" and omm == mm:
                continue
            who = (f"{_pname(n, omm)}'s {r.kind} reference ({r.owner})" if r is not None else
                   f"{_pname(n, omm)}'s {'mapping' if okind == 'map' else 'swap entry'} of page {oa}")
            st.events.append(Event(MISSED, "store", ("missed", omm, oa, r.owner if r else "cpu"),
                                   f"{_pname(n, mm)} wrote page {a} into a page {who} still uses"))
        if detached:
            return
        st.value[mm][a] = token
        hist[mm][a] = hist[mm][a] | {token}

    def judge_load(self, st: _Step, e: Load) -> None:
        """Missed COW: data the process never had; wrong COW: a coherent reader's stale data."""
        okind, owner, mm, a, token = e.reader, e.owner, e.mm, e.addr, e.data
        if mm < 0:
            return
        n = self.names
        hist = st.hist
        expected = st.value[mm][a]
        if okind == "cpu":
            must_equal = True
        else:
            # (two references of one holder can name one address once mremap() moved a page onto it)
            r = next((r for r in st.before.refs if r.owner == owner and r.mm == mm and r.addr == a
                      and r.pfn == e.pfn and r.idx == e.idx), None)
            must_equal = r is not None and coherent(r.gup_flags) and ref_key(r) not in st.detached
        if token == expected or (not must_equal and (token in hist[mm][a] or (mm, token) in st.dma)):
            return
        who = f"{_pname(n, mm)}" if okind == "cpu" else f"{_pname(n, mm)}'s {okind} ({owner})"
        if token not in hist[mm][a]:
            st.events.append(Event(MISSED, "load", ("missed", mm, a, "cpu" if okind == "cpu" else owner),
                                   f"{who} read page {a} and saw data {_pname(n, mm)} never had there"))
        else:
            st.events.append(Event(WRONG, "load", ("wrong", mm, a),
                                   f"{who} read stale data at page {a}: the pinned page and the "
                                   f"mapped page have diverged"))

    def judge_copy(self, st: _Step, e: Copy) -> None:
        st.events.append(self.classify_copy(st.before, e))

    #: effect type -> the method judging it, in the order the effects of a step are met
    JUDGES: ClassVar[dict] = {DupMmap: judge_dup_mmap, CopyPte: judge_copy_pte, Unmap: judge_unmap, Move: judge_move,
                              Exit: judge_exit, Store: judge_store, Load: judge_load, Copy: judge_copy}
    #: effect types the oracle does not judge, and why
    NOT_JUDGED: ClassVar[dict] = {
        Fork: "the child's data was taken entry by entry as fork copied it (DupMmap, CopyPte)",
        Reuse: "a reuse is judged by what follows it: a store into a page another still uses is a missed COW",
        Pin: "a pin's coherence is checked after every step (disconnected()); its exclusivity by checks.check_pin",
        Swapin: "the mapping it installs is seen by observers() and disconnected() in the state",
        SplitPmd: "the ptes it installs map the same subpages; the state shows them",
        CollapsePmd: "the process's data moves to the new THP unchanged (a copy, not a COW); a pin left on an "
                     "old page would be seen by disconnected() in the state",
        Segv: "no memory changes hands",
        Error: "a failed call changes no process's data",
        KsmMerge: "the merged page is seen in the state (PG_ksm); a store into it without a copy is a missed COW",
        KsmBreakCow: "the fault it starts records its own Copy or Reuse",
        Migrate: "the data moves with the page; references and mappings follow it in the state",
        MigrateFailed: "nothing moved",
    }

    def classify_copy(self, s: State, e: Copy) -> Event:
        path, mm, a, old, oidx = e.path, e.mm, e.addr, e.old_pfn, e.old_idx
        n = self.names
        key = None      # every copy is its own incident
        if path == "fork":
            # an early copy for the child: needed only to keep a parent's pin private
            parent_pins = [r for r in s.refs if r.pfn == old and r.idx == oidx and coherent(r.gup_flags)
                           and r.mm != mm and r.kind not in TRANSIENT_REFS]
            if parent_pins:
                return Event(CORRECT, "copy", key, f"fork copied page {a} for {_pname(n, mm)}: the parent "
                                                   f"holds a pin on it ({parent_pins[0].owner})")
            return Event(UNNECESSARY, "copy", key, f"fork copied page {a} for {_pname(n, mm)} although no pin "
                                                   f"holds it ({self._transients(s, old)})")
        own = [r for r in s.refs if r.pfn == old and r.idx == oidx and r.mm == mm and r.addr == a
               and r.kind not in TRANSIENT_REFS and coherent(r.gup_flags) and ref_key(r) not in s.spec.detached]
        if own:
            return Event(WRONG, "copy", ("wrong", mm, a),
                         f"{_pname(n, mm)} copied page {a} ({path}) away from its own {own[0].kind} pin "
                         f"({own[0].owner}): the pin no longer sees the process's memory")
        if old == ZERO_PFN:
            return Event(CORRECT, "copy", key, f"{_pname(n, mm)} broke COW of the shared zero page at page {a}")
        f = s.folios[old]
        others = self.observers(s, old, oidx, mm, None)
        if others or (f is not None and f.flags & PG_ksm):
            if others:
                okind, omm, oa, r = others[0]
                why = (f"{_pname(n, omm)}'s {r.kind} reference" if r is not None else
                       f"{_pname(n, omm)} {'maps' if okind == 'map' else 'has a swap entry for'} it")
            else:
                why = "it is a KSM page"
            return Event(CORRECT, "copy", key, f"{_pname(n, mm)} copied page {a} ({path}): {why}")
        mine = [r for r in s.refs if r.pfn == old and r.idx == oidx and r.kind not in TRANSIENT_REFS]
        if mine:
            return Event(CORRECT, "copy", key, f"{_pname(n, mm)} copied page {a} ({path}); its own "
                                               f"{mine[0].kind} reference may keep the old data")
        return Event(UNNECESSARY, "copy", key, f"{_pname(n, mm)} copied page {a} ({path}) although nothing but "
                                               f"{self._transients(s, old)} could observe it")

    @staticmethod
    def _transients(s: State, pfn: int) -> str:
        f = s.folios[pfn]
        parts = []
        kinds = {}
        for r in s.refs:
            if r.pfn == pfn and r.kind in TRANSIENT_REFS:
                kinds[r.kind] = kinds.get(r.kind, 0) + 1
        names = {"lru_batch": "an LRU batch", "speculative": "a speculative reference", "isolate": "isolation",
                 "tmp": "the fault's own reference", "gup_fast": "a gup-fast grab"}
        for kd, c in sorted(kinds.items()):
            if kd != "tmp":
                parts.append(names[kd])
        if f is not None and f.flags & PG_swapcache:
            parts.append("the swap cache")
        return ", ".join(parts) or f"its own mapping (refcount {f.refcount if f else '?'})"
