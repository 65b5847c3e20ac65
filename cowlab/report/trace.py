"""One trace object, three renderings (terminal, JSON, HTML).

``build(model, transitions)`` turns the transitions of a run or of an
explorer witness into a versioned, JSON-serialisable document:

    {"schema": "cowlab-trace/1", "case": {...}, "design": {...},
     "threads": [name, ...], "processes": [name, ...],
     "steps": [{"i", "thread", "tid", "op", "function", "doc",
                "events": [{"kind", "text"}], "effects": [text],
                "state": SNAPSHOT, "changed": [text: what the step changed],
                "decisions": [{"hook", "answer", "from_step", "reads": [{"call",
                  "value", "step"}]}]: what each design hook read, as it
                  read it, and in which step}, ...],
     "initial": SNAPSHOT, "verdict_step": i | null, "verdicts": {kind: count}}

    SNAPSHOT = {"processes": [{"name", "alive", "ptes": [{"addr", "kind":
                  "present"|"swap"|"migration", "pfn"|"slot", "idx", "write",
                  "dirty", "excl"}], "pmds": [{"addr", "pfn", "write"}]}],
                "pages": [{"pfn", "refcount", "mapcount", "entire_mapcount",
                  "pincount", "flags", "exclusive", "data", "swap"}],
                "swap": [{"slot", "count", "cache", "data"}],
                "refs": [{"kind", "owner", "process", "addr", "pfn", "idx",
                  "flags", "transient"}]}
"""
from __future__ import annotations

from ..kernel.effects import (Copy, CopyPte, DupMmap, Error, Exit, Fork, KsmBreakCow, KsmMerge, Load, Migrate,
                              MigrateFailed, Move, Pin, Reuse, Segv, SplitPmd, Store, Swapin, Unmap, CollapsePmd)
from ..kernel.types import (ZERO_PFN, FLAG_NAMES, PTE_MIGRATION, PTE_PRESENT, PTE_SWAP, TRANSIENT_REFS,
                            gup_flag_names)
from ..verdict import MISSED, UNNECESSARY, WRONG

SCHEMA = "cowlab-trace/1"
VERDICT_KINDS = (MISSED, WRONG, UNNECESSARY)      # the order of "verdicts" in the trace JSON


def _data(v):
    return "0" if v == 0 else (f"#{v}" if isinstance(v, int) else str(v))


def snapshot(model, s) -> dict:
    names = list(model.case.processes)
    procs = []
    for i, m in enumerate(s.mms):
        ptes = []
        for a, p in enumerate(m.ptes):
            if p is None:
                continue
            if p.kind == PTE_PRESENT:
                ptes.append({"addr": a, "kind": "present", "pfn": p.pfn, "idx": p.idx, "write": p.write,
                             "dirty": p.dirty, "excl": None})
            elif p.kind == PTE_SWAP:
                ptes.append({"addr": a, "kind": "swap", "slot": p.pfn, "excl": bool(p.excl)})
            elif p.kind == PTE_MIGRATION:
                ptes.append({"addr": a, "kind": "migration", "pfn": p.pfn, "idx": p.idx, "excl": p.excl})
        pmds = [{"addr": h * model.case.hpage_pmd_nr, "pfn": p.pfn, "write": p.write} for h, p in enumerate(m.pmds)
                if p is not None]
        procs.append({"name": names[i], "alive": m.alive, "ptes": ptes, "pmds": pmds})
    pages = []
    for pfn, f in enumerate(s.folios):
        if f is None:
            continue
        pages.append({"pfn": pfn, "zero": pfn == ZERO_PFN, "refcount": f.refcount, "mapcount": list(f.mapcount),
                      "entire_mapcount": f.entire_mapcount, "pincount": f.pincount,
                      "flags": [n for b, n in FLAG_NAMES.items() if f.flags & b],
                      "exclusive": list(f.anon_exclusive), "data": [_data(d) for d in f.data],
                      "swap": list(f.swap)})
    swap = [{"slot": i, "count": sl.count, "cache": sl.cache, "data": _data(sl.data)}
            for i, sl in enumerate(s.swap) if sl is not None]
    refs = [{"kind": r.kind, "owner": r.owner, "process": names[r.mm] if 0 <= r.mm < len(names) else None,
             "addr": r.addr, "pfn": r.pfn, "idx": r.idx, "flags": gup_flag_names(r.gup_flags),
             "transient": r.kind in TRANSIENT_REFS} for r in s.refs]
    return {"processes": procs, "pages": pages, "swap": swap, "refs": refs}


