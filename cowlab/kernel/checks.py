"""Model-internal invariants: accounting that the kernel keeps and that a
model path (or a design hook) can get wrong.  A violation is a *model bug*,
reported apart from the oracle's verdicts.

* refcount = mappings + swap cache + recorded holders (+ pins exactly: bias
  on small folios, _pincount on large ones);
* mapcount of each subpage = ptes mapping it (+ a fork share between its two
  steps); entire mapcount = PMD/hugetlb mappings;
* swap_map count = swap ptes; SWAP_HAS_CACHE <-> PG_swapcache;
* no entry points to a freed folio; a thread ends an operation holding no
  PT lock and no temporary reference;
* with PG_anon_exclusive (5.19+): a writable pte maps an exclusive page
  (I1, outside PT-locked sections: fork clears the flag before it
  write-protects the pte); an exclusive page is mapped by one mm only and no other mm has a swap
  entry for it; FOLL_PIN only on exclusive anon pages (I2); KSM pages are
  never exclusive (I4);
* an anonymous page, swap entry or migration entry lies in a vma with an
  anon_vma (anon_vma_prepare() precedes every anonymous page a fault maps;
  fork copies no entry of a vma without one).
"""
from __future__ import annotations

from .effects import Pin
from .types import (FOLL_PIN, PG_huge_zero, PG_hugetlb, PG_ksm, PG_large, PG_swapcache, PTE_PRESENT, PTE_SWAP,
                    PTE_MIGRATION, ZERO_PFN, State)


def check_state(s: State, design, pending_fork=(), slot_adjust=None, ref_adjust=None) -> list[str]:
    """Every invariant above on the whole state ``s`` (the bugs in a fixed
    order: page tables of each mm in order, references, folios, swap slots).
    ``pending_fork``: (pfn, idx) shares a fork has dup'ed and not yet mapped;
    ``slot_adjust``/``ref_adjust``: {slot or pfn: adjustment} of in-flight book
    updates (kernel.paths.InFlight).  One pass over the page tables and one
    over the folios' subpages: O(entries) per state."""
    bugs = []
    folios = s.folios
    nf = len(folios)
    anon_exclusive = design.anon_exclusive
    mapc = {}
    entire = {}
    swapptes = {}
    mappers = {}        # (pfn, idx) -> the mms whose ptes map it; (pfn, -1): the mms whose PMDs map it
    for mm, m in enumerate(s.mms):
        anon = _anon_addrs(m.vmas)
        unlocked = m.ptl == -1
        for a, p in enumerate(m.ptes):
            if p is None:
                continue
            kind, pfn = p.kind, p.pfn
            if (kind != PTE_PRESENT or pfn != ZERO_PFN) and a not in anon:
                bugs.append(f"mm{mm} pte {a} maps an anonymous page or entry in a vma without an anon_vma")
            if kind == PTE_PRESENT and pfn != ZERO_PFN:
                f = folios[pfn] if pfn < nf else None
                if f is None:
                    bugs.append(f"mm{mm} pte {a} maps freed pfn {pfn}")
                    continue
                key = (pfn, p.idx)
                mapc[key] = mapc.get(key, 0) + 1
                if anon_exclusive:          # (mappers: only the PG_anon_exclusive checks ask)
                    ms = mappers.get(key)
                    if ms is None:
                        mappers[key] = {mm}
                    else:
                        ms.add(mm)
                    if p.write and unlocked and not f.anon_exclusive[p.idx]:
                        bugs.append(f"I1: mm{mm} pte {a} is writable but pfn {pfn}/{p.idx} is not PageAnonExclusive")
            elif kind == PTE_SWAP:
                swapptes[pfn] = swapptes.get(pfn, 0) + 1
            elif kind == PTE_MIGRATION:
                if pfn >= nf or folios[pfn] is None:
                    bugs.append(f"mm{mm} migration entry {a} of freed pfn {pfn}")
        for h, pmd in enumerate(m.pmds):
            if pmd is None:
                continue
            if pmd.pfn >= nf or folios[pmd.pfn] is None:
                bugs.append(f"mm{mm} pmd {h} maps freed pfn {pmd.pfn}")
                continue
            if folios[pmd.pfn].flags & PG_huge_zero:
                if pmd.write:
                    bugs.append(f"mm{mm} pmd {h} maps the huge zero folio writable")
                continue        # (the huge zero folio is not mapcounted: a global reference keeps it)
            entire[pmd.pfn] = entire.get(pmd.pfn, 0) + 1
            mappers.setdefault((pmd.pfn, -1), set()).add(mm)
            if h * len(folios[pmd.pfn].data) not in anon:
                bugs.append(f"mm{mm} pmd {h} maps a huge page in a vma without an anon_vma")
            if anon_exclusive and pmd.write and not folios[pmd.pfn].anon_exclusive[0] and unlocked:
                bugs.append(f"I1: mm{mm} pmd {h} is writable but pfn {pmd.pfn} is not PageAnonExclusive")
    pend = {}
    for pfn, idx in pending_fork:
        # a fork share between its two steps: mapcount dup'ed, the pte not yet set
        # (the fork's temporary reference stands for the child's mapping)
        pend[(pfn, idx)] = pend.get((pfn, idx), 0) + 1
    refunits = {}
    pins = {}
    for r in s.refs:
        if r.pfn >= nf or folios[r.pfn] is None:
            bugs.append(f"{r.kind} reference ({r.owner}) to freed pfn {r.pfn}")
            continue
        refunits[r.pfn] = refunits.get(r.pfn, 0) + r.units
        if r.gup_flags & FOLL_PIN:
            pins[r.pfn] = pins.get(r.pfn, 0) + 1
    ref_adjust = ref_adjust or {}
    slot_adjust = slot_adjust or {}
    swap = s.swap
    for pfn, f in enumerate(folios):
        if f is None or pfn == ZERO_PFN or f.flags & PG_huge_zero:
            continue
        nr = len(f.data)
        mcount = f.mapcount
        mc = 0
        for i in range(nr):
            n = mapc.get((pfn, i), 0)
            mc += n
            want = n + pend.get((pfn, i), 0) if pend else n
            if mcount[i] != want:
                bugs.append(f"pfn {pfn}/{i}: mapcount {mcount[i]} but {want} ptes map it")
        ent = entire.get(pfn, 0)
        if f.entire_mapcount != ent:
            bugs.append(f"pfn {pfn}: entire mapcount {f.entire_mapcount} but {ent} PMDs map it")
        swapcache = f.flags & PG_swapcache
        nswap = sum(1 for sl in f.swap if sl >= 0) if swapcache else 0
        expect = mc + ent + nswap + refunits.get(pfn, 0) + ref_adjust.get(pfn, 0)
        if f.refcount != expect:
            bugs.append(f"pfn {pfn}: refcount {f.refcount} but mappings {mc + ent} + swap cache "
                        f"{nswap} + references {refunits.get(pfn, 0)} = {expect}")
        if f.flags & (PG_large | PG_hugetlb) and f.pincount != pins.get(pfn, 0):
            bugs.append(f"pfn {pfn}: _pincount {f.pincount} but {pins.get(pfn, 0)} pins")
        if swapcache:
            for sl in f.swap:
                if sl >= 0 and (sl >= len(swap) or swap[sl] is None or swap[sl].cache != pfn):
                    bugs.append(f"pfn {pfn} in swap cache for slot {sl}, which does not point back")
        if anon_exclusive:
            ex = f.anon_exclusive
            if f.flags & PG_ksm and any(ex):
                bugs.append(f"I4: KSM pfn {pfn} is PageAnonExclusive")
            if any(ex):
                pmd_mms = mappers.get((pfn, -1), _NONE)
                for i in range(nr):
                    if not ex[i]:
                        continue
                    mms = mappers.get((pfn, i), _NONE) | pmd_mms
                    if len(mms) > 1:
                        bugs.append(f"pfn {pfn}/{i} is PageAnonExclusive but mapped by {len(mms)} processes")
                    if swapcache and f.swap[i] >= 0 and swapptes.get(f.swap[i], 0) and mms:
                        bugs.append(f"pfn {pfn}/{i} is PageAnonExclusive but other swap ptes reference its slot")
    for sl, slot in enumerate(swap):
        if slot is None:
            continue
        want = swapptes.get(sl, 0) + slot_adjust.get(sl, 0)
        if slot.count != want:
            bugs.append(f"swap slot {sl}: count {slot.count} but {want} swap ptes")
        if slot.cache >= 0 and (slot.cache >= nf or folios[slot.cache] is None
                                or not folios[slot.cache].flags & PG_swapcache):
            bugs.append(f"swap slot {sl}: cached pfn {slot.cache} is not in the swap cache")
        if slot.count == 0 and slot.cache == -1 and not swapptes.get(sl, 0):
            bugs.append(f"swap slot {sl} is referenced by nothing but was not freed")
    return bugs


