"""Swarm verification (Holzmann, Joshi, Groce, "Swarm verification
techniques", IEEE TSE 2011): many diversified depth-first searches, each with
its own seed (the order it tries the threads in, reshuffled at every state)
and its own depth bound, instead of one search that cannot finish.  Each
member is small and independent, so members run as separate tasks
(``cowlab.cluster``); together they cover different parts of the state space.

A member that finishes without cutting any path at its depth bound or its
state budget has searched the whole space: then (and only then) its status is
"complete".  Otherwise it is "inconclusive": a violation it finds is real (the
trace replays), an absence proves nothing.
"""
from __future__ import annotations

import random
import time

from . import Report, Witness


def randomized_dfs(model, seed: int, max_depth: int = 200, max_states: int = 50_000,
                   max_seconds: float = 60.0) -> Report:
    """One swarm member: a depth-first search with a visited set, the order
    of the enabled threads shuffled at every state by ``random.Random(seed)``,
    paths cut at ``max_depth``, at most ``max_states`` states."""
    rng = random.Random(seed)
    rep = Report()
    t0 = time.monotonic()
    deadline = t0 + max_seconds
    seen = {}
    s0 = model.init_state()
    seen[s0] = 0
    stack = [(s0, 0, [])]
    cut = ""
    n = model.nthreads
    try:
        while stack:
            if len(seen) > max_states:
                cut = f"state budget {max_states} reached"
                break
            if time.monotonic() > deadline:
                cut = f"time limit {max_seconds:g}s reached"
                break
            s, d, path = stack.pop()
            succ = [tr for tid in range(n) if (tr := model.step(s, tid)) is not None]
            if not succ:
                if not model.is_done(s):
                    rep.stuck += 1
                    if len(rep.deadlocks) < 5:
                        rep.deadlocks.append(path)
                continue
            if d >= max_depth:
                cut = cut or f"paths cut at depth {max_depth}"
                continue
            rng.shuffle(succ)
            for tr in succ:
                rep.transitions += 1
                step = path + [(tr.tid, tr.label)]
                for kind, key, text in model.violations(tr):
                    rep.incidents.setdefault(kind, set()).add(key if key is not None else text)
                    if kind not in rep.found or d + 1 < rep.found[kind].depth:
                        rep.found[kind] = Witness(kind, text, step, d + 1)
                for b in model.model_bugs(tr):
                    if len(rep.bugs) < 20:
                        rep.bugs.append((b, step))
                ns = tr.state
                # a state seen before at a greater depth is searched again (its cut may now fit)
                if seen.get(ns, max_depth + 1) > d + 1:
                    seen[ns] = d + 1
                    rep.depth = max(rep.depth, d + 1)
                    stack.append((ns, d + 1, step))
    except KeyboardInterrupt:
        cut = "interrupted"
    rep.states = len(seen)
    rep.seconds = time.monotonic() - t0
    if cut or rep.stuck:
        rep.status = "inconclusive"
        rep.reason = "; ".join(x for x in (f"swarm member (seed {seed}, depth {max_depth})", cut,
                                           f"{rep.stuck} stuck state(s)" if rep.stuck else "") if x)
    return rep
