"""The model as an explorer sees it: states, enabled atomic steps, and
what each step reveals (verdict events and model bugs).

``CowModel(case, design)`` exposes, in the manner of stateright's ``Model``:

* ``init_state()`` -- the initial ``State`` (immutable, hashable);
* ``actions(state)`` -- the threads that have an enabled atomic step;
* ``step(state, tid)`` -- the ``Transition`` that step makes, or None
  when the thread is blocked (a lock, a wait, a process not yet forked);
* ``is_done(state)`` -- every thread has finished its operations.

It knows nothing about search; the explorer knows nothing about memory.
"""
from __future__ import annotations

import functools

from typing import NamedTuple

from . import footprint as _footprint
from . import kernel  # noqa: F401  (registers every step)
from .kernel import registry  # noqa: F401
from .kernel.checks import check_pin, check_state, check_thread_end
from .kernel.effects import Pin
from .kernel.paths import OPS, STEPS, Call, Goto, InFlight, NOTHING_IN_FLIGHT, Return, rename_frame
from .kernel.txn import Blocked, Kernel, ModelBug
from .kernel.types import (Folio, Mm, PTE_SWAP, Spec, State, SwapSlot, Thread, ZERO)
from .oracle import Oracle, initial_spec
from .verdict import VERDICTS
from .scenario import Case


class Transition(NamedTuple):
    state: State
    tid: int
    op: str           # operation text
    label: str        # the step label
    func: str         # the kernel function the step models
    doc: str          # the first line of its docstring
    events: tuple     # oracle Events
    bugs: tuple       # model bugs (str)
    effects: tuple


def cpu_of(case) -> list[int]:
    """The CPU each thread runs on (what per-CPU state -- the lru_add batch --
    it sees): a further thread of a process (``Script.cpu()``, a free
    ``thread()``) has a CPU of its own; a process's main thread runs where
    the thread that forked it ran (the first process on CPU 0).  This is how
    the live probe runs a case (conformance/runner.py: the case's processes
    on one CPU, each further thread on the next) and how fork leaves a child
    until the scheduler moves it."""
    threads = case.threads
    n = len(threads)
    cpu = [None] * n
    nxt = 1
    for i, t in enumerate(threads):
        if t.name != t.process:
            cpu[i], nxt = nxt, nxt + 1
    forker = {}
    for i, t in enumerate(threads):
        for op in t.ops:
            if op.name == "fork":
                forker.setdefault(dict(op.args).get("child"), i)
    main = {t.process: i for i, t in enumerate(threads) if t.name == t.process}
    first = case.processes[0] if case.processes else None
    for _ in range(n + 1):
        for p, i in main.items():
            if cpu[i] is None:
                if p == first:
                    cpu[i] = 0
                elif p in forker and cpu[forker[p]] is not None:
                    cpu[i] = cpu[forker[p]]
    for i in range(n):
        if cpu[i] is None:
            cpu[i], nxt = nxt, nxt + 1
    return cpu


