"""check_state() (kernel/checks.py) against the invariants' plain definition.

check_state is written for speed (one pass over the page tables, one over the
folios' subpages, anon_vma coverage looked up per vma set); ``reference`` below
is its earlier, straightforward whole-state form (cowlab at 5fb6f2a), kept here
as the definition.  Both must give the same bugs, in the same order, on every
state the catalog's searches reach and on the same states broken at random
(a refcount, a mapcount, PG_anon_exclusive, a swap count, a freed folio, a
writable pte), so that the fast form detects every bug the definition does;
and its incremental decision (``consistent``) must say "no bug" exactly
where the definition finds none.
"""
from __future__ import annotations

import random

import pytest

from cowlab import catalog, designs
from cowlab.catalog import cow_c
from cowlab.kernel.checks import check_state, consistent
from cowlab.kernel.types import (FOLL_PIN, PG_huge_zero, PG_hugetlb, PG_ksm, PG_large, PG_swapcache, PTE_MIGRATION,
                                 PTE_PRESENT, PTE_SWAP, ZERO_PFN, State)
from cowlab.model import CowModel


def _in_anon_vma(m, addr: int) -> bool:
    return any(v.start <= addr < v.end and v.anon_vma for v in m.vmas)


def reference(s: State, design, pending_fork=(), slot_adjust=None, ref_adjust=None) -> list[str]:
    bugs = []
    nf = len(s.folios)
    mapc = {}
    entire = {}
    swapptes = {}
    mappers = {}        # (pfn, idx) -> the mms whose ptes map it; (pfn, -1): the mms whose PMDs map it
    for mm, m in enumerate(s.mms):
        for a, p in enumerate(m.ptes):
            if p is None:
                continue
            if (p.kind != PTE_PRESENT or p.pfn != ZERO_PFN) and not _in_anon_vma(m, a):
                bugs.append(f"mm{mm} pte {a} maps an anonymous page or entry in a vma without an anon_vma")
            if p.kind == PTE_PRESENT and p.pfn != ZERO_PFN:
                if p.pfn >= nf or s.folios[p.pfn] is None:
                    bugs.append(f"mm{mm} pte {a} maps freed pfn {p.pfn}")
                    continue
                mapc[(p.pfn, p.idx)] = mapc.get((p.pfn, p.idx), 0) + 1
                mappers.setdefault((p.pfn, p.idx), set()).add(mm)
                f = s.folios[p.pfn]
                if design.anon_exclusive and p.write and not f.anon_exclusive[p.idx] and m.ptl == -1:
                    bugs.append(f"I1: mm{mm} pte {a} is writable but pfn {p.pfn}/{p.idx} is not PageAnonExclusive")
            elif p.kind == PTE_SWAP:
                swapptes[p.pfn] = swapptes.get(p.pfn, 0) + 1
            elif p.kind == PTE_MIGRATION:
                if p.pfn >= nf or s.folios[p.pfn] is None:
                    bugs.append(f"mm{mm} migration entry {a} of freed pfn {p.pfn}")
        for h, pmd in enumerate(m.pmds):
            if pmd is None:
                continue
            if pmd.pfn >= nf or s.folios[pmd.pfn] is None:
                bugs.append(f"mm{mm} pmd {h} maps freed pfn {pmd.pfn}")
                continue
            if s.folios[pmd.pfn].flags & PG_huge_zero:
                if pmd.write:
                    bugs.append(f"mm{mm} pmd {h} maps the huge zero folio writable")
                continue        # (the huge zero folio is not mapcounted: a global reference keeps it)
            entire[pmd.pfn] = entire.get(pmd.pfn, 0) + 1
            mappers.setdefault((pmd.pfn, -1), set()).add(mm)
            if not _in_anon_vma(m, h * len(s.folios[pmd.pfn].data)):
                bugs.append(f"mm{mm} pmd {h} maps a huge page in a vma without an anon_vma")
            if design.anon_exclusive and pmd.write and not s.folios[pmd.pfn].anon_exclusive[0] and m.ptl == -1:
                bugs.append(f"I1: mm{mm} pmd {h} is writable but pfn {pmd.pfn} is not PageAnonExclusive")
    pend = {}
    for pfn, idx in pending_fork:
        # a fork share between its two steps: mapcount dup'ed, the pte not yet set
        # (the fork's temporary reference stands for the child's mapping)
        pend[(pfn, idx)] = pend.get((pfn, idx), 0) + 1
    refunits = {}
    pins = {}
    for r in s.refs:
        if r.pfn >= nf or s.folios[r.pfn] is None:
            bugs.append(f"{r.kind} reference ({r.owner}) to freed pfn {r.pfn}")
            continue
        refunits[r.pfn] = refunits.get(r.pfn, 0) + r.units
        if r.gup_flags & FOLL_PIN:
            pins[r.pfn] = pins.get(r.pfn, 0) + 1
    for pfn, f in enumerate(s.folios):
        if f is None or pfn == ZERO_PFN or f.flags & PG_huge_zero:
            continue
        mc = sum(mapc.get((pfn, i), 0) for i in range(f.nr))
        for i in range(f.nr):
            want = mapc.get((pfn, i), 0) + pend.get((pfn, i), 0)
            if f.mapcount[i] != want:
                bugs.append(f"pfn {pfn}/{i}: mapcount {f.mapcount[i]} but {want} ptes map it")
        if f.entire_mapcount != entire.get(pfn, 0):
            bugs.append(f"pfn {pfn}: entire mapcount {f.entire_mapcount} but {entire.get(pfn, 0)} PMDs map it")
        nswap = sum(1 for sl in f.swap if sl >= 0) if f.flags & PG_swapcache else 0
        expect = mc + entire.get(pfn, 0) + nswap + refunits.get(pfn, 0) + (ref_adjust or {}).get(pfn, 0)
        if f.refcount != expect:
            bugs.append(f"pfn {pfn}: refcount {f.refcount} but mappings {mc + entire.get(pfn, 0)} + swap cache "
                        f"{nswap} + references {refunits.get(pfn, 0)} = {expect}")
        if f.flags & (PG_large | PG_hugetlb) and f.pincount != pins.get(pfn, 0):
            bugs.append(f"pfn {pfn}: _pincount {f.pincount} but {pins.get(pfn, 0)} pins")
        if f.flags & PG_swapcache:
            for sl in f.swap:
                if sl >= 0 and (sl >= len(s.swap) or s.swap[sl] is None or s.swap[sl].cache != pfn):
                    bugs.append(f"pfn {pfn} in swap cache for slot {sl}, which does not point back")
        if design.anon_exclusive:
            if f.flags & PG_ksm and any(f.anon_exclusive):
                bugs.append(f"I4: KSM pfn {pfn} is PageAnonExclusive")
            for i in range(f.nr):
                if not f.anon_exclusive[i]:
                    continue
                mms = mappers.get((pfn, i), set()) | mappers.get((pfn, -1), set())
                if len(mms) > 1:
                    bugs.append(f"pfn {pfn}/{i} is PageAnonExclusive but mapped by {len(mms)} processes")
                if f.flags & PG_swapcache and f.swap[i] >= 0 and swapptes.get(f.swap[i], 0) and mms:
                    bugs.append(f"pfn {pfn}/{i} is PageAnonExclusive but other swap ptes reference its slot")
    for sl, slot in enumerate(s.swap):
        if slot is None:
            continue
        want = swapptes.get(sl, 0) + (slot_adjust or {}).get(sl, 0)
        if slot.count != want:
            bugs.append(f"swap slot {sl}: count {slot.count} but {want} swap ptes")
        if slot.cache >= 0 and (slot.cache >= nf or s.folios[slot.cache] is None
                                or not s.folios[slot.cache].flags & PG_swapcache):
            bugs.append(f"swap slot {sl}: cached pfn {slot.cache} is not in the swap cache")
        if slot.count == 0 and slot.cache == -1 and not swapptes.get(sl, 0):
            bugs.append(f"swap slot {sl} is referenced by nothing but was not freed")
    return bugs



