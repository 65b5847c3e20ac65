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
    """Every invariant above on the whole state ``s``: the bugs, in a fixed
    order (page tables of each mm in order, references, folios, swap slots).
    ``pending_fork``: (pfn, idx) shares a fork has dup'ed and not yet mapped;
    ``slot_adjust``/``ref_adjust``: {slot or pfn: adjustment} of in-flight book
    updates (kernel.paths.InFlight).

    Incremental: ``consistent()`` decides from summaries of each page table and
    of the references, kept per object (a step rebuilds only the tuples it
    writes, so the others are the parent's and so are their summaries), that
    there is no bug; only when it cannot, ``check_state_full`` walks the whole
    state for the exact list."""
    if consistent(s, design, pending_fork, slot_adjust, ref_adjust):
        return []
    return check_state_full(s, design, pending_fork, slot_adjust, ref_adjust)


def check_state_full(s: State, design, pending_fork=(), slot_adjust=None, ref_adjust=None) -> list[str]:
    """check_state() by one pass over the page tables and one over the folios'
    subpages: O(entries) per state."""
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
                    # (a swap pte a swap-in has already dropped the count of -- slot_adjust -- is being replaced:
                    # its slot may already be reused, e.g. by reclaim of this folio, while the fault holds the PT lock)
                    if swapcache and f.swap[i] >= 0 and mms and \
                            swapptes.get(f.swap[i], 0) + slot_adjust.get(f.swap[i], 0) > 0:
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


# ----------------------------------------------------------------------------- the incremental decision

class _MmSummary:
    """What one mm's page tables say, for ``consistent()``: per mapped pfn the
    ptes mapping each subpage (a count vector), the subpages mapped (a bit
    mask) and writable; swap ptes per slot; migration entries' pfns; the PMD
    leaves; whether an entry lies outside every vma with an anon_vma."""
    __slots__ = ("keep", "bad", "vec", "mask", "tot", "wr", "swp", "migr", "pmds")

    def __init__(self, m):
        self.keep = (m.ptes, m.pmds, m.vmas)         # (holding them keeps their ids from being reused)
        anon = _anon_addrs(m.vmas)
        bad = False
        cnt, wr, swp, migr = {}, {}, {}, set()
        for a, p in enumerate(m.ptes):
            if p is None:
                continue
            kind, pfn = p.kind, p.pfn
            if kind == PTE_PRESENT:
                if pfn == ZERO_PFN:
                    continue
                if a not in anon:
                    bad = True
                c = cnt.get(pfn)
                if c is None:
                    c = cnt[pfn] = []
                i = p.idx
                if i >= len(c):
                    c.extend([0] * (i + 1 - len(c)))
                c[i] += 1
                if p.write:
                    wr[pfn] = wr.get(pfn, 0) | (1 << i)
            else:
                if a not in anon:
                    bad = True
                if kind == PTE_SWAP:
                    swp[pfn] = swp.get(pfn, 0) + 1
                elif kind == PTE_MIGRATION:
                    migr.add(pfn)
        self.bad = bad
        self.vec = {pfn: tuple(c) for pfn, c in cnt.items()}
        self.mask = {pfn: sum(1 << i for i, n in enumerate(c) if n) for pfn, c in cnt.items()}
        self.tot = {pfn: sum(c) for pfn, c in cnt.items()}
        self.wr, self.swp, self.migr = wr, swp, migr
        self.pmds = tuple((h, pmd.pfn, pmd.write) for h, pmd in enumerate(m.pmds) if pmd is not None)


class _RefSummary:
    __slots__ = ("keep", "units", "pins")

    def __init__(self, refs):
        self.keep = refs
        units, pins = {}, {}
        for r in refs:
            units[r.pfn] = units.get(r.pfn, 0) + r.units
            if r.gup_flags & FOLL_PIN:
                pins[r.pfn] = pins.get(r.pfn, 0) + 1
        self.units, self.pins = units, pins


#: id(object) -> its summary (which holds the object): page tables, references, exclusive-bit tuples
_MM_SUMMARIES: dict = {}
_REF_SUMMARIES: dict = {}
_EX_MASKS: dict = {}
_ZEROS: dict = {}


def _mm_summary(m) -> _MmSummary:
    key = (id(m.ptes), id(m.pmds), id(m.vmas))
    hit = _MM_SUMMARIES.get(key)
    if hit is None:
        if len(_MM_SUMMARIES) > 512:
            _MM_SUMMARIES.clear()
        hit = _MM_SUMMARIES[key] = _MmSummary(m)
    return hit


def _ref_summary(refs) -> _RefSummary:
    hit = _REF_SUMMARIES.get(id(refs))
    if hit is None or hit.keep is not refs:
        if len(_REF_SUMMARIES) > 512:
            _REF_SUMMARIES.clear()
        hit = _REF_SUMMARIES[id(refs)] = _RefSummary(refs)
    return hit


def _ex_mask(ex: tuple) -> int:
    """PG_anon_exclusive of every subpage as a bit mask."""
    hit = _EX_MASKS.get(id(ex))
    if hit is None or hit[0] is not ex:
        if len(_EX_MASKS) > 512:
            _EX_MASKS.clear()
        hit = _EX_MASKS[id(ex)] = (ex, sum(1 << i for i, x in enumerate(ex) if x))
    return hit[1]


def _zeros(n: int) -> tuple:
    z = _ZEROS.get(n)
    if z is None:
        z = _ZEROS[n] = (0,) * n
    return z


