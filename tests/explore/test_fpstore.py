"""Hash compaction's visited store (``explore.fpstore``: states numbered in
flat arrays, labels rebuilt by replay) and the disk-backed breadth-first
frontier (``frontier="disk"``): the plain search's states, transitions,
verdicts and shortest witnesses, with every reduction the store meets."""
from __future__ import annotations

import os
import sys

import pytest
from click.testing import CliRunner

from cowlab import catalog, designs
from cowlab.cli import main
from cowlab.explore import Limits, explore, fpstore, replay
from cowlab.explore.fpstore import DiskQueue, FingerprintStore
from cowlab.model import CowModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from benchmarks.explore import procs_case  # noqa: E402
from tools.explore_equality import symmetric_case  # noqa: E402


def summary(r):
    return (r.status, r.states, r.transitions, r.depth, r.stuck, {k: len(v) for k, v in r.incidents.items()},
            {k: (w.trace, w.depth, w.text) for k, w in r.found.items()}, r.deadlocks, r.bugs)


def assert_replays(m, r):
    for w in r.found.values():
        trs = list(replay(m, w.trace))
        assert len(trs) == w.depth == len(w.trace)
        assert w.kind in {k for k, _, _ in m.violations(trs[-1])}


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(fpstore, "DISK_CHUNK", 7)      # so that even small searches spill to the file


def test_the_store_on_the_race_catalog(small_chunks):
    """Plain, fingerprints and fingerprints + disk frontier: one result, witnesses that replay."""
    races = [c for c in catalog.all_cases() if "race" in c.tags]
    assert len(races) >= 10
    found = 0
    for c in races:
        m = CowModel(c, designs.load("linux-5.9"))
        a = explore(m)
        f = explore(m, fingerprints=True)
        g = explore(m, fingerprints=True, frontier="disk")
        assert summary(f) == summary(a) == summary(g), c.id
        found += bool(a.found)
        assert_replays(m, f)
        assert f.omission is not None and f.omission == g.omission and a.omission is None
    assert found >= 5                       # witnesses to compare and replay


@pytest.mark.parametrize("kw", [{"por": True}, {"symmetry": True}, {"por": True, "symmetry": True},
                                {"order": "dfs", "por": True}])
def test_the_store_with_reductions(kw, small_chunks):
    for cid in ("race-fork-gup-fast", "race-reclaim-pin"):
        for dn in ("linux-5.9", "linux-6.18"):
            m = CowModel(catalog.get(cid), designs.load(dn))
            a, f = explore(m, **kw), explore(m, fingerprints=True, **kw)
            assert summary(f) == summary(a), (cid, dn)
            assert_replays(m, f)
            if kw.get("order") != "dfs":
                assert summary(explore(m, fingerprints=True, frontier="disk", **kw)) == summary(a)


def test_the_store_with_symmetry_over_processes(small_chunks):
    """The thread renamings of the links (kept only where there is one) map the witness back to the real run."""
    cases = [(procs_case(3), "linux-6.18")] + [(symmetric_case(seed), "linux-5.9") for seed in range(6)]
    for c, dn in cases:
        m = CowModel(c, designs.load(dn))
        a = explore(m, symmetry="procs")
        f = explore(m, symmetry="procs", fingerprints=True)
        g = explore(m, symmetry="procs", fingerprints=True, frontier="disk")
        assert summary(f) == summary(a) == summary(g), c.id
        for w in f.found.values():
            assert len(list(replay(m, w.trace))) == w.depth
    m = CowModel(procs_case(3), designs.load("linux-6.18"))
    r = explore(m, symmetry="procs", fingerprints=True)
    assert r.found and r.states < explore(m, fingerprints=True).states


def test_a_limit_is_inconclusive():
    m = CowModel(catalog.get("race-fork-gup-fast"), designs.load("linux-6.18"))
    for frontier in ("memory", "disk"):
        r = explore(m, fingerprints=True, frontier=frontier, limits=Limits(max_states=40))
        assert r.status == "inconclusive" and "state limit 40" in r.reason and "hash compaction" in r.reason
        r = explore(m, fingerprints=True, frontier=frontier, limits=Limits(max_depth=3))
        assert r.status == "inconclusive" and "depth limit 3" in r.reason


def test_store_finds_what_it_added():
    st = FingerprintStore(3, with_depth=True, slots=4)
    fps = [(i * 0x9E3779B97F4A7C15) & (2 ** 64 - 1) for i in range(1, 500)] + [5, 5 + 4, 5 + 8]   # (collide low bits)
    for k, fp in enumerate(fps):
        assert st.add(fp, max(k - 1, 0), k % 3, (1, 0) if k == 7 else None, k) == k
    assert len(st) == len(fps) and st.mask + 1 >= 2 * len(fps)
    for k, fp in enumerate(fps):
        assert st.find(fp) == k and st.add(fp, 0, 0) == -1 and st.depth[k] == k
    assert st.find(12345) == -1 and len(st) == len(fps)
    assert st.perm == {7: (1, 0)}


def test_disk_queue_is_first_in_first_out():
    q = DiskQueue([("s", 0)], chunk=4)
    out, n = [], 1
    for i in range(1, 60):
        q.append((("x", i), i))
        n += 1
        if i % 3 == 0:
            out.append(q.popleft())
            n -= 1
        assert len(q) == n
    assert q.file is not None                     # it spilled
    while len(q):
        out.append(q.popleft())
    assert [x[1] for x in out] == list(range(60))
    q.close()


def test_disk_frontier_is_breadth_first_only():
    m = CowModel(catalog.get("race-fork-gup-fast"), designs.load("linux-6.18"))
    with pytest.raises(ValueError):
        explore(m, order="dfs", frontier="disk")
    with pytest.raises(ValueError):
        explore(m, frontier="tape")


def test_cli_frontier_disk():
    def run(*args):
        r = CliRunner().invoke(main, ["explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--format", "json",
                                      *args])
        return r.exit_code, r.output
    import json
    c0, plain = run()
    c1, disk = run("--fingerprints", "--frontier", "disk")
    plain, disk = json.loads(plain), json.loads(disk)
    assert (c0, plain["status"], plain["outcomes"], plain["states"]) == (c1, disk["status"], disk["outcomes"],
                                                                          disk["states"])
    assert 0 < disk["omission_probability"] < 1e-6
    code, _ = run("--dfs", "--frontier", "disk")
    assert code == 2
