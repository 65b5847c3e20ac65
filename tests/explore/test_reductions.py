"""Dynamic partial-order reduction and hash compaction give the verdicts of
plain breadth-first search: on the whole catalog under every design, and on
random scenarios (pairs of them combined, so that steps interleave)."""
import random

import pytest

from cowlab import catalog, designs
from cowlab.explore import Limits, explore, omission_probability, replay
from cowlab.model import CowModel
from cowlab.scenario import combine
from cowlab.scenario_gen import generate


def verdicts(r):
    """Every incident (not only how many of each kind: a copy's incident is its text, which names the transient
    references it saw), the status, whether a stuck state was reached."""
    return {k: frozenset(v) for k, v in r.incidents.items()}, r.status, r.stuck > 0


@pytest.mark.parametrize("design", designs.names())
def test_dpor_same_verdicts_on_the_catalog(design):
    d = designs.load(design)
    plain_states = dpor_states = 0
    for c in catalog.all_cases():
        m = CowModel(c, d)
        a = explore(m, expect_stuck=c.expect_stuck)
        b = explore(m, dpor=True, expect_stuck=c.expect_stuck)
        assert verdicts(b) == verdicts(a), (c.id, a.reason, b.reason)
        assert set(b.found) == set(a.found), c.id
        plain_states += a.states
        dpor_states += b.states
        for w in b.found.values():          # a DPOR witness replays to the same violation
            trs = list(replay(m, w.trace))
            assert w.kind in {k for k, _, _ in m.violations(trs[-1])}, (c.id, w.kind)
    assert dpor_states < plain_states


def _pairs(seed, n):
    rng = random.Random(seed)
    for i in range(n):
        a = generate(random.Random(rng.random()), 2 * i, max_body=5, prefix=f"p{seed}")
        b = generate(random.Random(rng.random()), 2 * i + 1, max_body=5, prefix=f"p{seed}")
        yield combine(f"pair{i}", "two random scenarios side by side", a.case(), b.case())


@pytest.mark.parametrize("design", ["linux-5.9", "linux-6.18", "rfc-mapcount"])
def test_dpor_and_fingerprints_same_verdicts_on_random_scenarios(design):
    d = designs.load(design)
    lim = Limits(max_states=5_000)
    ran = 0
    for c in _pairs(3, 8):
        m = CowModel(c, d)
        a = explore(m, limits=lim)
        if a.status != "complete":
            continue                        # too big to compare here
        ran += 1
        b = explore(m, dpor=True, limits=lim)
        f = explore(m, fingerprints=True, limits=lim)
        assert verdicts(b) == verdicts(a), (c.id, b.reason)
        assert verdicts(f) == verdicts(a) and f.states == a.states, c.id
    assert ran >= 3


@pytest.mark.parametrize("seed", [21, 22])
def test_dpor_same_verdicts_on_random_single_scenarios(seed):
    """One generated scenario at a time (its threads share pages and locks: the
    summaries' happens-before pasts decide which races are reversed), every
    design in turn: DPOR's incidents, model bugs and stuck states are plain
    search's."""
    rng = random.Random(seed)
    names = designs.names()
    ran = 0
    for i in range(16):
        c = generate(random.Random(rng.random()), i, max_body=6, prefix=f"s{seed}").case()
        m = CowModel(c, designs.load(names[i % len(names)]))
        lim = Limits(max_states=8_000)
        a = explore(m, limits=lim)
        if a.status != "complete" and a.reason:
            continue
        b = explore(m, dpor=True, limits=lim)
        ran += 1
        assert verdicts(b) == verdicts(a) and bool(b.bugs) == bool(a.bugs), (c.id, names[i % len(names)])
    assert ran >= 8


def test_dpor_reduces_independent_families():
    """Two processes that never share a page: DPOR walks far fewer states."""
    from cowlab.scenario import Script
    s = Script("indep", pages=1)
    s.process("p"), s.process("q")
    s.parallel({"p": [("mmap", {"addr": 0}), ("write", {"addr": 0}), ("read", {"addr": 0})],
                "q": [("mmap", {"addr": 0}), ("write", {"addr": 0}), ("read", {"addr": 0})]})
    m = CowModel(s.build(), designs.load("linux-6.18"))
    a, b = explore(m), explore(m, dpor=True)
    assert verdicts(a) == verdicts(b)
    assert b.states * 2 < a.states