def _render_reuse(n, e: Reuse) -> str:
    return f"{n(e.mm)} reuses page {e.addr} (pfn {e.pfn}) on a {e.fault} fault"


def _render_copy(n, e: Copy) -> str:
    return f"{e.path}: {n(e.mm)} gets a copy of pfn {e.old_pfn} as pfn {e.new_pfn} at page {e.addr}"


def _render_store(n, e: Store) -> str:
    via = f" through {e.via.kind} {e.via.owner}" if e.via is not None else ""
    return f"{n(e.mm)} page {e.addr} := {_data(e.data)}{via} (pfn {e.pfn})"


def _render_load(n, e: Load) -> str:
    return f"{e.reader} {e.owner} reads page {e.addr} of {n(e.mm)}: {_data(e.data)} (pfn {e.pfn})"


def _render_swapin(n, e: Swapin) -> str:
    return f"{n(e.mm)} swaps in page {e.addr} as pfn {e.pfn}{' exclusive' if e.exclusive else ''}"


def _render_pin(n, e: Pin) -> str:
    return f"{n(e.mm)} page {e.addr} pinned ({gup_flag_names(e.gup_flags)}) on pfn {e.pfn}"


def _render_fork(n, e: Fork) -> str:
    return f"{n(e.parent)} forked {n(e.child)}"


def _render_dup_mmap(n, e: DupMmap) -> str:
    return f"{n(e.parent)} starts copying its address space for {n(e.child)}"


def _render_copy_pte(n, e: CopyPte) -> str:
    pages = f"pages {e.addr}..{e.addr + e.nr - 1}" if e.nr > 1 else f"page {e.addr}"
    return f"{n(e.child)} gets {n(e.parent)}'s {pages} as they are now"


def _render_unmap(n, e: Unmap) -> str:
    return f"{n(e.mm)} unmaps page {e.addr}"


def _render_split_pmd(n, e: SplitPmd) -> str:
    return f"{n(e.mm)} splits the PMD of pfn {e.pfn}"


def _render_collapse_pmd(n, e: CollapsePmd) -> str:
    old = ", ".join(map(str, e.old)) or "none"
    return f"{n(e.mm)} collapses its PMD {e.hidx} into the new THP pfn {e.pfn} (a copy of pfn {old})"


def _render_ksm_break_cow(n, e: KsmBreakCow) -> str:
    return f"ksmd breaks COW of {n(e.mm)}'s page {e.addr} (pfn {e.pfn}, made a KSM page): its twin was refused"


# the kinds below keep their terse form: the kind and its fields in order
def _render_migrate(n, e: Migrate) -> str:
    return f"migrate {e.src} {e.dst}"


def _render_migrate_failed(n, e: MigrateFailed) -> str:
    return f"migrate_failed {e.pfn}"


def _render_ksm_merge(n, e: KsmMerge) -> str:
    return f"ksm_merge {e.mm} {e.addr} {e.tree_mm} {e.tree_addr} {e.pfn}"


def _render_segv(n, e: Segv) -> str:
    return f"segv {e.mm} {e.addr}"


def _render_exit(n, e: Exit) -> str:
    return f"exit {e.mm}"


def _render_error(n, e: Error) -> str:
    return f"error {e.call} {e.mm} {e.addr}"


def _render_move(n, e: Move) -> str:
    return f"move {e.mm} {e.old_addr} {e.new_addr}"


#: effect type -> its renderer (n, effect) -> text, n naming a process by its mm
RENDERERS = {Reuse: _render_reuse, Copy: _render_copy, Store: _render_store, Load: _render_load,
             Swapin: _render_swapin, Pin: _render_pin, Fork: _render_fork, DupMmap: _render_dup_mmap,
             CopyPte: _render_copy_pte, Unmap: _render_unmap,
             SplitPmd: _render_split_pmd, CollapsePmd: _render_collapse_pmd,
             KsmBreakCow: _render_ksm_break_cow, Migrate: _render_migrate,
             MigrateFailed: _render_migrate_failed, KsmMerge: _render_ksm_merge, Segv: _render_segv,
             Exit: _render_exit, Error: _render_error, Move: _render_move}


