"""The footprints' independence claims hold where the searches go: at every
state plain search reaches on the single-family race catalog and on the
benchmarks' three forked writers (sampled), for every two threads whose next
steps the footprints call independent, both orders are enabled, reach the
same state (up to renaming page frames, swap slots and fresh content tokens:
interchangeable identities, see ``cowlab.footprint`` and
``cowlab.model.same_up_to_renaming``) and report the same violations; and a step independent
of a blocked thread's footprint leaves that thread blocked (it does not
enable it).  This is the diamond property source-DPOR's soundness rests on."""
import os
import sys
from collections import deque

import pytest

from cowlab import catalog, designs
from cowlab.model import CowModel, same_up_to_renaming

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from benchmarks.explore import procs_case, threads_case  # noqa: E402
from ._symmetry import reachable  # noqa: E402

#: states checked per case and design (spread evenly over the breadth-first order of all reachable states)
SAMPLE = 300


def _viol(m, trs):
    return sorted((k, repr(key)) for tr in trs for k, key, _ in m.violations(tr))


def _states(m):
    s0 = m.init_state()
    seen, q, order = {s0}, deque([s0]), []
    while q:
        s = q.popleft()
        order.append(s)
        for t in range(m.nthreads):
            tr = m.step(s, t)
            if tr is not None and tr.state not in seen:
                seen.add(tr.state)
                q.append(tr.state)
    stride = max(1, len(order) // SAMPLE)
    return order[::stride]


def _key(fp):
    """A footprint without the keys that name what the step allocates (renamed when another allocates first:
    its writes, and the increments of a frame's or slot's existence)."""
    if fp.glob:
        return fp
    return (fp.reads, fp.rgroups, frozenset(k for k in fp.incs if k[0] not in ("f", "sw")))


def check_diamonds(m):
    """(pairs checked, [failures]): for two steps independent at a state, and
    for a step and the next step of another thread after it, independent as
    they ran (the pairs DPOR's race detection judges)."""
    checked, bad = 0, []
    n = m.nthreads
    for s in _states(m):
        nxt = [m.footprint(s, t) for t in range(n)]
        for a in range(n):
            tra, fa = nxt[a]
            if tra is None:
                continue
            for b in range(n):
                if b == a or m.thread_done(s, b):
                    continue
                trb, fb = nxt[b]
                after_b, fb2 = m.footprint(tra.state, b)
                as_ran = m.dependent(fa, fb)
                if as_ran:
                    # DPOR judges events by their footprints as they ran: b's after a, independent of a's,
                    # says b could have run first, as the same step, to the same state
                    if after_b is None or m.dependent(fa, fb2):
                        continue
                    checked += 1
                    if trb is None or _key(fb) != _key(fb2):
                        bad.append((s, a, b, f"{tra.label} then {after_b.label}: independent as they ran, but "
                                             f"thread {b} at the state before is blocked or another step"))
                        continue
                else:
                    checked += 1
                    if _key(fb2) != _key(fb):
                        bad.append((s, a, b, f"{tra.label} changes what thread {b} does next (its footprint)"))
                        continue
                if trb is None:
                    if after_b is not None:
                        bad.append((s, a, b, f"{tra.label} enables blocked thread {b}"))
                    continue
                if b < a and not as_ran:
                    continue                    # (each pair independent at s once)
                after_a = m.step(trb.state, a)
                if after_b is None or after_a is None:
                    bad.append((s, a, b, f"{tra.label} / {trb.label}: one disables the other"))
                    continue
                if not same_up_to_renaming(after_b.state, after_a.state, s.next_token):
                    bad.append((s, a, b, f"{tra.label} / {trb.label}: the two orders differ"))
                elif _viol(m, [tra, after_b]) != _viol(m, [trb, after_a]):
                    bad.append((s, a, b, f"{tra.label} / {trb.label}: different violations"))
    return checked, bad


RACES = [c.id for c in catalog.all_cases() if "race" in c.tags]


@pytest.mark.parametrize("case", RACES)
def test_independent_steps_commute_on_the_race_catalog(case):
    checked = 0
    for dn in ("linux-5.9", "linux-6.18", "rfc-mapcount"):
        m = CowModel(catalog.get(case), designs.load(dn))
        n, bad = check_diamonds(m)
        checked += n
        assert not bad, [(dn, a, b, why) for _, a, b, why in bad[:5]]
    assert checked > 0


def test_independent_steps_commute_across_processes():
    """Writes in two forked processes each store a fresh token: the orders reach
    states that differ only by which process holds which token (the renaming
    ``same_up_to_renaming`` allows); the single-family catalog has no such pair."""
    m = CowModel(procs_case(3), designs.load("linux-5.9"))
    n, bad = check_diamonds(m)
    assert n > 0
    assert not bad, [(a, b, why) for _, a, b, why in bad[:5]]


@pytest.mark.parametrize("nthreads,reclaim", [(3, False), (2, True)])
def test_independent_steps_commute_between_threads(nthreads, reclaim):
    """Threads of one process faulting and pinning one page (the benchmark's
    growth series): mmap_read_lock(), get_page() and set_bit(MMF_HAS_PINNED)
    are increments that commute; with a reclaim thread, drops of references
    and the page lock as well."""
    m = CowModel(threads_case(nthreads, reclaim=reclaim), designs.load("linux-5.9"))
    n, bad = check_diamonds(m)
    assert n > 0
    assert not bad, [(a, b, why) for _, a, b, why in bad[:5]]


def test_flag_bits_are_separate_keys():
    """A store sets PG_dirty (folio_mark_dirty()) and reclaim takes the page
    lock (PG_locked) or isolates the folio (PG_lru): different bits of one
    flags word, so the footprints call them independent (and the diamond tests
    above check that such steps commute)."""
    m = CowModel(threads_case(2, reclaim=True), designs.load("linux-5.9"))
    found = set()
    for s in reachable(m):
        nxt = [m.footprint(s, t) for t in range(m.nthreads)]
        for tra, fa in nxt:
            for trb, fb in nxt:
                if tra is None or trb is None or tra.tid == trb.tid:
                    continue
                if tra.label == "access.write" and trb.label in ("reclaim.lock", "reclaim.isolate"):
                    found.add((trb.label, m.dependent(fa, fb)))
    assert ("reclaim.lock", False) in found and ("reclaim.isolate", False) in found, found


def test_independent_steps_commute_around_exit():
    """do_exit() waits for the process's threads inside a kernel path (it reads
    ``("inpath", tid)``, which a path's first and last steps write): the step
    that ends gup-fast's walk wakes it, so the two are dependent."""
    from cowlab.scenario import Script
    s = Script("exit-during-gup-fast", pages=1)
    p = s.process("p")
    s.cpu("p", "p.t1")
    p.mmap(0, pages=1)
    p.write(0)
    s.parallel({"p.t1": [("pin_longterm", {"addr": 0, "pin": "q", "fast": True}), ("unpin", {"pin": "q"})],
                "p": [("exit", {})]})
    m = CowModel(s.build(), designs.load("linux-5.9"))
    n, bad = check_diamonds(m)
    assert n > 0
    assert not bad, [(a, b, why) for _, a, b, why in bad[:5]]
