"""Symmetry over interchangeable processes (``explore(symmetry="procs")``,
``cowlab explore --symmetry=procs``): children one thread forks with the same
operations are permuted into a canonical order.  The expected outcomes here
are the plain search's (no reduction): a reduction must not change them."""
from __future__ import annotations

import itertools
import os
import sys

import pytest

from cowlab import designs
from cowlab.explore import Limits, explore, replay
from cowlab.model import (CowModel, _frames_ok, canonical, canonical_processes, permute_processes,
                          process_groups)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from benchmarks.explore import procs_case  # noqa: E402
from tools.explore_equality import symmetric_case, verdicts_of  # noqa: E402

from ._symmetry import assert_reduced_is_plain_up_to_permutation, reachable  # noqa: E402


def _orbit(m, s):
    """Every representative (pages renamed) of ``s`` under the group permutations the model allows there."""
    out = {canonical(s)}
    for g in m.proc_groups:
        if s.threads[g.forker].pc <= g.last_fork or not all(_frames_ok(t) for t in s.threads):
            continue
        for order in itertools.permutations(range(len(g.procs))):
            mm, tm, sm = {}, {}, {}
            for j, k in enumerate(order):
                mm[g.procs[k]] = g.procs[j]
                tm.update(zip(g.tids[k], g.tids[j]))
                sm.update(zip(g.own[k], g.own[j]))
            out.add(canonical(permute_processes(s, mm, tm, sm)))
    return out


@pytest.mark.parametrize("seed", [1, 3, 4, 5, 7])
def test_reduced_states_are_the_plain_states_up_to_permutation(seed):
    """Every state the reduced search keeps is a reachable state with
    processes permuted (nothing made up), and every reachable state has a
    permutation the reduced search keeps (nothing lost)."""
    m = CowModel(symmetric_case(seed), designs.load("linux-5.9"))
    assert m.proc_groups
    assert_reduced_is_plain_up_to_permutation(m, _orbit)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("design", ["linux-5.7", "linux-5.9", "linux-6.18"])
def test_same_verdicts_as_plain_search(seed, design):
    case = symmetric_case(seed)
    res = {}
    for mode in (False, "procs"):
        m = CowModel(case, designs.load(design))
        res[mode] = verdicts_of(m, explore(m, Limits(max_states=200_000), symmetry=mode,
                                           expect_stuck=case.expect_stuck))
    assert res["procs"]["replays"]
    assert res["procs"] == res[False]


def test_witness_through_a_permuted_state_replays():
    """procs_case(3) finds an unnecessary COW; its witness, found through
    permuted states, names the real threads: it replays to that verdict."""
    m = CowModel(procs_case(3), designs.load("linux-6.18"))
    plain = explore(m)
    red = explore(m, symmetry="procs")
    assert set(red.found) == set(plain.found) and red.found
    assert red.states < explore(m, symmetry=True).states
    for k, w in red.found.items():
        assert any(e.kind == k for e in list(replay(m, w.trace))[-1].events)


def test_trace_maps_threads_back():
    """A state where child c1 ran first is stored as its mirror (c2 first,
    the representative's order): the trace to it still says c1 ran, and a
    later step of the representative's thread 1 (c2 there) is c2's (thread 2)."""
    m = CowModel(procs_case(3), designs.load("linux-5.9"))
    s = m.init_state()
    trace = []
    while s.threads[0].pc <= m.proc_groups[0].last_fork + 1:      # the parent forks both and signals
        tr = m.step(s, 0)
        trace.append((0, tr.label))
        s = tr.state
    tr = m.step(s, 1)               # c1 passes its wait first
    s2, tm = canonical_processes(m.proc_groups, tr.state)
    assert tm == (0, 2, 1)           # c1's thread is stored as thread 2
    from cowlab.explore import _trace
    assert s2.threads[2] == tr.state.threads[1] and s2.mms[2] == tr.state.mms[1]
    parents = {"a": None, "b": ("a", 0, "x"), "c": ("b", 1, "y", tm), "d": ("c", 1, "z")}
    assert _trace(parents, "d") == [(0, "x"), (1, "y"), (2, "z")]
    assert _trace(parents, "c", (2, "w")) == [(0, "x"), (1, "y"), (1, "w")]


def test_no_group_when_another_process_names_a_child():
    """A parent that waits on one child's event tells the children apart."""
    from cowlab.scenario import Script
    s = Script("named", pages=1)
    p = s.process("p")
    c1, c2 = s.process("c1"), s.process("c2")
    p.mmap(0)
    p.write(0)
    p.fork(c1)
    p.fork(c2)
    s.thread("c1", [("write", {"addr": 0}), ("signal", {"event": "e.c1"})])
    s.thread("c2", [("write", {"addr": 0}), ("signal", {"event": "e.c2"})])
    s.thread("p", [("wait", {"event": "e.c1"})])
    case = s.build()
    m = CowModel(case, designs.load("linux-5.9"))
    assert process_groups(case, m.tmm, m.cpu_of) == ()
    sym = symmetric_case(4)
    m2 = CowModel(sym, designs.load("linux-5.9"))
    assert len(m2.proc_groups) == 1 and m2.proc_groups[0].procs == (1, 2)


def test_cli_symmetry_procs(tmp_path):
    from click.testing import CliRunner
    from cowlab.cli import main
    r0 = CliRunner().invoke(main, ["explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--format", "json"])
    r1 = CliRunner().invoke(main, ["explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--format", "json",
                                   "--symmetry=procs"])
    import json
    a, b = json.loads(r0.output), json.loads(r1.output)
    assert a.get("kind") == b.get("kind") and a.get("kind")


@pytest.mark.parametrize("seed", [3, 4, 7])
def test_swapping_twice_gives_the_state_back(seed):
    """permute_processes renames every field consistently: a swap of two
    children applied twice is the identity on every reachable state, and once
    it changes some states (those where the children differ beyond their names)."""
    m = CowModel(symmetric_case(seed), designs.load("linux-6.18"))
    g = m.proc_groups[0]
    mm = {g.procs[0]: g.procs[1], g.procs[1]: g.procs[0]}
    tm = dict(zip(g.tids[0], g.tids[1])) | dict(zip(g.tids[1], g.tids[0]))
    sm = dict(zip(g.own[0], g.own[1])) | dict(zip(g.own[1], g.own[0]))
    moved = 0
    for s in reachable(m):
        once = permute_processes(s, mm, tm, sm)
        assert permute_processes(once, mm, tm, sm) == s
        moved += once != s
        if s.mms[1] != s.mms[2]:
            assert once != s and once.mms[1] == s.mms[2]
    assert moved
