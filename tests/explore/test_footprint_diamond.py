"""The footprints' independence claims hold where the searches go: at every
state plain search reaches on the single-family race catalog (sampled), for
every two threads whose next steps the footprints call independent, both
orders are enabled, reach the same state (up to renaming page frames, swap
slots and fresh content tokens: interchangeable identities, see
``cowlab.footprint``) and report the same violations; and a step independent
of a blocked thread's footprint leaves that thread blocked (it does not
enable it).  This is the diamond property source-DPOR's soundness rests on."""
from collections import deque

import pytest

from cowlab import catalog, designs
from cowlab.kernel.types import Folio, Spec, SwapSlot, Thread
from cowlab.model import CowModel, canonical

#: states checked per case and design (spread evenly over the breadth-first order of all reachable states)
SAMPLE = 300


def _same(a, b, nt, tok, inv, free):
    """``a`` equals ``b`` up to a bijection ``tok`` of content tokens above
    ``nt`` (the fresh ones), applied where tokens live (``free``)."""
    if a == b and not free:
        return True
    if type(a) is int and type(b) is int:
        if a == b and a <= nt:
            return True
        if not free or a <= nt or b <= nt:
            return a == b
        if tok.setdefault(a, b) != b or inv.setdefault(b, a) != a:
            return False
        return True
    if isinstance(a, (frozenset, set)) and isinstance(b, (frozenset, set)):
        if len(a) != len(b):
            return False
        if not free:
            return a == b
        rest = set(b)
        for x in sorted(a, key=repr):
            hit = next((y for y in sorted(rest, key=repr) if _same(x, y, nt, dict(tok), dict(inv), free)), None)
            if hit is None:
                return False
            _same(x, hit, nt, tok, inv, free)
            rest.discard(hit)
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        if type(a) is not type(b) or len(a) != len(b):
            return False
        fields = getattr(type(a), "_fields", None)
        for i, (x, y) in enumerate(zip(a, b)):
            f = fields[i] if fields else None
            sub = free or (type(a) in (Folio, SwapSlot) and f == "data") or type(a) in (Spec, Thread)
            if not _same(x, y, nt, tok, inv, sub):
                return False
        return True
    return a == b


def _trim(t):
    while t and t[-1] is None:
        t = t[:-1]
    return t


def same_state(x, y, nt):
    """(a free frame or slot at the end of its table is the same as none there)"""
    x, y = canonical(x), canonical(y)
    x = x._replace(folios=_trim(x.folios), swap=_trim(x.swap))
    y = y._replace(folios=_trim(y.folios), swap=_trim(y.swap))
    if x == y:
        return True
    if x.next_token != y.next_token:
        return False
    tok, inv = {}, {}
    return all(_same(getattr(x, f), getattr(y, f), nt, tok, inv, f in ("spec", "threads"))
               for f in x._fields)


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
    """(pairs checked, [failures])."""
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
                if m.dependent(fa, fb):
                    continue
                checked += 1
                after_b = m.step(tra.state, b)
                if _key(m.footprint(tra.state, b)[1]) != _key(fb):
                    bad.append((s, a, b, f"{tra.label} changes what thread {b} does next (its footprint)"))
                    continue
                if trb is None:
                    if after_b is not None:
                        bad.append((s, a, b, f"{tra.label} enables blocked thread {b}"))
                    continue
                if b < a:
                    continue                    # (each enabled pair once)
                after_a = m.step(trb.state, a)
                if after_b is None or after_a is None:
                    bad.append((s, a, b, f"{tra.label} / {trb.label}: one disables the other"))
                    continue
                if not same_state(after_b.state, after_a.state, s.next_token):
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
