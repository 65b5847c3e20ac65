"""The explorer: every interleaving of a model's atomic steps.

It knows nothing about memory.  It sees a model through this interface
(as stateright's ``Model`` trait):

* ``init_state()`` -> a hashable state;
* ``nthreads`` and ``step(state, tid)`` -> a transition (with ``.state``,
  ``.tid``, ``.label``) or None when the thread cannot move;
* ``is_done(state)`` -> every thread finished;
* ``violations(transition)`` -> [(kind, key, text)]: what the step broke;
* ``model_bugs(transition)`` -> [text]: the model's own accounting errors;
* optionally ``independent_groups()`` -> a static partition of the threads
  into groups whose steps never touch a common object (used by ``por``);
* optionally ``canonical(state)`` -> the representative of the state's
  symmetry class (used by ``symmetry``): states equal up to renaming
  interchangeable identities are explored once.

Partial-order reduction (``por=True``): persistent sets from that partition --
at each state only the enabled steps of the first group that has one are
expanded (steps of other groups are independent of them, so every
interleaving of each group's own steps is still explored); a state whose
reduced successors close a possible cycle is expanded fully (the cycle
proviso: under breadth-first order, one that is already known at a
depth no greater than the state's own), so no step is postponed forever.

Breadth-first search (the default) returns a shortest trace to each kind of
violation; depth-first is an option; ``random_walks`` is a seeded swarm-style
sampler for spaces too large to finish.  Limits on states, depth, seconds and
memory, running out of memory (MemoryError, e.g. under ``ulimit -v``) and
Ctrl-C end the search with status "inconclusive" and what it covered --
never a false "safe".  The time limit is checked by the clock before every
state is expanded, the memory limit every ``POLL_SECONDS``.  A search that
reaches stuck states (some thread has not finished and none can move: it
waits for something nobody will do) is "inconclusive" too, unless the caller
says they are expected (``expect_stuck``).  Identical input gives identical
output.
"""
from __future__ import annotations

import gc
import random
import resource
import time
from collections import deque
from dataclasses import dataclass, field

from ..schedule import random_walk
from .fpstore import NO_PARENT, DiskQueue, FingerprintStore

#: how often (seconds) the search reads its memory use and reports progress
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Limits:
    max_states: int = 2_000_000
    max_depth: int = 10_000
    max_seconds: float = 600.0
    max_memory_mb: int = 8192


@dataclass
class Witness:
    kind: str
    text: str
    trace: list            # [(tid, label)] from the initial state, the violating step last
    depth: int


@dataclass
class Report:
    status: str = "complete"         # complete | inconclusive
    reason: str = ""
    states: int = 0
    transitions: int = 0
    seconds: float = 0.0
    depth: int = 0
    found: dict = field(default_factory=dict)      # kind -> Witness (the shortest found first)
    incidents: dict = field(default_factory=dict)  # kind -> set of incident keys
    deadlocks: list = field(default_factory=list)  # traces to stuck states (the first 5)
    stuck: int = 0                                 # how many stuck states were reached
    bugs: list = field(default_factory=list)       # (text, trace)
    #: with hash compaction (``fingerprints=True``): the probability a state was missed, else None
    omission: float | None = None
    revisits: int = 0                              # DPOR: states reached again and not walked again

    def outcomes(self, kinds) -> dict:
        return {k: len(self.incidents.get(k, ())) for k in kinds}


def _trace(parents, s, last=None):
    """The trace [(tid, label)] from the initial state to ``s`` (then the
    step ``last`` from it).  With symmetry over processes a parent link
    carries the thread renaming that took the successor to its
    representative (new_tid[old_tid]); the thread ids of the links are those
    of the representatives, so they are mapped back along the trace: sigma
    (representative's thread -> the thread of the real run) starts as the
    identity and after each link becomes sigma . renaming^-1."""
    links = []
    while True:
        p = parents[s]
        if p is None:
            break
        links.append(p)
        s = p[0]
    links.reverse()
    return _trace_of_links(links, last)


def _trace_of_links(links, last=None):
    """``_trace`` from the parent records [(parent, tid, label[, renaming])] of the path, first to last."""
    permuted = any(len(p) > 3 and p[3] is not None for p in links)
    if not permuted:
        out = [(p[1], p[2]) for p in links]
        if last is not None:
            out.append(last)
        return out
    out = []
    sigma = None
    for p in links:
        tid = p[1]
        out.append((sigma[tid] if sigma else tid, p[2]))
        if len(p) > 3 and p[3] is not None:
            tm = p[3]
            inv = [0] * len(tm)
            for old, new in enumerate(tm):
                inv[new] = old
            sigma = [(sigma[inv[j]] if sigma else inv[j]) for j in range(len(tm))]
    if last is not None:
        out.append((sigma[last[0]] if sigma else last[0], last[1]))
    return out