def render_effect(model, e) -> str:
    """One line for the effect ``e`` (a type of kernel/effects.py), by its renderer."""
    names = list(model.case.processes)
    return RENDERERS[type(e)](lambda mm: names[mm] if 0 <= mm < len(names) else f"mm{mm}", e)


# ------------------------------------------------------------ what a decision read, when it read it
class _ReadLog:
    """The kernel view ``k`` as a design hook sees it, recording every call
    that answers a number or a truth value (``page_mapcount(pfn, idx)``,
    ``PageKsm(pfn)``, ``trylock_page(pfn)`` ...) with its answer at that
    moment.  Everything else passes through unchanged."""
    __slots__ = ("_k", "_log")

    def __init__(self, k, log):
        object.__setattr__(self, "_k", k)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name):
        v = getattr(self._k, name)
        if name.startswith("_") or not callable(v):
            return v

        def call(*a, **kw):
            r = v(*a, **kw)
            if isinstance(r, (bool, int)) and not isinstance(r, str):
                self._log.append((name, a, r))
            return r
        return call

    def __setattr__(self, name, value):
        setattr(self._k, name, value)


def _recording(design, log):
    """A copy of ``design`` whose hooks run as before, on a ``_ReadLog`` view of
    ``k``, and append {"hook", "reads", "answer"} to ``log`` (the design's
    answers are unchanged: only what it reads is written down)."""
    import copy

    from ..designs.contract import SIGNATURE
    from ..kernel.decisions import HOOKS
    cls = type(design)
    ns = {"__slots__": (), "__module__": cls.__module__}

    def wrap(name):
        sig = SIGNATURE[name]

        def hook(self, *a, **kw):
            ba = sig.bind(self, *a, **kw)
            reads: list = []
            if "k" in ba.arguments:
                ba.arguments["k"] = _ReadLog(ba.arguments["k"], reads)
            answer = getattr(super(new, self), name)(*ba.args[1:], **ba.kwargs)
            log.append({"hook": name, "reads": reads, "answer": answer})
            return answer
        hook.__name__ = name
        return hook
    for n in HOOKS:
        ns[n] = wrap(n)
    new = type(cls.__name__, (cls,), ns)
    rec = copy.copy(design)
    rec.__class__ = new
    return rec


def _show_answer(a) -> str:
    from ..kernel.decisions import READ_MORE, Decision
    if isinstance(a, Decision):
        return a.name
    if isinstance(a, tuple) and len(a) == 2 and a[0] == READ_MORE:
        return "read more"
    if isinstance(a, tuple) and hasattr(a, "_fields"):
        return f"{type(a).__name__}({', '.join(f'{f}={_show_answer(v)}' for f, v in zip(a._fields, a))})"
    return str(a).lower() if isinstance(a, bool) else str(a)


def _call_text(name, args) -> str:
    return f"{name}({', '.join(map(str, args))})"


def decisions(model, transitions) -> list | None:
    """For each transition, the design's decisions made in it: [{"hook",
    "answer", "reads": [{"call", "value", "step"}], "from_step"}], a read
    listed with the step it was made in.  A decision that took several
    atomic steps (``read_more``: separate loads of separate counters) lists
    its earlier reads with their own steps; ``from_step`` is the step of its
    first read.  None when the run cannot be repeated with the reads
    recorded (it then is not told)."""
    from ..explore import replay
    from ..model import CowModel
    log: list = []
    try:
        m = CowModel(model.case, _recording(model.design, log))
        trs = replay(m, [(tr.tid, tr.label) for tr in transitions])
        out, pending = [], {}
        for i, tr in enumerate(trs):       # the step ran as the generator advanced: its hooks are in log
            if tr.state != transitions[i].state:
                return None                # recording changed the run: tell nothing rather than a wrong read
            entries = list(log)
            log.clear()
            next_tr = tr
            mine = []
            for entry in entries:
                reads = [{"call": _call_text(n, a), "value": _show_answer(v), "step": i} for n, a, v in entry["reads"]]
                reads = pending.pop(next_tr.tid, []) + reads
                if _show_answer(entry["answer"]) == "read more":
                    pending[next_tr.tid] = reads
                    continue
                mine.append({"hook": entry["hook"], "answer": _show_answer(entry["answer"]), "reads": reads,
                             "from_step": reads[0]["step"] if reads else i})
            out.append(mine)
        return out
    except Exception:                 # a design whose hooks cannot run twice: no reads to tell
        return None