def test_dpor_falls_back_on_a_cycle():
    """A model with a cycle is explored without DPOR, and says so."""
    class Cyclic:
        nthreads = 1

        def init_state(self):
            return 0

        def step(self, s, tid):
            from collections import namedtuple
            T = namedtuple("T", "state tid label")
            return T((s + 1) % 3, 0, f"s{s}")

        def footprint(self, s, tid):
            return self.step(s, tid), None

        def dependent(self, a, b):
            return True

        def is_done(self, s):
            return False

        def thread_done(self, s, tid):
            return False

        def violations(self, tr):
            return []

        def model_bugs(self, tr):
            return []
    r = explore(Cyclic(), dpor=True)
    assert "without DPOR" in r.reason and r.states == 3


def test_fingerprints_on_the_race_catalog():
    """Hash compaction: the same states, verdicts and shortest traces, and the
    omission probability in the report."""
    for c in [c for c in catalog.all_cases() if "race" in c.tags]:
        for dn in ("linux-5.9", "linux-6.18"):
            m = CowModel(c, designs.load(dn))
            a, f = explore(m, por=True), explore(m, por=True, fingerprints=True)
            assert f.states == a.states and verdicts(f) == verdicts(a)
            assert {k: w.trace for k, w in f.found.items()} == {k: w.trace for k, w in a.found.items()}
            assert f.omission is not None and 0 < f.omission < 1e-9
            assert "fingerprints" in f.reason and f"{f.omission:.1e}" in f.reason
            assert a.omission is None


def test_omission_probability_is_tlcs_estimate():
    assert omission_probability(10, 10) == 0
    assert omission_probability(2 ** 20, 2 ** 21) == pytest.approx(2 ** 40 / 2 ** 64)
    assert omission_probability(2 ** 40, 2 ** 41) == 1.0


def test_explore_puts_back_the_collector_thresholds():
    """``explore`` raises CPython's collector thresholds while it runs
    (``GC_THRESHOLD``) and puts the caller's back, also when the search fails."""
    import gc

    from cowlab.explore import GC_THRESHOLD

    before = gc.get_threshold()
    m = CowModel(catalog.get("race-fork-gup-fast"), designs.load("linux-5.9"))
    seen = []

    class Spy(CowModel):
        def step(self, s, tid, **kw):
            seen.append(gc.get_threshold())
            return CowModel.step(self, s, tid, **kw)

    explore(Spy(m.case, m.design), limits=Limits(max_states=50))
    assert seen and set(seen) == {GC_THRESHOLD} and gc.get_threshold() == before

    class Broken(CowModel):
        def step(self, s, tid, **kw):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        explore(Broken(m.case, m.design))
    assert gc.get_threshold() == before


@pytest.mark.parametrize("thp", [False, True])
def test_two_swap_outs_commute_only_where_offsets_do_not_matter(thp):
    """Two threads paging out one page each take the next swap offsets: in either order the states are the same up
    to renaming the offsets.  Without large folios that is independence (the footprint's fresh slots); where one
    can arise (a THP mmap: alloc_swap_folio() looks at alignment and order) the two steps read and write the
    allocator's cursor ("swcur",) and are dependent, so DPOR tries both orders."""
    from cowlab.scenario import Script
    from ._symmetry import reachable
    s = Script(f"two-swapouts-{thp}", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": (4,)} if thp else None)
    p = s.process("p")
    s.cpu("p", "p.t1")
    p.mmap(0, pages=8, thp=thp)
    p.write(0), p.write(5)
    if thp:
        p.mprotect(0, pages=8, prot="r"), p.mprotect(0, pages=8, prot="rw")
    p.lru_add_drain()
    s.parallel({"p": [("pageout", {"addr": 0})], "p.t1": [("pageout", {"addr": 5})]})
    m = CowModel(s.build(), designs.load("linux-6.18"))
    assert m.rename_slots is (not thp)
    both = 0
    for st in reachable(m):
        a, fa = m.footprint(st, 0)
        b, fb = m.footprint(st, 1)
        if a is None or b is None or len(a.state.swap) == len(st.swap) or len(b.state.swap) == len(st.swap):
            continue
        both += 1
        assert m.dependent(fa, fb) is thp
    assert both


@pytest.mark.parametrize("thp", [False, True])
def test_static_groups_keep_swap_outs_together_where_offsets_matter(thp):
    """Two process families that each page out share only the swap allocator: apart in static POR's partition
    where offsets are names, in one group where a large folio can arise (their order decides the offsets)."""
    from cowlab.scenario import Script
    s = Script(f"two-families-swap-{thp}", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": (4,)} if thp else None)
    s.process("p"), s.process("q")
    body = [("mmap", {"addr": 0, "pages": 8, "thp": thp}), ("write", {"addr": 0}), ("pageout", {"addr": 0})]
    s.parallel({"p": body, "q": body})
    m = CowModel(s.build(), designs.load("linux-6.18"))
    assert len(m.independent_groups()) == (1 if thp else 2)
