"""Dynamic partial-order reduction: source sets and sleep sets (Abdulla,
Aronis, Jonsson, Sagonas, "Optimal dynamic partial order reduction", POPL
2014, Algorithm 1 "source-DPOR"), over the footprints the model gives each
step.

The explorer still knows nothing about memory: it asks the model for
``footprint(state, tid)`` -> (transition or None, footprint) and for
``dependent(fp1, fp2)``; footprints are opaque.  Two events of one thread are
always dependent (program order).

The search is a depth-first walk over executions (stateless: a state reached
by two inequivalent executions is walked from twice).  At each state, for the
thread about to run and for every thread that is blocked, the explorer finds
the earlier events its next step races with (dependent, of another thread, not
ordered through a third event) and adds, to the backtrack set of the state
before that event, a thread that starts an execution reversing the race (an
initial of ``notdep(e, E).p``) unless one is there already.  Sleep sets skip
threads whose step was already explored from an equivalent execution.  A
blocked thread's "next step" is what it read before it blocked (a lock, an
event), so the step that wakes it is dependent on it and the race with the
step that blocked it is reversed.

A state already walked is not walked again when the sleep set it was walked
with is no larger (a state cache): the
steps taken below it (its summary) stand for the executions that continue
from it, and their races with the current execution are reversed.  A state
walked again with fewer threads asleep keeps the steps of every walk in its
summary (the executions the first walk covered are still among those it
stands for).  Each step
of a summary carries its past -- the steps below the cached state before it
in happens-before order (program order or dependent, transitively) -- and the
threads that ran before it there: an event of the execution that happens
before a step of the past happens before the step, so it is no race (with two
pasts for one step, their common part is kept: fewer orderings, more races,
never fewer).  A race of a step taken at the cached state itself is reversed
as one on the execution; for a step deeper below, every enabled thread that
may start the reversal is added (the initials of the execution's events after
the racing one, the threads that ran before the step below the cached state,
the step's own thread).  Adding the step's thread alone where it is enabled
(Flanagan and Godefroid's rule, sound for persistent sets without a cache) is
not enough here: a step below the cached state before it may have to come
first, and that thread may be asleep.  Random toy programs
(``tests/explore/test_dpor.py``) lost final states that way.

Soundness needs an acyclic state graph (every execution finite): the walk
checks every path it takes -- a state that repeats on the current path raises
``CycleFound`` and ``explore`` redoes the search without DPOR, saying so.

Every maximal execution of the model is equivalent (up to swapping
independent adjacent steps) to one this search walks, so it finds every kind of
violation plain search finds and every stuck state.  It does not keep BFS's
shortest witnesses: a witness here is a real trace, the first found in
depth-first order, not necessarily a shortest one.  The model's own invariant
checks run on the states walked (fewer than plain search visits).

``Report.states`` counts the distinct states walked, ``transitions`` the
steps taken (a state reached twice is walked twice).
"""
from __future__ import annotations

import resource
import sys
import time


_NONE = frozenset()


class CycleFound(Exception):
    """A state repeated on the current path: the state graph has a cycle."""