def build(model, transitions, meta: dict | None = None) -> dict:
    s0 = model.init_state()
    steps = []
    counts = {k: 0 for k in VERDICT_KINDS}
    seen = set()
    verdict_step = None
    from .terminal import changes
    transitions = list(transitions)
    decided = decisions(model, transitions)
    prev = snapshot(model, s0)
    for i, tr in enumerate(transitions):
        events = [{"kind": e.kind, "text": e.text} for e in tr.events]
        for e in tr.events:
            if e.kind in counts:
                if e.key is None or e.key not in seen:     # one incident counts once
                    counts[e.kind] += 1
                    seen.add(e.key)
                if verdict_step is None:
                    verdict_step = i
        steps.append({"i": i, "thread": model.thread_name(tr.tid), "tid": tr.tid, "op": tr.op,
                      "function": tr.func, "doc": tr.doc, "label": tr.label, "events": events,
                      "bugs": list(tr.bugs),
                      "effects": [t for e in tr.effects if (t := render_effect(model, e))],
                      "state": (cur := snapshot(model, tr.state)),
                      "changed": changes(prev, cur),
                      "decisions": decided[i] if decided is not None else []})
        prev = cur
    d = model.design
    return {"schema": SCHEMA,
            "case": {"id": model.case.id, "title": model.case.title, "source": model.case.source},
            "design": {"name": d.name, "kernel": d.kernel, "summary": d.summary, "settings": d.settings,
                       "anon_exclusive": d.anon_exclusive},
            "threads": [t.name for t in model.case.threads], "processes": list(model.case.processes),
            "initial": snapshot(model, s0), "steps": steps, "verdict_step": verdict_step,
            "verdicts": counts, **(meta or {})}


def can_interleave(model, trace=None) -> bool:
    """Can more than one thread move at some state of this run (a race case)?
    ``trace``: [(tid, label)] of the run (default: the sequential one)."""
    from ..explore import replay
    if trace is None:
        from ..run import run_sequential
        r = run_sequential(model)
        trace = [(_tid(model, t), t["label"]) for t in r.trace]
    s = model.init_state()
    if sum(model.step(s, t) is not None for t in range(model.nthreads)) > 1:
        return True
    for tr in replay(model, trace):
        s = tr.state
        if sum(model.step(s, t) is not None for t in range(model.nthreads)) > 1:
            return True
    return False


def transitions_for(case, design, mode: str = "auto"):
    """The transitions to tell: the sequential run, or -- with mode "explore",
    or "auto" and a race case (tagged race, or threads that can interleave) --
    the shortest trace the explorer finds to a violation (most severe kind
    first); when the search finds none, the sequential run, and the meta says
    that every interleaving was explored and what it covered."""
    from ..explore import explore, replay
    from ..model import CowModel
    from ..run import run_sequential
    m = CowModel(case, design)
    r = run_sequential(m)
    seq = [(_tid(m, t), t["label"]) for t in r.trace]
    race = "race" in case.tags or can_interleave(m, seq)
    explored = None
    if mode == "explore" or (mode == "auto" and race):
        rep = explore(m, por=True, expect_stuck=case.expect_stuck)
        explored = {"states": rep.states, "status": rep.status, "reason": rep.reason, "found": sorted(rep.found)}
        if rep.found:
            severity = {MISSED: 0, WRONG: 1, UNNECESSARY: 2}
            w = min(rep.found.values(), key=lambda w: (severity.get(w.kind, 3), w.depth))
            return m, list(replay(m, w.trace)), {"mode": "explore", "states": rep.states, "status": rep.status,
                                                 "race": race, "kind": w.kind, "explored": explored}
    meta = {"mode": "sequential", "status": r.status, "race": race}
    if explored is not None:
        meta["explored"] = explored
        if explored["status"] != "complete":
            meta["status"] = "inconclusive"
    return m, list(replay(m, seq)), meta


def _tid(m, step):
    return [t.name for t in m.case.threads].index(step["thread"])