def _states(case, design, limit):
    """Up to ``limit`` states of a breadth-first walk of the case, with their in-flight books."""
    m = CowModel(case, designs.load(design))
    s0 = m.init_state()
    seen, order = {s0}, [s0]
    i = 0
    while i < len(order) and len(order) < limit:
        s = order[i]
        i += 1
        for tid in range(m.nthreads):
            tr = m.step(s, tid)
            if tr is not None and tr.state not in seen:
                seen.add(tr.state)
                order.append(tr.state)
    return m, order


def _both(m, s):
    fl = m._in_flight(s)
    args = (s, m.design, fl.shares, dict(fl.slots), dict(fl.refs))
    ref = reference(*args)
    # the incremental decision says "no bug" exactly when the definition finds none (on these states)
    assert consistent(*args) == (not ref), s
    return check_state(*args), ref


def _break(rng, s: State) -> State:
    """``s`` with one piece of its books broken at random."""
    folios = list(s.folios)
    live = [i for i, f in enumerate(folios) if f is not None and i != ZERO_PFN]
    what = rng.randrange(7)
    if what == 0 and live:
        i = rng.choice(live)
        folios[i] = folios[i]._replace(refcount=folios[i].refcount + rng.choice((-1, 1)))
    elif what == 1 and live:
        i = rng.choice(live)
        f = folios[i]
        j = rng.randrange(f.nr)
        folios[i] = f._replace(mapcount=f.mapcount[:j] + (f.mapcount[j] + rng.choice((-1, 1)),) + f.mapcount[j + 1:])
    elif what == 2 and live:
        i = rng.choice(live)
        f = folios[i]
        j = rng.randrange(f.nr)
        ex = f.anon_exclusive
        folios[i] = f._replace(anon_exclusive=ex[:j] + (not ex[j],) + ex[j + 1:])
    elif what == 3 and live:
        i = rng.choice(live)
        folios[i] = folios[i]._replace(flags=folios[i].flags ^ rng.choice((PG_ksm, PG_swapcache, PG_large)))
    elif what == 4 and live:
        folios[rng.choice(live)] = None
    elif what == 5 and any(s.swap):
        swap = list(s.swap)
        i = rng.choice([i for i, x in enumerate(swap) if x is not None])
        swap[i] = swap[i]._replace(count=swap[i].count + rng.choice((-1, 1)))
        return s._replace(swap=tuple(swap))
    else:
        mms = list(s.mms)
        k = rng.randrange(len(mms))
        ptes = list(mms[k].ptes)
        at = [a for a, p in enumerate(ptes) if p is not None and p.kind == PTE_PRESENT]
        if not at:
            return s
        a = rng.choice(at)
        ptes[a] = ptes[a]._replace(write=not ptes[a].write)
        mms[k] = mms[k]._replace(ptes=tuple(ptes))
        return s._replace(mms=tuple(mms))
    return s._replace(folios=tuple(folios))