def consistent(s: State, design, pending_fork=(), slot_adjust=None, ref_adjust=None) -> bool:
    """True only if ``check_state_full`` finds no bug in ``s`` (False when it
    may find one: then the caller asks it).  From the summaries of each page
    table and of the references: O(folios + swap slots + subpages of the
    folios whose books changed) per state, not O(ptes)."""
    folios = s.folios
    nf = len(folios)
    anon_exclusive = design.anon_exclusive
    vecs = {}           # pfn -> [count vectors of the mms mapping it by pte]
    tots = {}           # pfn -> ptes mapping it
    maps = {}           # pfn -> {mm: subpage mask} (ptes and PMDs)
    entire = {}
    swapptes = None
    shared_swp = True   # swapptes is one summary's own dict (not to be written)
    for mm, m in enumerate(s.mms):
        S = _mm_summary(m)
        if S.bad:
            return False
        unlocked = m.ptl == -1
        for pfn, vec in S.vec.items():
            f = folios[pfn] if pfn < nf else None
            if f is None or len(vec) > len(f.data):
                return False
            if anon_exclusive and unlocked:
                w = S.wr.get(pfn)
                if w and (not f.anon_exclusive[0] if w == 1 else w & ~_ex_mask(f.anon_exclusive)):
                    return False        # I1
            lst = vecs.get(pfn)
            if lst is None:
                vecs[pfn] = [vec]
                tots[pfn] = S.tot[pfn]
                maps[pfn] = {mm: S.mask[pfn]}
            else:
                lst.append(vec)
                tots[pfn] += S.tot[pfn]
                maps[pfn][mm] = S.mask[pfn]
        for pfn in S.migr:
            if pfn >= nf or folios[pfn] is None:
                return False
        if S.pmds:
            anon = _anon_addrs(m.vmas)
            for h, pfn, write in S.pmds:
                f = folios[pfn] if pfn < nf else None
                if f is None:
                    return False
                if f.flags & PG_huge_zero:
                    if write:
                        return False
                    continue
                entire[pfn] = entire.get(pfn, 0) + 1
                nr = len(f.data)
                mp = maps.setdefault(pfn, {})
                mp[mm] = mp.get(mm, 0) | ((1 << nr) - 1)
                if h * nr not in anon:
                    return False
                if anon_exclusive and write and not f.anon_exclusive[0] and unlocked:
                    return False
        if S.swp:
            if swapptes is None:
                swapptes = S.swp
            else:
                if shared_swp:
                    swapptes = dict(swapptes)
                    shared_swp = False
                for sl, n in S.swp.items():
                    swapptes[sl] = swapptes.get(sl, 0) + n
    if swapptes is None:
        swapptes = {}
    pend = {}
    for pfn, idx in pending_fork:
        pend.setdefault(pfn, {})
        pend[pfn][idx] = pend[pfn].get(idx, 0) + 1
    R = _ref_summary(s.refs)
    for pfn in R.units:
        if pfn >= nf or folios[pfn] is None:
            return False
    ref_adjust = ref_adjust or {}
    slot_adjust = slot_adjust or {}
    swap = s.swap
    nslots = len(swap)
    for pfn, f in enumerate(folios):
        if f is None or pfn == ZERO_PFN or f.flags & PG_huge_zero:
            continue
        nr = len(f.data)
        lst = vecs.get(pfn)
        pp = pend.get(pfn)
        if lst is None and pp is None:
            if f.mapcount != _zeros(nr):
                return False
            mc = 0
        else:
            if lst is None:
                want = [0] * nr
            elif len(lst) == 1:
                v = lst[0]
                want = v + _zeros(nr - len(v)) if len(v) < nr else v
            else:
                want = [0] * nr
                for v in lst:
                    for i, n in enumerate(v):
                        want[i] += n
            mc = tots.get(pfn, 0)
            if pp is not None:
                want = list(want)
                for i, n in pp.items():
                    if i >= nr:
                        return False
                    want[i] += n
            if f.mapcount != tuple(want):
                return False
        ent = entire.get(pfn, 0)
        if f.entire_mapcount != ent:
            return False
        flags = f.flags
        swapcache = flags & PG_swapcache
        sw = f.swap
        if swapcache:
            nswap = 0
            for sl in sw:
                if sl >= 0:
                    nswap += 1
                    if sl >= nslots or swap[sl] is None or swap[sl].cache != pfn:
                        return False
        else:
            nswap = 0
        if f.refcount != mc + ent + nswap + R.units.get(pfn, 0) + ref_adjust.get(pfn, 0):
            return False
        if flags & (PG_large | PG_hugetlb) and f.pincount != R.pins.get(pfn, 0):
            return False
        if anon_exclusive:
            ex = f.anon_exclusive
            if not any(ex):
                continue
            if flags & PG_ksm:
                return False        # I4
            exm = 1 if nr == 1 else _ex_mask(ex)
            mp = maps.get(pfn)
            if not mp:
                continue
            if len(mp) > 1:
                acc = multi = 0
                for mk in mp.values():
                    multi |= acc & mk
                    acc |= mk
                if multi & exm:
                    return False
            else:
                acc = next(iter(mp.values()))
            if swapcache and swapptes:
                for i, sl in enumerate(sw):
                    if sl >= 0 and (exm >> i) & 1 and (acc >> i) & 1 and swapptes.get(sl, 0):
                        return False
    for sl, slot in enumerate(swap):
        if slot is None:
            continue
        n = swapptes.get(sl, 0)
        if slot.count != n + slot_adjust.get(sl, 0):
            return False
        c = slot.cache
        if c >= 0 and (c >= nf or folios[c] is None or not folios[c].flags & PG_swapcache):
            return False
        if slot.count == 0 and c == -1 and not n:
            return False
    return True


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
