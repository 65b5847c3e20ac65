"""Symmetry over interchangeable threads of one process
(``explore(symmetry="threads")``, ``cowlab explore --symmetry=threads``):
threads of one mm, each on a CPU of its own, running the same operations up
to their own names are permuted into a canonical order (with processes and
pages).  The expected outcomes here are the plain search's (no reduction):
a reduction must not change them."""
from __future__ import annotations

import itertools
import os
import sys
from collections import deque

import pytest

from cowlab import designs
from cowlab.explore import Limits, explore, replay
from cowlab.model import CowModel, canonical, canonical_threads, permute_threads, thread_groups
from cowlab.scenario import Script

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from benchmarks.explore import threads_case  # noqa: E402
from tools.explore_equality import symmetric_threads_case, verdicts_of  # noqa: E402


def _reachable(m):
    s0 = m.init_state()
    seen = {s0}
    todo = deque([s0])
    while todo:
        s = todo.popleft()
        for t in range(m.nthreads):
            tr = m.step(s, t)
            if tr is not None and tr.state not in seen:
                seen.add(tr.state)
                todo.append(tr.state)
    return seen


def _reduced(m):
    s0, tm = m.canonical_perm(m.init_state(), "threads")
    assert tm is None
    seen = {s0}
    todo = deque([s0])
    while todo:
        s = todo.popleft()
        for t in range(m.nthreads):
            tr = m.step(s, t)
            if tr is not None:
                c, _ = m.canonical_perm(tr.state, "threads")
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
    return seen


def _perm_maps(g, order):
    """permute_threads' maps for "slot j takes thread order[j]" in group g."""
    tm, sm, cm, pcd = {}, {}, {}, {}
    for j, k in enumerate(order):
        tm[g.tids[k]] = g.tids[j]
        pcd[g.tids[k]] = g.offs[j] - g.offs[k]
        cm[g.cpus[k]] = g.cpus[j]
        sm.update(zip(g.own[k], g.own[j]))
    return tm, sm, cm, pcd


def _orbit(m, s):
    """Every representative (pages renamed) of ``s`` under the thread permutations the model allows there."""
    out = {canonical(s)}
    for g in m.thread_groups:
        if any(s.threads[t].pc < o for t, o in zip(g.tids, g.offs)):
            continue
        if not s.mms[g.mm].alive and len(set(g.offs)) > 1:
            continue
        for order in itertools.permutations(range(len(g.tids))):
            out.add(canonical(permute_threads(s, *_perm_maps(g, order))))
    return out


def _cases():
    return [("threads_case(2, reclaim)", threads_case(2, reclaim=True)), ("threads_case(3)", threads_case(3))] + [
        (f"symmetric_threads_case({seed})", symmetric_threads_case(seed)) for seed in (0, 2, 3, 6, 9)]


@pytest.mark.parametrize("name,case", _cases(), ids=[n for n, _ in _cases()])
def test_reduced_states_are_the_plain_states_up_to_permutation(name, case):
    """Every state the reduced search keeps is a reachable state with
    threads permuted (nothing made up), and every reachable state has a
    permutation the reduced search keeps (nothing lost)."""
    m = CowModel(case, designs.load("linux-5.9"))
    assert len(m.thread_groups) == 1 and not m.proc_groups
    plain = _reachable(m)
    orbits = [_orbit(m, s) for s in plain]
    allowed = set().union(*orbits)
    red = _reduced(m)
    assert red <= allowed
    assert all(o & red for o in orbits)
    pages = len({canonical(s) for s in plain})
    # (lru_add batches on the set-up thread's CPU may tell the threads apart in every state: then no gain)
    assert len(red) < pages if name.startswith("threads_case") else len(red) <= pages


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("design", ["linux-5.7", "linux-5.9", "linux-6.18"])
def test_same_verdicts_as_plain_search(seed, design):
    case = symmetric_threads_case(seed)
    res = {}
    for mode in (False, "threads"):
        m = CowModel(case, designs.load(design))
        res[mode] = verdicts_of(m, explore(m, Limits(max_states=200_000), symmetry=mode,
                                           expect_stuck=case.expect_stuck))
    assert res["threads"]["replays"]
    assert res["threads"] == res[False]


def test_witnesses_through_permuted_states_replay():
    """threads_case(2, reclaim) finds a wrong and an unnecessary COW; the
    witnesses, found through states with the main thread and the second
    swapped (pc offset 4: the main thread's set-up), name the real threads:
    they replay to their verdicts."""
    m = CowModel(threads_case(2, reclaim=True), designs.load("linux-5.9"))
    assert m.thread_groups[0].offs == (4, 0)
    plain = explore(m)
    red = explore(m, symmetry="threads")
    assert red.status == plain.status == "complete"
    assert set(red.found) == set(plain.found) and red.found
    assert red.states < explore(m, symmetry="procs").states
    for k, w in red.found.items():
        assert any(e.kind == k for e in list(replay(m, w.trace))[-1].events)


