"""Symmetry over interchangeable threads of one process
(``explore(symmetry="threads")``, ``cowlab explore --symmetry=threads``):
threads of one mm, each on a CPU of its own, running the same whole list of
operations up to their own names, are permuted into a canonical order (with
processes and pages).  The expected outcomes here are the plain search's (no
reduction) and the model's own steps (a permutation of the group must map
every step of the model to a step of the model): a reduction must not change
them."""
from __future__ import annotations

import itertools
import os
import sys

import pytest

from cowlab import designs
from cowlab.explore import Limits, explore, replay
from cowlab.model import CowModel, canonical, permute_threads, thread_groups
from cowlab.scenario import Script

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from benchmarks.explore import threads_case  # noqa: E402
from tools.explore_equality import symmetric_threads_case, verdicts_of  # noqa: E402

from ._symmetry import assert_reduced_is_plain_up_to_permutation, reachable  # noqa: E402


def _perm_maps(g, order):
    """permute_threads' maps for "slot j takes thread order[j]" in group g."""
    tm, sm, cm = {}, {}, {}
    for j, k in enumerate(order):
        tm[g.tids[k]] = g.tids[j]
        cm[g.cpus[k]] = g.cpus[j]
        sm.update(zip(g.own[k], g.own[j]))
    return tm, sm, cm


def _orbit(m, s):
    """Every representative (pages renamed) of ``s`` under the thread permutations of the model's groups.
    (``canonical`` numbers pages in the order of the references, which are sorted by owner: it is no normal
    form, so the state is permuted both before and after renaming its pages, as ``canonical_perm`` does.)"""
    c = canonical(s)
    out = {c}
    for g in m.thread_groups:
        for order in itertools.permutations(range(len(g.tids))):
            maps = _perm_maps(g, order)
            out.add(canonical(permute_threads(s, *maps)))
            out.add(canonical(permute_threads(c, *maps)))
    return out


def _cases():
    return [("threads_case(3)", threads_case(3))] + [
        (f"symmetric_threads_case({seed})", symmetric_threads_case(seed)) for seed in (2, 3, 6, 9)]


def _events(tr):
    return sorted((e.kind, e.what) for e in tr.events)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("design", ["linux-5.7", "linux-6.18", "rfc-mapcount"])
def test_a_permutation_of_the_group_maps_every_step_to_a_step(seed, design):
    """What makes the reduction sound, checked directly on random scenarios
    nobody wrote for it: for every reachable state s, every thread t and every
    permutation pi of a group, t's step from s and pi(t)'s step from pi(s)
    both exist or neither, they reach states equal up to pi (and page
    renaming), with the same verdict events and model bugs; and pi keeps
    "done" and "finished".  (Three threads for every fourth seed; the first
    2,000 states breadth-first.)"""
    case = symmetric_threads_case(seed, threads=3 if seed % 4 == 3 else 2)
    m = CowModel(case, designs.load(design))
    assert m.thread_groups
    perms = []
    for g in m.thread_groups:
        for order in itertools.permutations(range(len(g.tids))):
            if list(order) != sorted(order):
                perms.append(_perm_maps(g, order))
    for s in reachable(m, limit=2_000):
        for tm, sm, cm in perms:
            ps = permute_threads(s, tm, sm, cm)
            assert m.is_done(ps) == m.is_done(s)
            for t in range(m.nthreads):
                pt = tm.get(t, t)
                assert m.thread_done(ps, pt) == m.thread_done(s, t)
                a, b = m.step(s, t), m.step(ps, pt)
                assert (a is None) == (b is None), (t, s)
                if a is None:
                    continue
                assert a.label == b.label
                assert canonical(permute_threads(a.state, tm, sm, cm)) == canonical(b.state), (t, a.label)
                assert _events(a) == _events(b) and len(a.bugs) == len(b.bugs)