_NONE = frozenset()


def _in_anon_vma(m, addr: int) -> bool:
    """The vma at ``addr`` has an anon_vma (anon_vma_prepare() precedes every anonymous page a fault maps; fork
    copies no entry of a vma without one: vma_needs_copy())."""
    return any(v.start <= addr < v.end and v.anon_vma for v in m.vmas)


#: vmas tuple -> the addresses its vmas with an anon_vma cover (``_in_anon_vma`` for every address at once)
_ANON_ADDRS: dict = {}


def _anon_addrs(vmas: tuple) -> frozenset:
    hit = _ANON_ADDRS.get(vmas)
    if hit is None:
        hit = frozenset(a for v in vmas if v.anon_vma for a in range(v.start, v.end))
        if len(_ANON_ADDRS) > 4096:
            _ANON_ADDRS.clear()
        _ANON_ADDRS[vmas] = hit
    return hit


def check_pin(s: State, design, e: Pin) -> list[str]:
    """I2 (mm/gup: sanity-check ... that anonymous pages are exclusive when (un)pinning)."""
    mm, addr, pfn, idx = e.mm, e.addr, e.pfn, e.idx
    f = s.folios[pfn]
    if design.anon_exclusive and f is not None and not f.anon_exclusive[idx]:
        return [f"I2: FOLL_PIN taken on pfn {pfn}/{idx} (mm{mm} page {addr}) which is not PageAnonExclusive"]
    return []


def check_thread_end(s: State, tid: int) -> list[str]:
    bugs = []
    for mm, m in enumerate(s.mms):
        if m.ptl == tid:
            bugs.append(f"thread {tid} finished an operation holding mm{mm}'s page-table lock")
    for r in s.refs:
        if r.kind in ("tmp", "gup_fast") and r.owner == f"t{tid}":
            bugs.append(f"thread {tid} finished an operation holding a {r.kind} reference on pfn {r.pfn}")
    return bugs