def test_swapping_twice_gives_the_state_back():
    """permute_threads renames every field consistently: a swap of the two
    threads applied twice is the identity on every reachable state where it
    applies, and it changes some (pins, gup-fast references, the page-table
    lock, lru_add batches and events follow the thread)."""
    m = CowModel(threads_case(2, reclaim=True), designs.load("linux-5.9"))
    g = m.thread_groups[0]
    fwd, back = _perm_maps(g, (1, 0)), _perm_maps(g, (1, 0))
    moved = 0
    seen_fields = set()
    for s in _reachable(m):
        if any(s.threads[t].pc < o for t, o in zip(g.tids, g.offs)):
            continue
        once = permute_threads(s, *fwd)
        assert permute_threads(once, *back) == s
        moved += once != s
        if once.threads[0] != s.threads[0]:
            assert once.threads[0].pc - 4 == s.threads[1].pc and once.threads[0].stack == s.threads[1].stack or any(
                fr is not None and type(fr).__name__ == "GupFrame" for _, fr in s.threads[1].stack)
        for r in s.refs:
            if r.owner in ("p:q1.0", "t1", "cpu1"):
                seen_fields.add(r.kind)
                assert r._replace(owner={"p:q1.0": "p:q0.0", "t1": "t0", "cpu1": "cpu0"}[r.owner]) in once.refs
        if s.mms[0].ptl in (0, 1):
            seen_fields.add("ptl")
            assert once.mms[0].ptl == 1 - s.mms[0].ptl
        if "p3.p.cpu1" in s.signals:
            seen_fields.add("signal")
            assert "p3.p" in once.signals
    assert moved
    assert {"gup_test", "ptl", "signal"} <= seen_fields


def test_canonical_threads_waits_for_the_offset():
    """The main thread's set-up operations come before its part of the
    parallel block: until it has passed them nothing is permuted."""
    m = CowModel(threads_case(3), designs.load("linux-5.9"))
    g = m.thread_groups[0]
    assert g.tids == (0, 1, 2) and g.offs == (4, 0, 0)
    s = m.init_state()
    assert canonical_threads(m.thread_groups, s) == (s, None)


def _shared_cpu_case():
    """A child whose main thread and a further thread run the same: the main
    thread runs on its parent's CPU (cpu_of: fork leaves it there)."""
    s = Script("shared-cpu", pages=1)
    p = s.process("p")
    c = s.process("c")
    p.mmap(0)
    p.write(0)
    p.fork(c)
    s.cpu("c", "c.t1")
    s.parallel({"c": [("pin_longterm", {"addr": 0, "pin": "a"})], "c.t1": [("pin_longterm", {"addr": 0, "pin": "b"})],
                "p": [("write", {"addr": 0})]})
    return s.build()


def test_refused_when_threads_share_a_cpu_or_fork():
    """Threads that run alike but share a CPU (whose lru_add batch could not
    follow one of them) or fork (the children would have to be permuted with
    them) are not permuted; the search says why."""
    case = _shared_cpu_case()
    m = CowModel(case, designs.load("linux-5.9"))
    assert m.cpu_of[[t.name for t in case.threads].index("c")] == m.cpu_of[0]
    assert m.thread_groups == ()
    assert m.thread_refusals and "CPU 0" in m.thread_refusals[0]
    r = explore(m, symmetry="threads")
    assert "not permuted" in r.reason
    assert r.states == explore(m, symmetry="procs").states

    s = Script("forking-threads", pages=1)
    p = s.process("p")
    c1, c2 = s.process("c1"), s.process("c2")
    p.mmap(0)
    p.write(0)
    s.cpu("p", "p.a")
    s.cpu("p", "p.b")
    s.parallel({"p.a": [("fork", {"child": "c1"})], "p.b": [("fork", {"child": "c2"})],
                "c1": [("write", {"addr": 0})], "c2": [("write", {"addr": 0})]})
    case = s.build()
    m = CowModel(case, designs.load("linux-5.9"))
    groups, _ = thread_groups(case, m.tmm, m.cpu_of)
    assert groups == () and c1 and c2       # (a fork names its child's mm: the two forks differ)


def test_cli_symmetry_threads():
    import json
    from click.testing import CliRunner
    from cowlab.cli import main
    r0 = CliRunner().invoke(main, ["explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--format", "json"])
    r1 = CliRunner().invoke(main, ["explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--format", "json",
                                   "--symmetry=threads"])
    a, b = json.loads(r0.output), json.loads(r1.output)
    assert a.get("kind") == b.get("kind") and a.get("kind")


@pytest.mark.parametrize("cid", ["race-fork-gup-fast", "race-reclaim-pin", "race-gup-fast-exclusive"])
def test_catalog_has_no_interchangeable_threads(cid):
    """No catalog case runs interchangeable threads (each thread of a race
    does something else), so there --symmetry=threads is --symmetry=procs:
    the same states, verdicts and witnesses."""
    from cowlab import catalog
    case = catalog.get(cid)
    m = CowModel(case, designs.load("linux-5.9"))
    assert m.thread_groups == () and m.thread_refusals == ()
    a = explore(m, symmetry="procs", expect_stuck=case.expect_stuck)
    b = explore(m, symmetry="threads", expect_stuck=case.expect_stuck)
    assert (a.states, a.transitions, a.status, a.reason) == (b.states, b.transitions, b.status, b.reason)
    assert {k: w.trace for k, w in a.found.items()} == {k: w.trace for k, w in b.found.items()}


def test_no_thread_in_the_whole_catalog_runs_like_another():
    from cowlab import catalog
    d = designs.load("linux-5.9")
    assert all(CowModel(c, d).thread_groups == () for c in catalog.all_cases())


def test_a_frame_naming_a_freed_page_is_renamed_in_range():
    """Random scenario 0 under linux-5.19: a gup-fast thread's lockless pte
    snapshot names a page freed since; canonical() numbers it with the rest
    (symmetry crashed here with an IndexError in gup_fast_grab).  The search
    completes, finds what plain search finds (tools/explore_equality.py
    modes --mode threads compares them) and its witnesses replay."""
    case = symmetric_threads_case(0)
    m = CowModel(case, designs.load("linux-5.19"))
    r = explore(m, Limits(max_states=300_000), symmetry="threads")
    v = verdicts_of(m, r)
    assert v["status"] == "complete" and v["replays"] and not v["bugs"]