CASES = [c.id for c in catalog.all_cases() if "race" in c.tags][:6] + [
    "basic-cow-fork-pte-thp", "basic-cow-fork-thp-swap", "vmsplice-after-fork"]


@pytest.mark.parametrize("design", ["linux-5.9", "linux-6.18"])
def test_check_state_equals_its_definition_on_reached_and_broken_states(design):
    rng = random.Random(14)
    reached = broken = with_bugs = 0
    for cid in CASES:
        m, states = _states(catalog.get(cid), design, 400)
        for s in states:
            fast, ref = _both(m, s)
            assert fast == ref, (cid, s)
            reached += 1
            b = _break(rng, s)
            fast, ref = _both(m, b)
            assert fast == ref, (cid, b)
            broken += 1
            with_bugs += bool(ref)
    assert reached > 1000
    # the broken states do break the books (else the comparison would prove little)
    assert with_bugs > broken // 3


def test_check_state_equals_its_definition_on_large_folios():
    rng = random.Random(12)
    n = 0
    for case in cow_c.cases(["pte-thp", "thp-swap", "single-pte-thp"], nr=16)[:12]:
        m, states = _states(case, "linux-6.18", 60)
        for s in states:
            for x in (s, _break(rng, s)):
                fast, ref = _both(m, x)
                assert fast == ref, (case.id, x)
                n += 1
    assert n > 500
