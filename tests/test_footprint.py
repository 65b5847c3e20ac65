"""``cowlab.footprint.dependent``: the Bloom signatures it tests first never
change its answer.  The reference below is the rule the module's docstring
states, written out on the sets (no signatures), and random footprints over a
small universe of keys (so that sets often meet) are compared with it."""
from hypothesis import given, settings, strategies as st

from cowlab.footprint import Footprint, dependent

KEYS = st.sampled_from([("pte", 0, 0), ("pte", 0, 1), ("pte", 1, 0), ("refs", 3), ("refs", 4), ("f", 3, "flags"),
                        ("f", 3, "refcount"), ("mmap_lock", 0), ("mmap_lock", 1), ("ptl", 0), ("sig", "e"),
                        ("spec", 0), ("refo", 3, 1), ("pin", 0, 0)])
GROUPS = st.sampled_from([("f",), ("f", 3), ("refs",), ("mm", 0), ("ptes", 0), ("sig",), ("irqs",)])
SETS = st.frozensets(KEYS, max_size=4)
GSETS = st.frozensets(GROUPS, max_size=2)


def _reference(a: Footprint, b: Footprint) -> bool:
    if a.glob or b.glob:
        return True
    for x, y in ((a, b), (b, a)):
        if x.incs & (y.reads | y.writes):
            return True
        if x.writes & (y.reads | y.writes):
            return True
        if x.wgroups & y.rgroups:
            return True
    return False


footprints = st.builds(Footprint, reads=SETS, writes=SETS, rgroups=GSETS, wgroups=GSETS,
                       incs=st.frozensets(st.sampled_from([("mmap_lock", 0), ("mmap_lock", 1)]), max_size=1))


@settings(max_examples=1000, deadline=None)
@given(footprints, footprints, st.booleans())
def test_dependent_is_the_rule_on_the_sets(a, b, glob):
    if glob:
        a = Footprint(glob=True)
    assert dependent(a, b) == dependent(b, a) == _reference(a, b)


def test_two_increments_commute_and_an_increment_conflicts_with_a_read():
    inc = Footprint(reads=frozenset({("alive", 0)}), incs=frozenset({("mmap_lock", 0)}))
    assert not dependent(inc, inc)
    reader = Footprint(reads=frozenset({("mmap_lock", 0)}))
    assert dependent(inc, reader) and dependent(reader, inc)


def test_disjoint_footprints_are_independent():
    a = Footprint(reads=frozenset({("pte", 0, 0)}), writes=frozenset({("pte", 0, 0)}))
    b = Footprint(reads=frozenset({("pte", 0, 1)}), writes=frozenset({("pte", 0, 1)}))
    assert not dependent(a, b)
    assert dependent(a, Footprint(reads=frozenset({("pte", 0, 0)})))


def test_a_blocked_wait_has_the_footprint_its_tracked_run_records():
    """footprint() answers a ``wait`` whose event is not set without running the step: the same footprint as the
    tracked run (the event and the process's liveness), in every reachable state of a race with sync waits."""
    from cowlab import catalog, designs
    from cowlab import footprint as fpm
    from cowlab.model import CowModel
    from .explore._symmetry import reachable
    m = CowModel(catalog.get("race-fork-write"), designs.load("linux-6.18"))
    fast = 0
    for state in reachable(m):
        for tid in range(m.nthreads):
            t = state.threads[tid]
            if t.stack or t.pc >= len(m.ops[tid]) or m.wait_event[tid][t.pc] is None:
                continue
            got = m.footprint(state, tid)
            saved = m.wait_event[tid][t.pc]
            m.wait_event[tid][t.pc] = None            # the tracked run
            try:
                want = fpm.footprint(m, state, tid)
            finally:
                m.wait_event[tid][t.pc] = saved
            assert (got[0] is None) == (want[0] is None) and got[1] == want[1], (tid, got[1], want[1])
            fast += got[0] is None
    assert fast