@pytest.mark.parametrize("name,case", _cases(), ids=[n for n, _ in _cases()])
def test_reduced_states_are_the_plain_states_up_to_permutation(name, case):
    """Every state the reduced search keeps is a reachable state with
    threads permuted (nothing made up), and every reachable state has a
    permutation the reduced search keeps (nothing lost)."""
    m = CowModel(case, designs.load("linux-5.9"))
    assert len(m.thread_groups) == 1 and not m.proc_groups
    assert_reduced_is_plain_up_to_permutation(m, _orbit, "threads")


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("design", ["linux-5.7", "linux-5.9", "linux-6.18"])
def test_same_verdicts_as_plain_search(seed, design):
    """The same verdict kinds, model bugs, stuck states and status as plain
    search; where plain search stops at the state limit and the reduced one
    does not, the reduced one finds at least what it found (where both stop,
    only the witnesses' replays are compared)."""
    case = symmetric_threads_case(seed)
    res = {}
    for mode in (False, "threads"):
        m = CowModel(case, designs.load(design))
        res[mode] = verdicts_of(m, explore(m, Limits(max_states=30_000), symmetry=mode,
                                           expect_stuck=case.expect_stuck))
    assert res["threads"]["replays"]
    if res[False]["status"] == "complete":
        assert res["threads"] == res[False]
    elif res["threads"]["status"] == "complete":
        assert set(res[False]["kinds"]) <= set(res["threads"]["kinds"])
        assert res[False]["bugs"] <= res["threads"]["bugs"] and res[False]["stuck"] <= res["threads"]["stuck"]


def test_witnesses_through_permuted_states_replay():
    """symmetric_threads_case(13) finds a wrong COW under linux-5.9; the
    witness, found through states with the two further threads swapped,
    names the real threads: it replays to its verdict."""
    m = CowModel(symmetric_threads_case(13), designs.load("linux-5.9"))
    assert [g.tids for g in m.thread_groups] == [(1, 2)]
    plain = explore(m)
    red = explore(m, symmetry="threads")
    assert red.status == plain.status == "complete"
    assert set(red.found) == set(plain.found) and red.found
    assert red.states < explore(m, symmetry="procs").states
    for k, w in red.found.items():
        assert any(e.kind == k for e in list(replay(m, w.trace))[-1].events)


def test_swapping_twice_gives_the_state_back():
    """permute_threads renames every field consistently: a swap of the two
    threads applied twice is the identity on every reachable state, and it
    changes some (pins, the page-table lock, lru_add batches and events
    follow the thread)."""
    m = CowModel(threads_case(3), designs.load("linux-5.9"))
    g = m.thread_groups[0]
    assert g.tids == (1, 2) and g.cpus == (1, 2)
    fwd = _perm_maps(g, (1, 0))
    moved = 0
    seen_fields = set()
    for s in reachable(m):
        once = permute_threads(s, *fwd)
        assert permute_threads(once, *fwd) == s
        moved += once != s
        assert once.threads[1] == s.threads[2] or any(
            fr is not None and type(fr).__name__ == "GupFrame" for _, fr in s.threads[2].stack)
        assert once.threads[0] == s.threads[0]
        ren = {"p:q1.0": "p:q2.0", "t1": "t2", "cpu1": "cpu2"}
        for r in s.refs:
            if r.owner in ren:
                seen_fields.add(r.kind)
                assert r._replace(owner=ren[r.owner]) in once.refs
        if s.mms[0].ptl in (1, 2):
            seen_fields.add("ptl")
            assert once.mms[0].ptl == 3 - s.mms[0].ptl
        if "p3.p.cpu1" in s.signals:
            seen_fields.add("signal")
            assert "p3.p.cpu2" in once.signals
    assert moved
    assert {"gup_test", "signal"} <= seen_fields
    # (no state of this case has a further thread holding the page-table lock between steps: set one)
    held = s._replace(mms=(s.mms[0]._replace(ptl=1),) + s.mms[1:])
    assert permute_threads(held, *fwd).mms[0].ptl == 2


def test_a_thread_after_set_up_operations_is_not_permuted():
    """The main thread runs the further threads' operations after set-up
    operations of its own: it is told apart by where it starts (a thread at
    pc 0 has not started), so it is left out of the group, and the search
    says so."""
    m = CowModel(threads_case(3), designs.load("linux-5.9"))
    assert [g.tids for g in m.thread_groups] == [(1, 2)]
    assert any("thread p runs like p.cpu1, p.cpu2 after set-up" in r for r in m.thread_refusals)
    m2 = CowModel(threads_case(2), designs.load("linux-5.9"))
    assert m2.thread_groups == () and m2.thread_refusals
    r = explore(m2, symmetry="threads")
    assert "not permuted" in r.reason
    assert r.states == explore(m2, symmetry="procs").states


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
    """Threads that run alike but one is its process's main thread (here
    also on its parent's CPU, whose lru_add batch could not follow it) or
    that fork (the children would have to be permuted with them) are not
    permuted; the search says why."""
    case = _shared_cpu_case()
    m = CowModel(case, designs.load("linux-5.9"))
    assert m.cpu_of[[t.name for t in case.threads].index("c")] == m.cpu_of[0]
    assert m.thread_groups == ()
    assert m.thread_refusals and "main thread" in m.thread_refusals[0]
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