def explore_dpor(model, limits, rep, stop_on_first=False, progress=None, poll=0.1):
    """Fill ``rep`` (an explore.Report) by source-DPOR with sleep sets."""
    from . import Witness
    n = model.nthreads
    fpf = model.footprint
    dep = model.dependent
    t0 = time.monotonic()
    deadline = t0 + limits.max_seconds
    poll_at = [t0]
    seen = set()
    onpath = set()
    # the current execution E: per event its thread, footprint, label and happens-before
    # predecessors (a bitmask over event positions, itself included)
    ev_tid, ev_fp, ev_hb, path = [], [], [], []
    backtrack = []          # backtrack set of the state before each event (and the current one)
    enabled_at = []         # the threads enabled there
    #: state -> [the sleep set it was explored with (thread ids), its summary]
    cache = {}
    interned = {}
    #: one object per distinct (past, ran) of the summaries (states share most of them)
    values = {}


    class Stop(Exception):
        pass

    last_of = [[] for _ in range(n)]          # per thread, the positions of its events in E

    def preds(tid, fp, extra=0):
        """The events of E the step (tid, fp) races with -- dependent, of another
        thread, not ordered before it through a later dependent event or its own
        thread's last event -- and its happens-before mask.  Walked from the
        latest event down: an event already in the mask is covered (its own mask
        is in it too), so it is neither a race nor needs comparing.  ``extra``:
        events known to be before the step already (``summary_races``)."""
        d = []
        mine = last_of[tid]
        mask = ev_hb[mine[-1]] if mine else 0      # program order: its mask has the thread's earlier events
        mask |= extra
        for i in range(len(ev_tid) - 1, -1, -1):
            if (mask >> i) & 1:
                continue
            if dep(ev_fp[i], fp):
                d.append(i)
                mask |= ev_hb[i]
        return d, mask

    def races(tid, fp):
        """Add backtrack points reversing the races of the step (tid, fp) with E."""
        d, hbnext = preds(tid, fp)
        for i in d:
            reverse(i, tid, hbnext)
        return hbnext

    def reverse(i, tid, hbnext):
        """Source-DPOR's rule for a race of e_i with the step of ``tid`` (its
        happens-before mask ``hbnext``) right after E: unless the backtrack set
        before e_i has an initial of notdep(e_i, E).tid already, add one."""
        init = initials(i, tid, hbnext)
        bt = backtrack[i]
        if init and not bt.intersection(init):
            bt.add(tid if tid in init else init[0])

    def initials(i, tid, hbnext):
        """The threads that can start notdep(e_i, E).tid: the events after i not
        after e_i, then the step (its happens-before mask ``hbnext``)."""
        bit = 1 << i
        umask, init = 0, []
        seen_t = set()
        for j in range(i + 1, len(ev_tid)):
            if ev_hb[j] & bit:
                continue
            if ev_tid[j] not in seen_t and not (ev_hb[j] & umask):
                init.append(ev_tid[j])
            seen_t.add(ev_tid[j])
            umask |= 1 << j
        if tid not in seen_t and not (hbnext & umask):
            init.append(tid)
        return init

    def summary_races(tid, fp, past, ran, masks):
        """The races with E of a step (tid, fp) taken below a state already explored:
        the events between (w) are not on E, but the summary keeps, per step,
        ``past``: the steps of w before it in happens-before order (program order
        or dependent, transitively; an under-approximation), and ``ran``: the
        threads of every step of w before it.  An event of E ordered before a step
        of ``past`` (or before the last E event of one of their threads) is before
        this step: not a race.  For a race with e_i, the reversal is
        notdep(e_i, E), then the steps of w before this one, then this one.  A
        step taken at the cached state itself (``ran`` empty) has no steps of w
        before it: its race is reversed as one on E (``reverse``).  Else add every
        enabled thread that may start the reversal: the initials of the events of
        E after e_i, ``ran`` and ``tid`` -- not ``tid`` alone where it is enabled
        (Flanagan and Godefroid's rule for persistent sets): a step of w before
        this one may have to come first, and with sleep sets that rule missed
        final states (``tests/explore/test_dpor.py``)."""
        extra = 0
        for st in past:                           # e_i -> a step of w before this one -> this one
            m = masks.get(id(st))
            if m is None:
                m = masks[id(st)] = preds(st[0], st[1])[1]
            extra |= m
        d, mask = preds(tid, fp, extra)
        for i in d:
            if not ran:
                reverse(i, tid, mask)
                continue
            bt = backtrack[i]
            en = enabled_at[i]
            cand = set(initials(i, tid, mask)) | ran
            cand.add(tid)
            cand.intersection_update(en)
            bt.update(cand or en)

    def extend(summ, below, p, fp):
        """Put into ``summ`` (``put``) the summary ``below`` of the state
        after the step (p, fp): each step's past gains (p, fp) when (p, fp)
        happens before it (program order, dependent on it or on a step of its
        past), its ``ran`` gains p."""
        first = ((p, fp),)
        pset = frozenset((p,))
        before = {}                  # id(step of a past) -> whether (p, fp) is before it
        for key, (past, ran) in below.items():
            if key[0] == p or dep(fp, key[1]):
                past = past.union(first)
            else:
                for st in past:
                    b = before.get(id(st))
                    if b is None:
                        b = before[id(st)] = st[0] == p or dep(fp, st[1])
                    if b:
                        past = past.union(first)
                        break
            put(summ, key, past, ran if p in ran else ran | pset)

    def put(summ, key, past, ran):
        """Record the step ``key`` in a summary; a step already there keeps the
        common part of the two pasts (fewer orderings: more races, never fewer)."""
        old = summ.get(key)
        if old is None:
            v = (past, ran)
        elif old[0] is not past or old[1] is not ran:
            op, orr = old
            v = (op if op <= past else op & past, orr if ran <= orr else orr | ran)
        else:
            return
        summ[key] = values.setdefault(v, v)

    def visit(s, sleep, depth):
        """Walk from ``s``; returns the steps (tid, footprint) taken or tried
        below it (its summary)."""
        hit = cache.get(s)
        if hit is not None:
            if hit[0] <= sleep.keys():
                # explored before with no more asleep: what was explored from s then covers
                # every continuation now; reverse the races of its steps with the current path
                rep.revisits += 1
                masks = {}
                for (t, f), (past, ran) in hit[1].items():
                    summary_races(t, f, past, ran, masks)
                return hit[1]
            hit[0] &= sleep.keys()       # explore again, and remember the smaller sleep set
        if len(seen) > limits.max_states:
            rep.status, rep.reason = "inconclusive", f"state limit {limits.max_states} reached"
            raise Stop
        now = time.monotonic()
        if now > deadline:
            rep.status, rep.reason = "inconclusive", f"time limit {limits.max_seconds:g}s reached"
            raise Stop
        if now >= poll_at[0]:
            poll_at[0] = now + poll
            if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 > limits.max_memory_mb:
                rep.status, rep.reason = "inconclusive", f"memory limit {limits.max_memory_mb} MB reached"
                raise Stop
            if progress:
                progress(len(seen), rep.transitions, 0, rep.depth, now - t0)
        seen.add(s)
        # walked again with fewer threads asleep: the executions walked before (those starting with a
        # thread asleep now but not then) are still among those the state stands for, so their steps
        # stay in its summary
        summ = {} if hit is None else dict(hit[1])
        nxt = [fpf(s, t) for t in range(n)]
        for t in range(n):                   # one object per distinct footprint: summaries compare them by identity
            f = nxt[t][1]
            g = interned.setdefault(f, f)
            if g is not f:
                nxt[t] = (nxt[t][0], g)
        enabled = [t for t in range(n) if nxt[t][0] is not None]
        for t in range(n):
            if nxt[t][0] is None and not model.thread_done(s, t):
                races(t, nxt[t][1])          # a blocked thread: reverse what blocked it
                put(summ, (t, nxt[t][1]), _NONE, _NONE)
        if hit is None:
            cache[s] = [set(sleep), summ]
        else:
            hit[1] = summ
        if not enabled:
            if not model.is_done(s):
                rep.stuck += 1
                if len(rep.deadlocks) < 5:
                    rep.deadlocks.append(list(path))
            return summ
        if depth >= limits.max_depth:
            rep.status, rep.reason = "inconclusive", f"depth limit {limits.max_depth} reached"
            return summ
        awake = [t for t in enabled if t not in sleep]
        if not awake:
            return summ                      # sleep-set blocked: everything here was explored before
        bt = {awake[0]}
        backtrack.append(bt)
        enabled_at.append(enabled)
        done = []
        sleep = dict(sleep)
        onpath.add(s)
        try:
            while True:
                todo = [t for t in sorted(bt) if t not in sleep and t not in done and nxt[t][0] is not None]
                if not todo:
                    break
                p = todo[0]
                tr, fp = nxt[p]
                hb = races(p, fp)
                done.append(p)
                put(summ, (p, fp), _NONE, _NONE)
                rep.transitions += 1
                step = (p, tr.label)
                for kind, key, text in model.violations(tr):
                    rep.incidents.setdefault(kind, set()).add(key if key is not None else text)
                    if kind not in rep.found:
                        rep.found[kind] = Witness(kind, text, path + [step], depth + 1)
                for b in model.model_bugs(tr):
                    if len(rep.bugs) < 20:
                        rep.bugs.append((b, path + [step]))
                if stop_on_first and rep.found:
                    rep.status, rep.reason = "inconclusive", "stopped at the first violation"
                    raise Stop
                ns = tr.state
                if ns in onpath:
                    raise CycleFound(f"a cycle through the state after {path + [step]}")
                if depth + 1 > rep.depth:
                    rep.depth = depth + 1
                child_sleep = {q: f for q, f in sleep.items() if not dep(f, fp)}
                last_of[p].append(len(ev_tid))
                ev_tid.append(p)
                ev_fp.append(fp)
                ev_hb.append(hb | (1 << len(ev_hb)))
                path.append(step)
                try:
                    below = visit(ns, child_sleep, depth + 1)
                    extend(summ, below, p, fp)
                finally:
                    last_of[p].pop()
                    ev_tid.pop()
                    ev_fp.pop()
                    ev_hb.pop()
                    path.pop()
                sleep[p] = fp
        finally:
            onpath.discard(s)
            backtrack.pop()
            enabled_at.pop()
        return summ

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 3 * min(limits.max_depth, 20000) + 200))
    try:
        visit(model.init_state(), {}, 0)
    except Stop:
        pass
    except RecursionError:
        rep.status, rep.reason = "inconclusive", "path too deep for the depth-first walk"
    finally:
        sys.setrecursionlimit(old)
    rep.states = len(seen)
    return rep
