"""What the symmetry tests (processes, threads) share: the reachable states,
the states a reduced search keeps, and the check that the two agree up to the
reduction's permutations."""
from __future__ import annotations

from collections import deque

from cowlab.model import canonical


def reachable(m, limit=None):
    """The reachable states of model ``m`` (breadth-first; the first ``limit`` of them)."""
    s0 = m.init_state()
    seen = {s0}
    todo = deque([s0])
    while todo and (limit is None or len(seen) < limit):
        s = todo.popleft()
        for t in range(m.nthreads):
            tr = m.step(s, t)
            if tr is not None and tr.state not in seen:
                seen.add(tr.state)
                todo.append(tr.state)
    return seen


def reduced(m, *mode):
    """The representatives a search by ``m.canonical_perm(state, *mode)`` keeps
    (the initial state must be its own)."""
    s0, tm = m.canonical_perm(m.init_state(), *mode)
    assert tm is None
    seen = {s0}
    todo = deque([s0])
    while todo:
        s = todo.popleft()
        for t in range(m.nthreads):
            tr = m.step(s, t)
            if tr is not None:
                c, _ = m.canonical_perm(tr.state, *mode)
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
    return seen


def assert_reduced_is_plain_up_to_permutation(m, orbit, *mode):
    """Every state the reduced search keeps is a reachable state permuted
    (``orbit(m, s)``: its representatives; nothing made up), every reachable
    state has a permutation the reduced search keeps (nothing lost), and it
    keeps fewer states than pages symmetry alone."""
    plain = reachable(m)
    orbits = [orbit(m, s) for s in plain]
    allowed = set().union(*orbits)
    red = reduced(m, *mode)
    assert red <= allowed
    assert all(o & red for o in orbits)
    assert len(red) < len({canonical(s) for s in plain})