def _stuck(rep: Report, expect_stuck: bool) -> None:
    if rep.stuck:
        stuck = f"{rep.stuck} stuck state(s) (no thread can move)"
        if rep.status != "complete":
            rep.reason += f"; {stuck}"
        elif expect_stuck:
            rep.reason = f"{stuck}, as the case expects"
        else:
            rep.status, rep.reason = "inconclusive", f"{stuck}: a thread waits for something nobody does"


#: CPython's cyclic collector thresholds during a search (the default is (700, 10, 10)): a search allocates
#: millions of small containers that live as long as it does (states, summaries), and every collection walks
#: the young ones again; the old thresholds are put back when it ends
GC_THRESHOLD = (50_000, 20, 20)


def explore(model, limits: Limits = Limits(), order: str = "bfs", stop_on_first: bool = False,
            progress=None, por: bool = False, symmetry: bool = False, expect_stuck: bool = False,
            dpor: bool = False, fingerprints: bool = False, frontier: str = "memory") -> Report:
    """Exhaustive search (see ``_explore``) with the collector's thresholds
    raised (``GC_THRESHOLD``) while it runs."""
    old = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        return _explore(model, limits, order, stop_on_first, progress, por, symmetry, expect_stuck, dpor,
                        fingerprints, frontier)
    finally:
        gc.set_threshold(*old)


