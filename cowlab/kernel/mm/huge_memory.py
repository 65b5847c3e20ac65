"""mm/huge_memory.c: anonymous THP mapped by a PMD, and its split to ptes.

The model THP has ``HPAGE_PMD_NR`` subpages.  A PMD mapping counts in the
folio's entire_mapcount and holds one reference; PG_anon_exclusive of a
PMD-mapped THP is kept equal on every subpage (the kernel keeps it on the
head page and copies it to each subpage when the PMD is split).

* ``do_huge_pmd_anonymous_page``: write fault in a VM_HUGEPAGE range.
* ``do_huge_pmd_wp_page``: the design's ``huge_pmd_wp`` (5.7..5.17
  reuse_swap_page() / mapcount; 5.18 page_count; 5.19+ PageAnonExclusive
  or page_count) -> reuse the PMD, or ``__split_huge_pmd`` and COW at pte level.
* ``copy_huge_pmd`` (fork): share R/O, or (5.9+ d042035eaf5f; 5.19
  page_try_dup_anon_rmap) split a maybe-pinned THP and copy at pte level.
* ``__split_huge_pmd_locked``: PMD -> ptes, entire mapcount -> subpage mapcounts.
* GUP ``follow_trans_huge_pmd`` with 5.19's unshare; zap and mprotect split
  the PMD first when they cover part of it (the model splits on every zap).
"""
from __future__ import annotations

from ..types import HPAGE_PMD_NR, PG_hugetlb, Pmd, VM_WRITE, VM_HUGETLB, FOLL_WRITE
from ..decisions import Vmf, REUSE, SPLIT


def _set_excl_all(k, pfn, value: bool) -> None:
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(anon_exclusive=(value,) * f.nr)


def do_huge_pmd_anonymous_page(k, fr, vma) -> str:
    """do_huge_pmd_anonymous_page() -> __do_huge_pmd_anonymous_page()."""
    from .memory import fault_done
    addr = fr["fa"]
    hidx = addr // HPAGE_PMD_NR
    k.pte_lock()
    if k.pmd(hidx) is not None:
        k.pte_unlock()
        return fault_done(k, fr)
    pfn = k.alloc_folio(nr=HPAGE_PMD_NR)
    f = k.folio(pfn)
    from ..types import PG_anon
    k.folios[pfn] = f._replace(entire_mapcount=1, flags=f.flags | PG_anon)
    if k.design.anon_exclusive:
        _set_excl_all(k, pfn, True)
    # lru_cache_add() drains at once for compound pages (__pagevec_lru_add for PageCompound)
    from ..types import PG_lru
    k.set_flag(pfn, PG_lru)
    k.ref_to_mapping(pfn)
    k.set_pmd_at(hidx, Pmd(pfn, write=bool(vma.flags & VM_WRITE), dirty=True))
    k.pte_unlock()
    return fault_done(k, fr)


def huge_pmd_fault(k, fr, vma) -> str:
    """create_huge_pmd()/wp_huge_pmd(): a fault on a PMD-mapped THP."""
    from .memory import fault_done
    addr = fr["fa"]
    hidx = addr // HPAGE_PMD_NR
    k.pte_lock()
    pmd = k.pmd(hidx)
    if pmd is None:
        k.pte_unlock()
        return "fault.handle"
    if (fr["fw"] or fr["fu"]) and not pmd.write:
        unshare = fr["fu"] and not fr["fw"]
        vmf = Vmf(k.mm, addr, pmd.pfn, addr % HPAGE_PMD_NR, write=not unshare, unshare=unshare)
        d = k.design.huge_pmd_wp(k, vmf)
        if d == REUSE:
            k.effect("reuse", k.mm, addr, pmd.pfn, vmf.idx, "unshare" if unshare else "write")
            if k.design.anon_exclusive:
                _set_excl_all(k, pmd.pfn, True)
            if not unshare:
                k.set_pmd_at(hidx, pmd._replace(write=True, dirty=True))
            k.pte_unlock()
            return fault_done(k, fr)
        if d != SPLIT:
            from ..txn import ModelBug
            raise ModelBug(f"design answered {d!r} in do_huge_pmd_wp_page")
        __split_huge_pmd_locked(k, k.mm, hidx)
        k.pte_unlock()
        return "fault.handle"
    k.pte_unlock()
    return fault_done(k, fr)