class CowModel:
    def __init__(self, case: Case, design, check_invariants: bool = True, oracle: bool = True):
        """``check_invariants=False`` skips the model's own consistency checks
        and ``oracle=False`` the verdicts (no events; the spec stays initial):
        neither changes how a state evolves, so a caller that only wants the
        states (conformance) may turn both off."""
        self.case = case
        self.design = design
        self.oracle = (Oracle(list(case.processes), self._in_flight_maps, case.hpage_pmd_nr,
                              in_flight_copies=self._in_flight_copies) if oracle else None)
        self.check_invariants = check_invariants
        #: the swap device: zram (SWP_SYNCHRONOUS_IO, the default) or a disk (Case.settings ``swap_device``)
        self.swp_synchronous_io = dict(getattr(case, "settings", ()) or ()).get("swap_device", "zram") == "zram"
        #: the anonymous THP sizes enabled in VM_HUGEPAGE vmas (Case.settings ``thp_sizes``; the PMD size by default)
        self.thp_sizes = tuple(dict(getattr(case, "settings", ()) or ()).get("thp_sizes") or (case.hpage_pmd_nr,))
        self.ops = [t.ops for t in case.threads]
        #: symmetry may renumber swap slots: no large folio can arise (no THP mmap, MADV_HUGEPAGE or
        #: MADV_COLLAPSE, no khugepaged), so no step does arithmetic on slot numbers (``canonical``)
        self.rename_slots = not any(
            (op.name == "mmap" and dict(op.args).get("thp")) or op.name == "khugepaged"
            or (op.name == "madvise" and dict(op.args).get("advice") in ("hugepage", "collapse"))
            for t in case.threads for op in t.ops)
        self.cpu_of = cpu_of(case)
        self.tmm = [case.thread_mm(i) for i in range(len(case.threads))]
        self.args = [[op.arg() for op in t.ops] for t in case.threads]
        self.optext = [[str(op) for op in t.ops] for t in case.threads]
        #: per thread, per operation: the label of its first step
        self.first_label = [[OPS[op.name][0] for op in t.ops] for t in case.threads]
        #: per thread, per operation: the event a ``wait`` operation waits for (None for any other): ``step``
        #: answers a wait whose event is not set without running it (``waits_unset``)
        self.wait_event = [[dict(op.args).get("event") if op.name == "wait" else None for op in t.ops]
                           for t in case.threads]
        #: id(state) -> (state, its InFlight): the few last states asked (a state's steps share one "before")
        self._flight_memo: dict = {}
        #: (folios, mms, swap, refs, in-flight books) -> check_state's bugs: the whole-state invariants are a
        #: function of these alone, and most steps reach a memory state already checked (another interleaving
        #: of the same steps, or a step that changed only a thread's frame or the oracle's spec)
        self._check_memo: dict = {}
        #: interchangeable processes (``process_groups``), permuted by ``canonical_perm`` (symmetry="procs")
        self.proc_groups = process_groups(case, self.tmm, self.cpu_of)
        #: interchangeable threads of one process (``thread_groups``), permuted by ``canonical_perm``
        #: (symmetry="threads"), and why threads that run alike are not
        self.thread_groups, self.thread_refusals = thread_groups(case, self.tmm, self.cpu_of, self.proc_groups)
        #: per process: it exists at the start (it is not a child some thread forks)
        forked = {dict(op.args).get("child") for t in case.threads for op in t.ops if op.name == "fork"}
        self.alive_at_start = tuple(p not in forked for p in case.processes)

    def init_state(self) -> State:
        n = self.case.pages
        nr = self.case.hpage_pmd_nr
        nh = max(1, (n + nr - 1) // nr)
        mms = tuple(Mm(alive, 0, 0, -1, 0, (), (None,) * n, (None,) * nh) for alive in self.alive_at_start)
        zero = Folio(0, 1, (0,), 0, 0, (False,), (ZERO,), (-1,))
        threads = tuple(Thread(0) for _ in self.case.threads)
        return State((zero,), mms, (), (), threads, frozenset(), 0,
                     initial_spec(len(mms), n))

    # ------------------------------------------------------------------ interface
    @property
    def nthreads(self) -> int:
        return len(self.case.threads)

    def independent_groups(self) -> list:
        """A static partition of the threads into groups that never touch a
        common object: threads of one process, a process and the children it
        forks, threads naming another process (``of``), threads that signal
        and wait on one event.  Page frames, swap slots and content tokens are
        allocated from shared counters, so two groups' states interleave only
        up to renaming them (verdicts do not depend on those names).  A thread
        that drains every CPU's LRU batch (migration, ksmd's merge) touches
        every group: then there is one group.  Where a large folio can arise
        swap offsets are not names alone (``rename_slots``: alloc_swap_folio()
        looks at their alignment and order), and they come from one cursor:
        every thread that pages out is then in one group."""
        n = self.nthreads
        parent = list(range(n))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        def union(i, j):
            parent[find(i)] = find(j)

        by_proc, by_event = {}, {}
        for i, t in enumerate(self.case.threads):
            by_proc.setdefault(t.process, []).append(i)
        for i, t in enumerate(self.case.threads):
            for j in by_proc[t.process]:
                union(i, j)
            for op in t.ops:
                a = dict(op.args)
                for k in ("child", "of"):
                    if k in a:
                        for j in by_proc.get(a[k], []):
                            union(i, j)
                if "event" in a:
                    by_event.setdefault(a["event"], []).append(i)
                if op.name in ("migrate", "ksm_merge") or (op.name == "lru_add_drain" and a.get("all")):
                    for j in range(n):
                        union(i, j)
        for ts in by_event.values():
            for j in ts:
                union(ts[0], j)
        if not self.rename_slots:
            swapping = [i for i, t in enumerate(self.case.threads) if any(op.name == "pageout" for op in t.ops)]
            for j in swapping:
                union(swapping[0], j)
        groups = {}
        for i in range(n):
            groups.setdefault(find(i), []).append(i)
        return sorted(groups.values())

    def canonical(self, s: State) -> State:
        return canonical(s, self.rename_slots)

    def canonical_perm(self, s: State, symmetry: str = "procs"):
        """(the representative of ``s`` under renaming page frames and swap
        slots and permuting interchangeable processes, the thread renaming it
        applied as new_tid[old_tid] or None): symmetry over processes
        (``canonical_processes``) then over pages (``canonical``).
        ``symmetry="threads"``: then also over interchangeable threads of one
        process (``canonical_threads``, keyed on the page-renamed state)."""
        tm = None
        if self.proc_groups:
            s, tm = canonical_processes(self.proc_groups, s)
        s = canonical(s, self.rename_slots)
        if symmetry == "threads" and self.thread_groups:
            s, tt = canonical_threads(self.thread_groups, s)
            if tt is not None:
                s = canonical(s, self.rename_slots)
                tm = tt if tm is None else tuple(tt[x] for x in tm)
        return s, tm

    def symmetry_notes(self, symmetry) -> list:
        """What a symmetry mode leaves out of this case, and why (the explorer adds it to its report)."""
        return list(self.thread_refusals) if symmetry == "threads" else []

    def violations(self, tr: Transition) -> list:
        """[(kind, incident key, text)] of the verdict events of a step."""
        return [(e.kind, e.key, e.text) for e in tr.events if e.kind in VERDICTS]

    def model_bugs(self, tr: Transition) -> list:
        return list(tr.bugs)

    SYNC = ("signal", "wait")

    def thread_done(self, s: State, tid: int) -> bool:
        t = s.threads[tid]
        if t.pc >= len(self.ops[tid]):
            return True
        m = s.mms[self.tmm[tid]]
        # a process that exited runs no more memory operations (its sync
        # signals still reach the others, as the parent's wait() does)
        return (not m.alive and t.label is None and self._started(s, tid)
                and all(op.name not in self.SYNC for op in self.ops[tid][t.pc:]))

    def waits_unset(self, s: State, tid: int):
        """The event the thread's next operation, a ``wait`` not yet begun,
        waits for when it is not set (sync.wait would block), else None:
        ``step`` and ``footprint`` answer such a step without running it."""
        t = s.threads[tid]
        if t.stack or t.pc >= len(self.wait_event[tid]):
            return None
        ev = self.wait_event[tid][t.pc]
        return ev if ev is not None and ev not in s.signals else None

    def _started(self, s: State, tid: int) -> bool:
        """Whether the thread's process can have run it: it has begun, or its
        process existed from the start (so a dead one exited: exit_group()
        ends the threads that had not begun too; a forked child's threads wait
        for the fork)."""
        t = s.threads[tid]
        return t.pc > 0 or t.label is not None or self.alive_at_start[self.tmm[tid]]

    def is_done(self, s: State) -> bool:
        return all(self.thread_done(s, i) for i in range(len(s.threads)))

    def actions(self, s: State) -> list[int]:
        return [i for i in range(len(s.threads)) if self.step(s, i) is not None]

    def step(self, s: State, tid: int, kernel_cls=Kernel) -> Transition | None:
        """``kernel_cls``: the Kernel class the step runs against (``footprint``
        passes one that records what the step reads)."""
        t = s.threads[tid]
        pc = t.pc
        if pc >= len(self.ops[tid]):
            return None
        mm = self.tmm[tid]
        op = self.ops[tid][pc]
        optext = self.optext[tid][pc]
        if not s.mms[mm].alive:
            if self.thread_done(s, tid):
                return None
            if not self._started(s, tid):
                return None       # process not forked yet
            if op.name not in self.SYNC:
                # the process exited: skip its remaining memory operations
                return Transition(s._replace(threads=_set(s.threads, tid, Thread(pc + 1))), tid,
                                  optext, "exited", "do_exit", "the process has exited", (), (), ())
        args = self.args[tid][pc]
        stack = t.stack
        if stack:
            label, fr = stack[-1]
        else:
            if kernel_cls is Kernel and self.waits_unset(s, tid) is not None:
                return None           # sync.wait, blocked (a TrackingKernel runs it: the footprint reads the event)
            label, fr = self.first_label[tid][pc], None
        fn = STEPS[label]
        k = kernel_cls(s, self.design, tid, mm, self.case.hpage_pmd_nr, t.ret)
        k.SWP_SYNCHRONOUS_IO = self.swp_synchronous_io
        k.THP_SIZES = self.thp_sizes
        k.cpu = self.cpu_of[tid]
        k.thread_mm = self.tmm
        try:
            nxt = fn(k, fr, args)
        except Blocked:
            return None
        except ModelBug as e:
            return Transition(s, tid, optext, label, fn.__name__, _doc(fn), (),
                              (f"model bug in {label}: {e}",), ())
        stack = stack[:-1]
        ret = None
        if nxt is None:
            pass
        else:
            tn = type(nxt)
            if tn is Goto:
                stack += ((nxt[0], nxt[1]),)                             # (label, frame)
            elif tn is Call:
                stack += ((nxt[2], nxt[3]), (nxt[0], nxt[1]))           # (then, caller), (label, frame)
            elif tn is Return:
                ret = nxt[0]
            else:
                return Transition(s, tid, optext, label, fn.__name__, _doc(fn), (),
                                  (f"model bug in {label}: the step returned {nxt!r}, not Goto/Call/Return",), ())
        done = not stack
        threads = k.threads
        threads[tid] = (_tuple_new(Thread, (pc + 1,) + _THREAD_AT_BOUNDARY) if done
                        else _tuple_new(Thread, (pc, stack, threads[tid][_IRQS_OFF], ret)))
        new = k.commit()
        effects = tuple(k.effects)
        events = ()
        if self.oracle is not None:
            new, events = self.oracle.check(s, new, effects)
            events = tuple(events)
        bugs = ()
        if self.check_invariants:
            bugs = self._check_state(new)
            if effects:
                for e in effects:
                    if type(e) is Pin:
                        bugs += tuple(check_pin(new, self.design, e))
            if done:
                bugs += tuple(check_thread_end(new, tid))
        return _tuple_new(Transition, (new, tid, optext, label, fn.__name__, _doc(fn), events, bugs, effects))

    def footprint(self, s: State, tid: int):
        """(the step's Transition or None, its footprint): what the next step
        of ``tid`` reads and writes (see ``cowlab.footprint``), for dynamic
        partial-order reduction; for a blocked step, what it read before it
        blocked."""
        return _footprint.footprint(self, s, tid)

    #: whether two steps' footprints conflict (``cowlab.footprint.dependent``; the function itself: the
    #: explorer calls it for every pair of events it compares)
    dependent = staticmethod(_footprint.dependent)

    #: how many memory states ``_check_state`` remembers (then it starts again: a cache, exact either way)
    CHECK_MEMO_SIZE = 1 << 14

    def _check_state(self, s: State) -> tuple:
        """check_state() of ``s`` with its in-flight books, memoised on what it reads."""
        fl = self._in_flight(s)
        key = (s.folios, s.mms, s.swap, s.refs, fl.shares, fl.slots, fl.refs)
        memo = self._check_memo
        bugs = memo.get(key)
        if bugs is None:
            bugs = tuple(check_state(s, self.design, fl.shares, dict(fl.slots), dict(fl.refs)))
            if len(memo) >= self.CHECK_MEMO_SIZE:
                memo.clear()
            memo[key] = bugs
        return bugs

    def _in_flight(self, s: State) -> InFlight:
        """What the threads' frames declare in flight (see kernel.paths.InFlight):
        book updates a path spreads over two steps (the kernel does them under
        a lock another path does not take).  Memoised for the last few states
        (a state's steps share it as their "before")."""
        memo = self._flight_memo
        hit = memo.get(id(s))
        if hit is not None and hit[0] is s:
            return hit[1]
        fl = self._in_flight_of(s)
        if len(memo) >= 8:
            memo.clear()
        memo[id(s)] = (s, fl)          # (holding s keeps its id from being reused)
        return fl

    def _in_flight_of(self, s: State) -> InFlight:
        found = None
        nr = self.case.hpage_pmd_nr
        declares = _IN_FLIGHT
        for i, t in enumerate(s.threads):
            if not t.stack:
                continue
            for _, fr in t.stack:
                fn = declares.get(type(fr), _UNKNOWN)
                if fn is _UNKNOWN:
                    fn = declares[type(fr)] = getattr(type(fr), "in_flight", None)
                if fn is None:
                    continue
                f = fn(fr, s, self.tmm[i], self.args[i][t.pc], nr)        # (kernel.paths.in_flight)
                if f is NOTHING_IN_FLIGHT:
                    continue
                if found is None:
                    found = []
                found.append(f)
        if found is None:
            return NOTHING_IN_FLIGHT
        maps, shares, slots, refs, copies = [], [], {}, {}, []
        for f in found:
            maps += f.maps
            shares += f.shares
            copies += f.copies
            for sl, d in f.slots:
                slots[sl] = slots.get(sl, 0) + d
            for pfn, d in f.refs:
                refs[pfn] = refs.get(pfn, 0) + d
        return InFlight(tuple(maps), tuple(shares), tuple(slots.items()), tuple(refs.items()), tuple(copies))

    def _in_flight_maps(self, s: State):
        return self._in_flight(s).maps

    def _in_flight_copies(self, s: State):
        return self._in_flight(s).copies

    def thread_name(self, tid: int) -> str:
        return self.case.threads[tid].name


#: frame type -> its ``in_flight`` method or None (kernel.paths.in_flight's lookup, once per type)
_IN_FLIGHT: dict = {}
_UNKNOWN = object()


_tuple_new = tuple.__new__
#: Thread's irqs_off field
_IRQS_OFF = Thread._fields.index("irqs_off")
#: the fields after ``pc`` of a thread at an operation boundary (Thread's defaults)
_THREAD_AT_BOUNDARY = tuple(Thread._field_defaults[f] for f in Thread._fields[1:])


def _set(tup, i, v):
    lst = list(tup)
    lst[i] = v
    return tuple(lst)


@functools.lru_cache(maxsize=None)
def _doc(fn) -> str:
    """The first paragraph of a step's docstring, on one line."""
    d = (fn.__doc__ or fn.__name__).strip().split("\n\n")[0]
    return " ".join(d.split())


# ----------------------------------------------------------------------------- symmetry


def canonical(s: State, slots: bool = True) -> State:
    """The representative of ``s`` under renaming of page frames and swap
    slots: numbers are reassigned in order of first appearance (page tables of
    each mm in order, then the swap slots, references and threads; slots from
    1, offset 0 being the swap header).  Frames are interchangeable identities
    -- allocation takes any free one and no verdict depends on the number -- so
    states equal up to such a renaming behave alike (symmetry reduction over
    pages).  Swap slots are too unless a large folio may meet them:
    alloc_swap_folio() (6.12) and the swap-cache batch (6.10) do arithmetic on
    offsets (alignment, consecutive entries), so ``slots=False`` keeps every
    slot's number (CowModel.canonical decides from the case)."""
    pmap = {0: 0}
    smap = {}

    def P(pfn):
        if pfn not in pmap:
            pmap[pfn] = len(pmap)
        return pmap[pfn]

    if slots:
        def S(slot):
            if slot not in smap:
                smap[slot] = len(smap) + 1
            return smap[slot]
    else:
        def S(slot):
            smap[slot] = slot
            return slot

    for m in s.mms:
        for p in m.ptes:
            if p is not None:
                S(p.pfn) if p.kind == PTE_SWAP else P(p.pfn)
        for p in m.pmds:
            if p is not None:
                P(p.pfn)
    for i, sl in enumerate(s.swap):
        if sl is not None:
            S(i)
            if sl.cache >= 0:
                P(sl.cache)
    for r in s.refs:
        P(r.pfn)
    for pfn, f in enumerate(s.folios):
        if f is not None:
            P(pfn)
            for sl in f.swap:
                if sl >= 0:
                    S(sl)
    # (renamed, the slots are 1..n and the order-0 cursor after them: a state already so is its own representative)
    n_swap = (len(smap) + 1 if smap else 0) if slots else len(s.swap)
    if all(k == v for k, v in pmap.items()) and all(k == v for k, v in smap.items()) and \
            (not slots or (len(s.swap) == n_swap and s.swap_next == max(n_swap, 1))):
        return s

    def rp(p):
        if p is None:
            return None
        return p._replace(pfn=S(p.pfn) if p.kind == PTE_SWAP else P(p.pfn))

    # the threads' frames first: a frame may name a page no longer in use (gup-fast's lockless pte snapshot of a
    # page freed since), which takes a number of its own, so the folios are counted after them
    threads = tuple(t._replace(stack=tuple((lb, rename_frame(fr, P, S)) for lb, fr in t.stack)) if t.stack else t
                    for t in s.threads)
    if slots:
        # ... and a swap entry a frame read before its slot was freed takes a number of its own too, below the
        # cursor: the next allocation must not reuse it (the state renamed has none that could)
        n_swap = len(smap) + 1 if smap else 0
    folios = [None] * len(pmap)
    for pfn, f in enumerate(s.folios):
        if f is not None:
            folios[pmap[pfn]] = f._replace(swap=tuple(S(x) if x >= 0 else -1 for x in f.swap))
    swap = [None] * n_swap
    for i, sl in enumerate(s.swap):
        if sl is not None:
            swap[smap[i]] = sl._replace(cache=P(sl.cache) if sl.cache >= 0 else sl.cache)
    mms = tuple(m._replace(ptes=tuple(rp(p) for p in m.ptes),
                           pmds=tuple(None if p is None else p._replace(pfn=P(p.pfn)) for p in m.pmds))
                for m in s.mms)
    refs = tuple(sorted(r._replace(pfn=P(r.pfn)) for r in s.refs))
    return s._replace(folios=tuple(folios), swap=tuple(swap), mms=mms, refs=refs, threads=threads,
                      swap_next=max(n_swap, 1) if slots else s.swap_next)


def _same_tokens(a, b, nt, tok, inv, free):
    """``a`` equals ``b`` up to a bijection ``tok`` of content tokens above
    ``nt`` (the fresh ones), applied where tokens live (``free``)."""
    if a == b and not free:
        return True
    if type(a) is int and type(b) is int:
        if a == b and a <= nt:
            return True
        if not free or a <= nt or b <= nt:
            return a == b
        if tok.setdefault(a, b) != b or inv.setdefault(b, a) != a:
            return False
        return True
    if isinstance(a, (frozenset, set)) and isinstance(b, (frozenset, set)):
        if len(a) != len(b):
            return False
        if not free:
            return a == b
        rest = set(b)
        for x in sorted(a, key=repr):
            hit = next((y for y in sorted(rest, key=repr) if _same_tokens(x, y, nt, dict(tok), dict(inv), free)), None)
            if hit is None:
                return False
            _same_tokens(x, hit, nt, tok, inv, free)
            rest.discard(hit)
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        if type(a) is not type(b) or len(a) != len(b):
            return False
        fields = getattr(type(a), "_fields", None)
        for i, (x, y) in enumerate(zip(a, b)):
            f = fields[i] if fields else None
            if type(a) is Spec and f == "dma":
                if not _same_dma(x, y, nt, tok, inv):
                    return False
                continue
            sub = free or (type(a) in (Folio, SwapSlot) and f == "data") or (type(a) is Spec and f != "detached")
            if not _same_tokens(x, y, nt, tok, inv, sub):
                return False
        return True
    return a == b


def _same_dma(a, b, nt, tok, inv):
    """``Spec.dma``'s (mm, token) pairs: the process is not renamed, the token may be."""
    def by_mm(d):
        out = {}
        for mm, t in d:
            out.setdefault(mm, set()).add(t)
        return out
    da, db = by_mm(a), by_mm(b)
    return da.keys() == db.keys() and all(_same_tokens(frozenset(da[mm]), frozenset(db[mm]), nt, tok, inv, True)
                                          for mm in sorted(da))


def _trim(t: tuple) -> tuple:
    while t and t[-1] is None:
        t = t[:-1]
    return t


def same_up_to_renaming(x: State, y: State, nt: int) -> bool:
    """Whether two states are the same up to renaming page frames, swap slots
    (``canonical``) and the content tokens above ``nt`` (the ones fresh since
    the state where two orders of steps branched: ``Folio.data``,
    ``SwapSlot.data``, ``Spec.value``/``history`` and the tokens of
    ``Spec.dma``), a free frame or slot at the end of its table counting as
    none there.  Two steps the footprints call independent must reach states
    equal in this sense in either order (the diamond property DPOR rests on;
    tests/explore/test_footprint_diamond.py, tools/diamond.py)."""
    x, y = canonical(x), canonical(y)
    x = x._replace(folios=_trim(x.folios), swap=_trim(x.swap))
    y = y._replace(folios=_trim(y.folios), swap=_trim(y.swap))
    if x == y:
        return True
    if x.next_token != y.next_token:
        return False
    tok, inv = {}, {}
    return all(_same_tokens(getattr(x, f), getattr(y, f), nt, tok, inv, False) for f in x._fields)


# ----------------------------------------------------------------------------- process symmetry

#: operations whose steps read and write the calling process's own mm (and
#: the folios, swap slots and references it reaches) and never walk other
#: processes' page tables in an order of their mm numbers; a case whose
#: threads run only these (fork only in the forker) may permute processes.
#: Excluded: the rmap walkers (pageout, migrate, ksm_merge, khugepaged,
#: split_pmd, free_swapcache: vmscan/migrate/ksm visit mms in index order over
#: several steps) and the cross-process ones (speculative_get/put name a pfn
#: walker, madvise may page out or collapse).
PROC_SYMMETRY_OPS = frozenset({
    "mmap", "munmap", "mprotect", "mremap", "write", "read", "fork", "exit", "signal", "wait",
    "lru_add_drain", "get_user_pages", "put_user_pages", "pin_longterm", "pin_read", "unpin",
    "vmsplice", "pipe_read", "io_uring_register", "io_uring_unregister", "io_uring_read_fixed",
    "io_uring_write_fixed", "odirect_read", "odirect_write", "clear_refs"})


class ProcGroup(NamedTuple):
    """Interchangeable processes: forked by one thread (``forker``, whose
    operations ``fork`` them at pcs up to ``last_fork``), each with the same
    threads (one CPU each alike) running the same operations up to their own
    names (``own``: per process, the strings only its operations use -- its
    name, its events, its pins' and pipes' names -- position by position)."""
    forker: int
    last_fork: int
    procs: tuple          # mm indices, in case order
    tids: tuple           # per process: its thread ids, in case order
    own: tuple            # per process: its own strings, in order of first use


def process_groups(case, tmm, cpus) -> tuple:
    """The groups of interchangeable processes of a case (``ProcGroup``), or
    () when the case runs an operation outside ``PROC_SYMMETRY_OPS``."""
    threads = case.threads
    if any(op.name not in PROC_SYMMETRY_OPS for t in threads for op in t.ops):
        return ()
    procs = list(case.processes)
    strings_of = {}                      # process -> the strings its threads' operations use
    for i, t in enumerate(threads):
        for op in t.ops:
            for _, v in op.args:
                if isinstance(v, str):
                    strings_of.setdefault(tmm[i], []).append(v)
    forks = {}                           # child mm -> [(forker tid, pc)]
    for i, t in enumerate(threads):
        for pc, op in enumerate(t.ops):
            if op.name == "fork":
                c = dict(op.args).get("child")
                if c in procs:
                    forks.setdefault(procs.index(c), []).append((i, pc))
    cands = {}
    for mm, name in enumerate(procs):
        if len(forks.get(mm, ())) != 1:
            continue
        forker, pc = forks[mm][0]
        if tmm[forker] == mm:
            continue
        tids = tuple(i for i in range(len(threads)) if tmm[i] == mm)
        if not tids or any(op.name == "fork" for i in tids for op in threads[i].ops):
            continue
        mine = list(dict.fromkeys(strings_of.get(mm, [])))
        others = {v for m2, vs in strings_of.items() if m2 != mm for v in vs}
        # another process's operation names this one other than by the fork that makes it
        if any(v == name and not (i == forker and op.name == "fork")
               for i, t in enumerate(threads) if tmm[i] != mm for op in t.ops for _, v in op.args):
            continue
        own = [name] + [v for v in mine if v not in others and v != name]
        if any(_looks_internal(v) for v in own):
            continue
        idx = {v: k for k, v in enumerate(own)}
        sig = tuple((cpus[i], tuple((op.name, tuple((k, ("own", idx[v]) if isinstance(v, str) and v in idx else v)
                                                    for k, v in op.args))
                                   for op in threads[i].ops)) for i in tids)
        cands.setdefault((forker, sig), []).append((mm, pc, tids, tuple(own)))
    out = []
    for (forker, _), ms in sorted(cands.items(), key=lambda kv: kv[1][0][0]):
        if len(ms) >= 2:
            out.append(ProcGroup(forker, max(pc for _, pc, _, _ in ms), tuple(m for m, _, _, _ in ms),
                                 tuple(t for _, _, t, _ in ms), tuple(o for _, _, _, o in ms)))
    return tuple(out)


def _looks_internal(v: str) -> bool:
    """A string the kernel code makes up as a reference's owner (t<tid>, cpu<n>, ksmd:...)."""
    return (v[:1] == "t" and v[1:].isdigit()) or (v[:3] == "cpu" and v[3:].isdigit()) or ":" in v


def _frames_ok(t: Thread) -> bool:
    """Whether a thread's kernel stack holds only frames process symmetry
    knows how to rename (none names an mm or a thread but GupFrame.owner)."""
    for _, fr in t.stack:
        if not _frame_ok(fr):
            return False
    return True


def _frame_ok(fr) -> bool:
    if fr is None or not hasattr(type(fr), "_fields"):
        return True
    name = type(fr).__name__
    if name not in _SAFE_FRAMES:
        return False
    if name == "FaultFrame" and fr.snap is not None:
        return False
    return all(_frame_ok(v) for v in fr if hasattr(type(v), "_fields") and type(v).__name__ not in ("Pte", "Ref"))


#: frame classes whose fields name no mm and no thread (GupFrame's owner is renamed)
_SAFE_FRAMES = frozenset({"FaultFrame", "GupFrame", "SwapMapped", "SplitFrame", "AccessFrame", "MremapFrame"})


def permute_processes(s: State, mmap_: dict, tmap: dict, smap: dict) -> State:
    """``s`` with processes renamed: mm i becomes ``mmap_[i]``, thread t
    ``tmap[t]``, an own string v ``smap[v]`` (missing keys: unchanged).
    Everything that names an mm, a thread or an own string follows: the mms
    and their page-table lock holders, the threads (and GupFrame owners),
    the references' mm and owner, the oracle's rows, detached references and
    DMA'd data, and the signalled events."""
    def M(i):
        return mmap_.get(i, i)

    ren = _renamer(tmap, smap)
    n = len(s.mms)
    inv = {M(i): i for i in range(n)}
    mms = tuple(s.mms[inv[j]] for j in range(n))
    mms = tuple(m._replace(ptl=tmap.get(m.ptl, m.ptl)) if m.ptl >= 0 else m for m in mms)
    threads = _permuted_threads(s, tmap, ren)
    refs = tuple(sorted(r._replace(mm=M(r.mm) if r.mm >= 0 else r.mm, owner=ren(r.owner)) for r in s.refs))
    sp = s.spec
    spec = sp._replace(value=tuple(sp.value[inv[j]] for j in range(n)),
                       history=tuple(sp.history[inv[j]] for j in range(n)),
                       detached=frozenset((k, ren(o), M(m) if m >= 0 else m, a, ta) for k, o, m, a, ta in sp.detached),
                       dma=frozenset((M(m), tok) for m, tok in sp.dma))
    signals = frozenset(ren(e) for e in s.signals)
    return s._replace(mms=mms, threads=threads, refs=refs, spec=spec, signals=signals)


def _renamer(tmap: dict, smap: dict, cmap: dict | None = None):
    """The renaming of a name a reference, a frame, a detached reference or an
    event holds: an own string v becomes ``smap[v]``, ``t<tid>`` the thread
    ``tmap[tid]``, ``cpu<n>`` (with ``cmap``) the CPU ``cmap[n]``; an owner is a
    name or "process:name" (a pin's, a pipe's, a buffer's holder), renamed part
    by part; anything else is kept."""
    def ren1(v):
        if v in smap:
            return smap[v]
        if v[:1] == "t" and v[1:].isdigit():
            return f"t{tmap.get(int(v[1:]), int(v[1:]))}"
        if cmap and v[:3] == "cpu" and v[3:].isdigit():
            return f"cpu{cmap.get(int(v[3:]), int(v[3:]))}"
        return v

    def ren(v):
        if isinstance(v, str):
            return ":".join(ren1(x) for x in v.split(":")) if ":" in v else ren1(v)
        return v
    return ren


def _permuted_threads(s: State, tmap: dict, ren) -> tuple:
    """The threads of ``s`` in their new order (thread t at ``tmap[t]``), the
    names in their kernel stacks renamed by ``ren``."""
    nt = len(s.threads)
    tinv = {tmap.get(i, i): i for i in range(nt)}
    threads = []
    for j in range(nt):
        t = s.threads[tinv[j]]
        if t.stack:
            t = t._replace(stack=tuple((lb, _rename_owner(fr, ren)) for lb, fr in t.stack))
        threads.append(t)
    return tuple(threads)


def _rename_owner(fr, ren):
    if type(fr).__name__ == "GupFrame":
        return fr._replace(owner=ren(fr.owner))
    return fr


def _local_key(s: State, mm: int, tids, own, strs) -> str:
    """A sort key of one process of a group that does not depend on how
    frames, slots, mms or threads are numbered (frames and slots by first
    appearance in its own page tables; its folios' contents in place): what
    orders the group in the canonical state.  Not complete (two processes may
    tie), which only costs merges."""
    loc = {}

    def L(x):
        if x not in loc:
            loc[x] = len(loc)
        return loc[x]

    m = s.mms[mm]
    ptes = []
    for p in m.ptes:
        if p is None:
            ptes.append(None)
        elif p.kind == PTE_SWAP:
            sl = s.swap[p.pfn] if p.pfn < len(s.swap) else None
            ptes.append((p._replace(pfn=L(("s", p.pfn))), sl and sl._replace(cache=-2 if sl.cache >= 0 else -1)))
        else:
            f = s.folios[p.pfn] if p.pfn < len(s.folios) else None
            ptes.append((p._replace(pfn=L(("p", p.pfn))), f and f._replace(swap=())))
    pmds = tuple(None if p is None else (p._replace(pfn=L(("p", p.pfn))),) for p in m.pmds)
    ths = tuple((s.threads[t].pc, s.threads[t].irqs_off, repr(s.threads[t].ret),
                 tuple(lb for lb, _ in s.threads[t].stack)) for t in tids)
    refs = sorted((r.kind, tuple(strs.get(x, x) for x in r.owner.split(":")), r.addr, r.taken_at, r.gup_flags, r.units,
                   L(("p", r.pfn)), r.idx) for r in s.refs if r.mm == mm)
    sig = sorted(strs[e] for e in s.signals if e in strs)
    return repr((m.alive, m.flags, m.mmap_lock, m.ptl >= 0, m.write_protect_seq, m.vmas, ptes, pmds, ths,
                 s.spec.value[mm], tuple(sorted(h) for h in s.spec.history[mm]), refs, sig,
                 sorted((x[0], x[3], x[4]) for x in s.spec.detached if x[2] == mm),
                 sorted(tok for m2, tok in s.spec.dma if m2 == mm)))


def canonical_processes(groups, s: State):
    """(the state with each group of interchangeable processes sorted by
    ``_local_key``, the thread renaming as a tuple new_tid[old_tid], or None
    when nothing moved).  A group is permuted only once its forker has forked
    all of it, and only while every thread's kernel stack holds frames that
    name no mm and no thread (``_frames_ok``)."""
    mmap_, tmap, smap = {}, {}, {}
    for g in groups:
        if s.threads[g.forker].pc <= g.last_fork:
            continue
        if not all(_frames_ok(t) for t in s.threads):
            return s, None
        keys = []
        for k, mm in enumerate(g.procs):
            strs = {v: ("own", j) for j, v in enumerate(g.own[k])}
            keys.append((_local_key(s, mm, g.tids[k], g.own[k], strs), k))
        order = [k for _, k in sorted(keys)]          # slot j takes process order[j]
        for j, k in enumerate(order):
            if k == j:
                continue
            mmap_[g.procs[k]] = g.procs[j]
            for a, b in zip(g.tids[k], g.tids[j]):
                tmap[a] = b
            for a, b in zip(g.own[k], g.own[j]):
                smap[a] = b
    if not mmap_:
        return s, None
    ns = permute_processes(s, mmap_, tmap, smap)
    return ns, tuple(tmap.get(i, i) for i in range(len(s.threads)))


# ----------------------------------------------------------------------------- thread symmetry


class ThreadGroup(NamedTuple):
    """Interchangeable threads of one process (``mm``): each on a CPU of its
    own that no other thread uses (``cpus``), running the same whole list of
    operations up to their own names (``own[k]``: the strings only its
    operations use -- its pins', pipes', buffers' and events' names --
    position by position), none of them forking and none the process's main
    thread.  ``tids[k]`` at pc i runs what ``tids[j]`` runs at pc i, so two
    of them may be swapped in any state (with their CPUs and names)."""
    mm: int
    tids: tuple
    own: tuple
    cpus: tuple


def _op_strings(ops) -> list:
    return [v for op in ops for _, v in op.args if isinstance(v, str)]


def _signature(ops, own) -> tuple:
    idx = {v: k for k, v in enumerate(own)}
    return tuple((op.name, tuple((k, ("own", idx[v]) if isinstance(v, str) and v in idx else v) for k, v in op.args))
                 for op in ops)


def thread_groups(case, tmm, cpus, proc_groups=None):
    """(the groups of interchangeable threads of a case (``ThreadGroup``),
    the reasons threads that run alike are not grouped).  Threads are grouped
    by the signature of their whole operation lists; a thread joins only when
    everything that names it can be renamed: its CPU is its own (per-CPU
    lru_add batches are renamed with it), its own names look like no name the
    kernel code makes up (``t<tid>``, ``cpu<n>``, ``a:b``) and no process's,
    it forks no child (that would permute processes too), it is not its
    process's main thread and its process is in no group of interchangeable
    processes (``proc_groups``: the case's ``process_groups``, worked out
    when not given).  A thread whose operations end like a group's after operations
    of its own (the main thread's set-up before a ``parallel`` block) does not
    join it: such a thread is told apart by where it starts (a thread that has
    not started is not forked yet), so swapping it with one of the group is no
    symmetry of the model; the reasons say so."""
    threads = case.threads
    n = len(threads)
    users = {}                                     # string -> the threads whose operations use it
    for i, t in enumerate(threads):
        for v in _op_strings(t.ops):
            users.setdefault(v, set()).add(i)
    ncpu = {}
    for c in cpus:
        ncpu[c] = ncpu.get(c, 0) + 1
    procs = set(case.processes)
    if proc_groups is None:
        proc_groups = process_groups(case, tmm, cpus)
    grouped_procs = {mm for g in proc_groups for mm in g.procs}

    def own_of(i, ops=None):
        """The strings only thread i uses, in order of first use in ``ops`` (its whole list by default)."""
        return tuple(dict.fromkeys(v for v in _op_strings(threads[i].ops if ops is None else ops) if users[v] == {i}))

    def sig(i, ops):
        return (tmm[i], _signature(ops, own_of(i, ops)))

    members = {}                                   # signature -> [tid]
    for i in range(n):
        members.setdefault(sig(i, threads[i].ops), []).append(i)
    out, refused = [], []
    for sg, ts in members.items():
        names = ", ".join(threads[i].name for i in ts)
        # threads that run this group's operations after a prefix of their own
        late = [i for i in range(n) if i not in ts and len(threads[i].ops) > len(sg[1])
                and sig(i, threads[i].ops[len(threads[i].ops) - len(sg[1]):]) == sg]
        if late and len(ts) + len(late) >= 2:
            refused.append(f"thread{'s' * (len(late) > 1)} {', '.join(threads[i].name for i in late)} "
                           f"run{'s' * (len(late) == 1)} like {names} after set-up operations of "
                           f"{'their' if len(late) > 1 else 'its'} own: not permuted with "
                           f"{'them' if len(ts) > 1 else 'it'} (a thread is told apart by where it starts)")
        if len(ts) < 2:
            continue
        why = None
        if any(threads[i].name == threads[i].process for i in ts):
            why = "one of them is its process's main thread"
        elif tmm[ts[0]] in grouped_procs:
            why = "their process is permuted with others (symmetry over processes)"
        elif any(op.name == "fork" for i in ts for op in threads[i].ops):
            why = "they fork (the children would be permuted with them)"
        elif any(ncpu[cpus[i]] > 1 for i in ts):
            shared = next(cpus[i] for i in ts if ncpu[cpus[i]] > 1)
            why = f"CPU {shared} runs another thread too (its lru_add batch cannot follow one thread)"
        else:
            bad = [v for i in ts for v in own_of(i) if _looks_internal(v) or v in procs]
            if bad:
                why = f"their own name {bad[0]!r} looks like a thread's, a CPU's or a process's"
        if why:
            refused.append(f"threads {names} run alike but are not permuted: {why}")
            continue
        out.append(ThreadGroup(sg[0], tuple(ts), tuple(own_of(i) for i in ts), tuple(cpus[i] for i in ts)))
    out.sort(key=lambda g: g.tids)
    return tuple(out), tuple(refused)


def permute_threads(s: State, tmap: dict, smap: dict, cmap: dict) -> State:
    """``s`` with threads of one process renamed: thread t becomes
    ``tmap[t]``, an own string v ``smap[v]``, CPU c ``cmap[c]`` (missing
    keys: unchanged).  Everything that names a thread follows: the threads
    (program counter, kernel stack with GupFrame owners, IRQs-off gup-fast
    section, return value), the page-table lock holder, the references' owner
    (``t<tid>``, ``cpu<n>`` of an lru_add batch, a pin's or pipe's
    ``process:name``), the oracle's detached references and the signalled
    events."""
    ren = _renamer(tmap, smap, cmap)
    threads = _permuted_threads(s, tmap, ren)
    mms = tuple(m._replace(ptl=tmap[m.ptl]) if m.ptl in tmap else m for m in s.mms)
    refs = tuple(sorted(r._replace(owner=ren(r.owner)) for r in s.refs))
    sp = s.spec
    spec = sp._replace(detached=frozenset((k, ren(o), m, a, ta) for k, o, m, a, ta in sp.detached))
    signals = frozenset(ren(e) for e in s.signals)
    return s._replace(mms=mms, threads=threads, refs=refs, spec=spec, signals=signals)


def _thread_key(s: State, tid: int, names: dict) -> tuple:
    """A sort key of one thread of a group that does not depend on its name
    (what ``canonical_threads`` compares when two threads are at the same
    place: their IRQs-off sections and return values, their frames, whether
    they hold the page-table lock, the references they own and their own
    signalled events, with their names -- ``names``: its own strings, ``t<tid>``
    and ``cpu<n>`` -- written by position).  Not complete (two threads may
    tie), which only costs merges."""
    t = s.threads[tid]

    def loc(v):
        if v in names:
            return names[v]
        if ":" in v:
            parts = v.split(":")
            if any(x in names for x in parts):
                return ":".join(names.get(x, x) for x in parts)
        return v

    return (t.irqs_off, repr(t.ret),
            repr(tuple(_rename_owner(fr, loc) for _, fr in t.stack)) if t.stack else "",
            any(m.ptl == tid for m in s.mms),
            tuple(sorted((r.kind, lo, r.mm, r.addr, r.taken_at, r.gup_flags, r.units, r.pfn, r.idx)
                         for r in s.refs if (lo := loc(r.owner)) is not r.owner)),
            tuple(sorted(lo for e in s.signals if (lo := loc(e)) is not e)))


def _names(g, k: int) -> dict:
    """The names of thread ``k`` of group ``g`` -> how ``_thread_key`` writes them."""
    d = {v: f"#own{j}" for j, v in enumerate(g.own[k])}
    d[f"t{g.tids[k]}"] = "#me"
    d[f"cpu{g.cpus[k]}"] = "#cpu"
    return d


def _order(s: State, g) -> list:
    """The group's threads (indices k) in canonical order: by pc and the
    stack's labels, ties by ``_thread_key``."""
    th = s.threads
    cheap = sorted(((th[t].pc, tuple(lb for lb, _ in th[t].stack)), k) for k, t in enumerate(g.tids))
    out, i, n = [], 0, len(cheap)
    while i < n:
        j = i + 1
        while j < n and cheap[j][0] == cheap[i][0]:
            j += 1
        if j - i == 1:
            out.append(cheap[i][1])
        else:
            out += [k for _, k in sorted((_thread_key(s, g.tids[k], _names(g, k)), k) for _, k in cheap[i:j])]
        i = j
    return out


def canonical_threads(groups, s: State):
    """(the state with each group of interchangeable threads sorted by
    ``_order``, the thread renaming as a tuple new_tid[old_tid], or None
    when nothing moved)."""
    tmap, smap, cmap = {}, {}, {}
    for g in groups:
        order = _order(s, g)
        for j, k in enumerate(order):            # slot j takes thread k
            if k == j:
                continue
            tmap[g.tids[k]] = g.tids[j]
            cmap[g.cpus[k]] = g.cpus[j]
            for a, b in zip(g.own[k], g.own[j]):
                smap[a] = b
    if not tmap:
        return s, None
    ns = permute_threads(s, tmap, smap, cmap)
    return ns, tuple(tmap.get(i, i) for i in range(len(s.threads)))