def _explore(model, limits: Limits = Limits(), order: str = "bfs", stop_on_first: bool = False,
             progress=None, por: bool = False, symmetry: bool = False, expect_stuck: bool = False,
             dpor: bool = False, fingerprints: bool = False, frontier: str = "memory") -> Report:
    """Exhaustive search.  ``order``: "bfs" (shortest witnesses) or "dfs";
    ``por``: partial-order reduction by persistent sets (see the module doc);
    ``dpor``: dynamic partial-order reduction from the model's footprints
    (``explore.dpor``: depth-first, witnesses not necessarily shortest; the
    model must have ``footprint`` and ``dependent``; overrides ``order``,
    ``por`` and ``symmetry``);
    ``symmetry``: True merges states equal up to the model's ``canonical``
    (page frames and swap slots renamed); "procs" also up to permuting
    interchangeable processes, "threads" processes and interchangeable
    threads (``canonical_perm(state[, "threads"])``: the representative and the
    thread renaming, kept in the parent links so traces name the real threads);
    ``fingerprints``: hash compaction -- the visited set keeps a 64-bit
    fingerprint of each state (and its parent's, for the trace), not the
    state; two states with one fingerprint are taken for one, so a
    "complete" search is complete only up to the omission probability it
    reports (``Report.omission``, in ``reason``: TLC's optimistic estimate);
    ``frontier``: "memory" (the default) or "disk": breadth-first only, the
    states waiting to be expanded are spooled to a temporary file in chunks
    (``fpstore.DiskQueue``, as TLC's disk queue), so with ``fingerprints``
    the search's memory is about the fingerprint store's;
    ``expect_stuck``: stuck states are the expected end (the search may then
    be "complete")."""
    if frontier not in ("memory", "disk"):
        raise ValueError(f"frontier must be 'memory' or 'disk', not {frontier!r}")
    if frontier == "disk" and (order != "bfs" or dpor):
        raise ValueError("frontier='disk' is a breadth-first queue: not with order='dfs' or dpor")
    if dpor and hasattr(model, "footprint"):
        return _explore_dpor(model, limits, stop_on_first, progress, expect_stuck)
    rep = Report()
    canon = model.canonical if symmetry and hasattr(model, "canonical") else (lambda x: x)
    # symmetry="procs": processes too (``canonical_perm``: the state and the thread renaming it applied),
    # "threads": and threads; static POR's groups are thread ids, which the renaming would mix: searched without it
    procs = symmetry in ("procs", "threads") and hasattr(model, "canonical_perm")
    if procs:
        por = False
        perm = model.canonical_perm if symmetry == "procs" else (lambda x: model.canonical_perm(x, symmetry))
        notes = model.symmetry_notes(symmetry) if hasattr(model, "symmetry_notes") else []
    groups = model.independent_groups() if por and hasattr(model, "independent_groups") else None
    if groups is not None and len(groups) < 2:
        groups = None
    t0 = time.monotonic()
    deadline = t0 + limits.max_seconds
    next_poll = t0
    s0 = canon(model.init_state())
    if procs:
        s0, tm0 = perm(model.init_state())
        if tm0 is not None:
            raise ValueError("symmetry over processes: the initial state is not its own representative")
    if fingerprints:
        # hash compaction: states numbered in flat arrays (``fpstore``); a key is a state's number
        store = parents = FingerprintStore(model.nthreads, with_depth=groups is not None)
        store.add(_fingerprint(s0), NO_PARENT, 0)
        depth_of = {}
        fcanon = perm if procs else (lambda x: (canon(x), None))

        def trace(i, last=None):
            return _trace_of_links(store.trace(model, s0, i, fcanon), last)

        def known_depth(st):            # (the cycle proviso) the depth of a stored state, or -1
            i = store.find(_fingerprint(st))
            return -1 if i < 0 else store.depth[i]
    else:
        parents = {s0: None}
        depth_of = {s0: 0}

        def trace(k, last=None):
            return _trace(parents, k, last)
    queue = [(s0, 0 if fingerprints else s0, 0)]        # (state, its key, its depth)
    if frontier == "disk":
        frontier = DiskQueue(queue)
    else:
        frontier = deque(queue)
    n = model.nthreads
    pop = frontier.popleft if order == "bfs" else frontier.pop
    try:
        while frontier:
            if len(parents) > limits.max_states:
                rep.status, rep.reason = "inconclusive", f"state limit {limits.max_states} reached"
                break
            now = time.monotonic()
            if now > deadline:
                rep.status, rep.reason = "inconclusive", f"time limit {limits.max_seconds:g}s reached"
                break
            if now >= next_poll:
                next_poll = now + POLL_SECONDS
                if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 > limits.max_memory_mb:
                    rep.status, rep.reason = "inconclusive", f"memory limit {limits.max_memory_mb} MB reached"
                    break
                if progress:
                    progress(len(parents), rep.transitions, len(frontier), rep.depth, now - t0)
            s, ks, d = pop()
            if d >= limits.max_depth:
                rep.status, rep.reason = "inconclusive", f"depth limit {limits.max_depth} reached"
                continue
            moved = False
            if procs:
                succ = []
                for tid in range(n):
                    tr = model.step(s, tid)
                    if tr is not None:
                        cs, tm = perm(tr.state)
                        succ.append((tid, tr._replace(state=cs), tm))
            else:
                succ = [(tid, tr._replace(state=canon(tr.state)) if symmetry else tr, None)
                        for tid in range(n) if (tr := model.step(s, tid)) is not None]
            if groups is not None and succ:
                for g in groups:
                    chosen = [x for x in succ if x[0] in g]
                    if chosen:
                        break
                # cycle proviso: every cycle of the reduced graph keeps a fully expanded
                # state.  A cycle needs an edge to a state of no greater depth; under
                # breadth-first order such a state is already known when the edge is
                # looked at, so expanding fully there is enough (with DFS order: any
                # state already seen)
                if fingerprints:
                    keep = not any((kd := known_depth(tr.state)) >= 0 and (kd <= d or order != "bfs")
                                   for _, tr, _ in chosen)
                else:
                    keep = not any(depth_of.get(tr.state, d + 1) <= d or (order != "bfs" and tr.state in parents)
                                   for _, tr, _ in chosen)
                if len(chosen) < len(succ) and keep:
                    succ = chosen
            for tid, tr, tm in succ:
                moved = True
                rep.transitions += 1
                for kind, key, text in model.violations(tr):
                    keys = rep.incidents.setdefault(kind, set())
                    keys.add(key if key is not None else text)
                    if kind not in rep.found:
                        rep.found[kind] = Witness(kind, text, trace(ks, (tid, tr.label)), d + 1)
                for b in model.model_bugs(tr):
                    if len(rep.bugs) < 20:
                        rep.bugs.append((b, trace(ks, (tid, tr.label))))
                ns = tr.state
                if fingerprints:
                    kn = store.add(_fingerprint(ns), ks, tid, tm, d + 1)
                    if kn < 0:
                        continue
                elif ns in parents:
                    continue
                else:
                    kn = ns
                    parents[kn] = (ks, tid, tr.label) if tm is None else (ks, tid, tr.label, tm)
                    if groups is not None:
                        depth_of[kn] = d + 1        # (only the cycle proviso asks)
                if d + 1 > rep.depth:
                    rep.depth = d + 1
                frontier.append((ns, kn, d + 1))
            if not moved and not model.is_done(s):
                rep.stuck += 1
                if len(rep.deadlocks) < 5:
                    rep.deadlocks.append(trace(ks))
            if stop_on_first and rep.found:
                rep.status, rep.reason = "inconclusive", "stopped at the first violation"
                break
    except KeyboardInterrupt:
        rep.status, rep.reason = "inconclusive", "interrupted"
    except MemoryError:
        frontier.clear()         # room to report in
        depth_of.clear()
        rep.status, rep.reason = "inconclusive", "out of memory (MemoryError)"
    finally:
        if not isinstance(frontier, deque):
            frontier.close()
    _stuck(rep, expect_stuck)
    if procs and notes:
        rep.reason = "; ".join([rep.reason] * bool(rep.reason) + notes)
    rep.states = len(parents)
    rep.seconds = time.monotonic() - t0
    if fingerprints:
        rep.omission = omission_probability(rep.states, rep.transitions)
        note = (f"hash compaction (64-bit fingerprints): probability that a state was missed "
                f"{rep.omission:.1e} (TLC's optimistic estimate)")
        rep.reason = f"{rep.reason}; {note}" if rep.reason else note
    return rep