def __split_huge_pmd_locked(k, mm, hidx) -> None:
    """__split_huge_pmd_locked() (PT lock held; from 5.8 also under the page
    lock, c444eb564fb1): replace the PMD by ptes of each subpage; the entire
    mapcount becomes one mapcount per subpage (and a reference each)."""
    pmd = k.pmd(hidx, mm)
    pfn = pmd.pfn
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(entire_mapcount=f.entire_mapcount - 1,
                               mapcount=tuple(m + 1 for m in f.mapcount),
                               refcount=f.refcount + f.nr - 1)
    k.set_pmd_at(hidx, None, mm)
    for i in range(f.nr):
        k.set_pte_at(hidx * HPAGE_PMD_NR + i, k.mk_pte(pfn, i, write=pmd.write, dirty=pmd.dirty), mm)
    k.effect("split_pmd", mm, hidx, pfn)


def split_for_reclaim(k, addr) -> None:
    """Reclaim of a PMD-mapped THP: the model splits the PMD mapping and
    reclaims the (now pte-mapped) large folio as one unit (THP_SWAP)."""
    k.pte_lock()
    __split_huge_pmd_locked(k, k.mm, addr // HPAGE_PMD_NR)
    k.pte_unlock()


def copy_huge(k, fr, vma, addr, child) -> str | None:
    """copy_huge_pmd() / copy_hugetlb_page_range() for the huge entry at addr
    (parent's PT lock held)."""
    if vma.flags & VM_HUGETLB:
        from . import hugetlb
        hugetlb.copy_hugetlb(k, addr, child)
        return None
    hidx = addr // HPAGE_PMD_NR
    pmd = k.pmd(hidx)
    if pmd is None:
        return None
    d = k.design.copy_huge_anon(k, k.mm, pmd.pfn)
    if d == SPLIT:
        # -EAGAIN: split the parent's PMD and copy each pte (early COW per subpage)
        __split_huge_pmd_locked(k, k.mm, hidx)
        fr["fi"] = addr
        return "fork.pte"
    f = k.folio(pmd.pfn)
    k.folios[pmd.pfn] = f._replace(entire_mapcount=f.entire_mapcount + 1, refcount=f.refcount + 1)
    npmd = pmd._replace(write=False)
    k.set_pmd_at(hidx, npmd)
    k.set_pmd_at(hidx, npmd, child)
    return None


def zap_huge(k, mm, addr) -> None:
    """zap_huge_pmd() / a partial zap: the model splits, then zaps the pte."""
    from .memory import zap_pte
    hidx = addr // HPAGE_PMD_NR
    pmd = k.pmd(hidx, mm)
    if pmd is not None and k.test(pmd.pfn, PG_hugetlb):
        # __unmap_hugepage_range(): the whole huge page goes
        k.set_pmd_at(hidx, None, mm)
        f = k.folio(pmd.pfn)
        k.folios[pmd.pfn] = f._replace(entire_mapcount=f.entire_mapcount - 1)
        k.put_page(pmd.pfn)
        for a in range(hidx * HPAGE_PMD_NR, (hidx + 1) * HPAGE_PMD_NR):
            k.effect("unmap", mm, a)
        return
    if pmd is not None:
        __split_huge_pmd_locked(k, mm, hidx)
    zap_pte(k, mm, addr)


def change_huge_pmd(k, addr, prot, start, end) -> None:
    """change_huge_pmd(): a range covering the whole PMD changes the PMD
    (write-protect; PMDs are not made writable directly before 6.2, and the
    model never does); a partial range splits it first."""
    hidx = addr // HPAGE_PMD_NR
    base = hidx * HPAGE_PMD_NR
    pmd = k.pmd(hidx)
    if start <= base and base + HPAGE_PMD_NR <= end or k.test(pmd.pfn, PG_hugetlb):
        if not prot & VM_WRITE and pmd.write:
            k.set_pmd_at(hidx, pmd._replace(write=False))
        return
    __split_huge_pmd_locked(k, k.mm, hidx)
    pte = k.pte(addr)
    if not prot & VM_WRITE and pte.write:
        k.set_pte_at(addr, pte._replace(write=False))


def follow_huge(k, fr, vma, addr, gf) -> str:
    """follow_trans_huge_pmd() / follow_hugetlb_page() under the PT lock."""
    from .memory import enter_fault
    from .gup import try_grab_page, _gup_next
    hidx = addr // HPAGE_PMD_NR
    k.pte_lock()
    pmd = k.pmd(hidx)
    write = bool(gf & FOLL_WRITE)
    if pmd is None:
        k.pte_unlock()
        return enter_fault(fr, addr, write=write, unshare=False, ret="gup.follow", mm_locked=True)
    idx = addr % HPAGE_PMD_NR
    if write and not pmd.write:
        k.pte_unlock()
        return enter_fault(fr, addr, write=True, unshare=False, ret="gup.follow", mm_locked=True)
    if not pmd.write and k.design.gup_must_unshare(k, gf, pmd.pfn, idx):
        k.pte_unlock()
        return enter_fault(fr, addr, write=False, unshare=True, ret="gup.follow", mm_locked=True)
    try_grab_page(k, fr, pmd.pfn, idx, addr, gf)
    k.pte_unlock()
    return _gup_next(k, fr)


# ------------------------------------------------------------------ split from another path
from ..paths import step, op as _op  # noqa: E402


@step("split.lock")
def split_huge_pmd_lock(k, fr, op):
    """__split_huge_pmd() (a partial mprotect/munmap/madvise of a THP in this
    process): from 5.8 (c444eb564fb1, CVE-2020-29368) the anon THP's page
    lock is taken first, so that reuse_swap_page() (which runs under it)
    never sees the mapcounts half-transferred."""
    h = op["addr"] // HPAGE_PMD_NR
    pmd = k.pmd(h)
    if pmd is None or k.test(pmd.pfn, PG_hugetlb):
        return None
    fr["split"] = (pmd.pfn, h, False)
    if k.design.thp_split_page_lock:
        k.lock_page(pmd.pfn)
        fr["split"] = (pmd.pfn, h, True)
    return "split.clear"


@step("split.clear")
def split_huge_pmd_clear(k, fr, op):
    """__split_huge_pmd_locked(), first half under the PT lock: the PMD is
    cleared and the entire mapcount dropped ..."""
    pfn, h, locked = fr["split"]
    k.pte_lock()
    pmd = k.pmd(h)
    if pmd is None or pmd.pfn != pfn:
        if locked:
            k.unlock_page(pfn)
        k.pte_unlock()
        fr.pop("split")
        return None
    fr["split"] = (pfn, h, locked, pmd.write, pmd.dirty)
    k.set_pmd_at(h, None)
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(entire_mapcount=f.entire_mapcount - 1)
    return "split.fill"


@step("split.fill")
def split_huge_pmd_fill(k, fr, op):
    """... second half: the ptes of every subpage are installed and the
    subpage mapcounts raised (one reference each); PT lock and page lock
    released.  Between the halves a lockless reader of the mapcounts (5.7's
    reuse_swap_page() on another mm's PMD) sees them too low."""
    pfn, h, locked, write, dirty = fr.pop("split")
    f = k.folio(pfn)
    k.folios[pfn] = f._replace(mapcount=tuple(m + 1 for m in f.mapcount), refcount=f.refcount + f.nr - 1)
    for i in range(f.nr):
        k.set_pte_at(h * HPAGE_PMD_NR + i, k.mk_pte(pfn, i, write=write, dirty=dirty))
    k.effect("split_pmd", k.mm, h, pfn)
    k.pte_unlock()
    if locked:
        k.unlock_page(pfn)
    return None


_op("split_pmd", "split.lock", "__split_huge_pmd() (partial mprotect/munmap of a THP)", ("addr",),
    "split the PMD mapping of the THP at addr into ptes")