#: fingerprints are 64 bits
FP_BITS = 64
_FP_MASK = (1 << FP_BITS) - 1


def _fingerprint(s) -> int:
    """A 64-bit fingerprint of a state (Python's hash of the tuple tree, which
    is 64 bits on a 64-bit build: xxHash's mixing over the fields' hashes)."""
    return hash(s) & _FP_MASK


def omission_probability(states: int, transitions: int) -> float:
    """TLC's optimistic estimate of the probability that hash compaction made
    the search skip a state: each of the ``transitions - states`` successors
    found already visited could have collided with one of ``states``
    fingerprints, ``states * (transitions - states) / 2**64``.  (Holzmann's
    and TLC's model: fingerprints as independent uniform 64-bit values.)"""
    return min(1.0, states * max(transitions - states, 0) / 2.0 ** FP_BITS)


def _explore_dpor(model, limits, stop_on_first, progress, expect_stuck) -> Report:
    from .dpor import CycleFound, explore_dpor
    rep = Report()
    t0 = time.monotonic()
    try:
        explore_dpor(model, limits, rep, stop_on_first, progress, POLL_SECONDS)
    except CycleFound as e:
        r = explore(model, limits, stop_on_first=stop_on_first, progress=progress, expect_stuck=expect_stuck)
        r.reason = (r.reason + "; " if r.reason else "") + f"explored without DPOR ({e})"
        return r
    except KeyboardInterrupt:
        rep.status, rep.reason = "inconclusive", "interrupted"
    except MemoryError:
        rep.status, rep.reason = "inconclusive", "out of memory (MemoryError)"
    _stuck(rep, expect_stuck)
    rep.seconds = time.monotonic() - t0
    return rep


def random_walks(model, walks: int, seed: int, max_depth: int = 2000, limits: Limits = Limits()) -> Report:
    """Seeded random walks from the initial state (swarm-style sampling).
    A walk that finds a violation gives a real (not necessarily shortest)
    witness; no number of walks proves absence: status is "inconclusive"."""
    rep = Report(status="inconclusive", reason=f"random walks ({walks}, seed {seed}) cannot prove absence")
    rng = random.Random(seed)
    t0 = time.monotonic()
    deadline = t0 + limits.max_seconds
    seen = set()
    try:
        for w in range(walks):
            if time.monotonic() > deadline:
                rep.reason += f"; time limit after {w} walks"
                break
            walk = random_walk(model, rng, max_depth)
            trace = []
            for tr in walk:
                seen.add(walk.before)
                rep.transitions += 1
                trace.append((tr.tid, tr.label))
                for kind, key, text in model.violations(tr):
                    rep.incidents.setdefault(kind, set()).add(key if key is not None else text)
                    if kind not in rep.found or len(trace) < rep.found[kind].depth:
                        rep.found[kind] = Witness(kind, text, list(trace), len(trace))
                for b in model.model_bugs(tr):
                    if len(rep.bugs) < 20:
                        rep.bugs.append((b, list(trace)))
                rep.depth = max(rep.depth, walk.steps)
                if time.monotonic() > deadline:
                    break
            if walk.end in ("done", "stuck"):
                seen.add(walk.state)
            elif walk.end is None:           # the clock stopped the walk
                rep.reason += f"; time limit after {w} walks"
                break
    except KeyboardInterrupt:
        rep.reason += "; interrupted"
    except MemoryError:
        rep.reason += "; out of memory (MemoryError)"
    rep.states = len(seen)
    rep.seconds = time.monotonic() - t0
    return rep


def replay(model, trace):
    """Re-run a trace [(tid, label)] step by step; yields each transition.
    Raises ValueError when a step is not enabled or its label differs."""
    s = model.init_state()
    for i, (tid, label) in enumerate(trace):
        tr = model.step(s, tid)
        if tr is None:
            raise ValueError(f"step {i}: thread {tid} cannot move here")
        if label is not None and tr.label != label:
            raise ValueError(f"step {i}: thread {tid} runs {tr.label}, the trace says {label}")
        yield tr
        s = tr.state
