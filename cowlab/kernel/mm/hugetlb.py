"""mm/hugetlb.c: private anonymous hugetlb pages.

A hugetlb page covers ``HPAGE_PMD_NR`` (the case's geometry, ``k.HPAGE_PMD_NR``) addresses and is mapped by one huge
pte (kept in the mm's pmd table), counted in the folio's entire mapcount.
COW reuse is mapcount-based in every version (hugetlb_cow()/hugetlb_wp():
``folio_mapcount == 1 && anon``; 5.19+ first PageAnonExclusive) -- there is
no swap and a refcount rule would always copy (20240502085259.103784-3).
Fork shares R/O, or copies early for maybe-pinned pages (5.12+
4eae4efa2c29; 5.19 page_try_dup_anon_rmap).  GUP follows with 5.19's unshare.
"""
from __future__ import annotations

from ..effects import Copy, CopyPte, Reuse
from ..types import PG_hugetlb, PG_anon, Pmd, VM_WRITE
from ..decisions import Vmf, COPY
from . import rmap
from .internal import FaultFrame, fault_done


def _hidx(k, addr):
    return addr // k.HPAGE_PMD_NR


def hugetlb_fault(k, fr: FaultFrame, vma):
    """hugetlb_fault(): hugetlb_no_page() for a missing page, hugetlb_wp()
    for a write/unshare on a R/O huge pte (PT lock held throughout; the
    copy is made under it, as hugetlb_wp() does after its own unlock/relock)."""
    addr = fr.address
    h = _hidx(k, addr)
    k.pte_lock()
    pmd = k.pmd(h)
    if pmd is None:
        # hugetlb_no_page() of a private mapping: anon_vma_prepare() (vmf_anon_prepare() 6.8+)
        rmap.anon_vma_prepare(k, addr)
        pfn = k.alloc_folio(nr=k.HPAGE_PMD_NR, flags=PG_anon | PG_hugetlb)
        f = k.folio(pfn)
        k.folios[pfn] = f._replace(entire_mapcount=1,
                                   anon_exclusive=(True,) * f.nr if k.design.anon_exclusive else f.anon_exclusive)
        k.ref_to_mapping(pfn)
        w = fr.write and bool(vma.flags & VM_WRITE)
        k.set_pmd_at(h, Pmd(pfn, write=w, dirty=w))
        k.pte_unlock()
        return fault_done(k, fr)
    if not (fr.write or fr.unshare) or pmd.write:
        k.pte_unlock()
        return fault_done(k, fr)
    unshare = fr.unshare and not fr.write
    vmf = Vmf(k.mm, addr, pmd.pfn, addr % k.HPAGE_PMD_NR, write=not unshare, unshare=unshare)
    if k.design.hugetlb_wp_reuse(k, vmf):
        k.effect(Reuse(k.mm, addr, pmd.pfn, vmf.idx, "unshare" if unshare else "write"))
        if k.design.anon_exclusive:
            f = k.folio(pmd.pfn)
            k.folios[pmd.pfn] = f._replace(anon_exclusive=(True,) * f.nr)
        if not unshare:
            k.set_pmd_at(h, pmd._replace(write=True, dirty=True))
        k.pte_unlock()
        return fault_done(k, fr)
    old = pmd.pfn
    rmap.anon_vma_prepare(k, addr)      # hugetlb_wp(): anon_vma_prepare() (vmf_anon_prepare() 6.8+)
    new = _copy_huge(k, old)
    k.ref_to_mapping(new)
    k.set_pmd_at(h, Pmd(new, write=not unshare, dirty=not unshare))
    f = k.folio(old)
    k.folios[old] = f._replace(entire_mapcount=f.entire_mapcount - 1)
    k.put_page(old)
    k.effect(Copy("unshare" if unshare else "hugetlb_wp", k.mm, addr, old, addr % k.HPAGE_PMD_NR, new,
                  addr % k.HPAGE_PMD_NR))
    k.pte_unlock()
    return fault_done(k, fr)


def _copy_huge(k, old) -> int:
    """alloc_hugetlb_folio() + copy_user_large_folio(); mapped once, exclusive."""
    of = k.folio(old)
    new = k.alloc_folio(nr=of.nr, flags=PG_anon | PG_hugetlb, data=of.data)
    f = k.folio(new)
    k.folios[new] = f._replace(entire_mapcount=1,
                               anon_exclusive=(True,) * f.nr if k.design.anon_exclusive else f.anon_exclusive)
    return new


def copy_hugetlb(k, addr, child) -> None:
    """copy_hugetlb_page_range() for one huge pte (parent's PT lock held)."""
    h = _hidx(k, addr)
    pmd = k.pmd(h)
    if pmd is None:
        return
    d = k.design.copy_huge_anon(k, k.mm, pmd.pfn, hugetlb=True)
    if d == COPY:
        new = _copy_huge(k, pmd.pfn)
        k.ref_to_mapping(new)
        vma = k.find_vma(addr, child)
        w = bool(vma.flags & VM_WRITE)
        k.set_pmd_at(h, Pmd(new, write=w, dirty=w), child)
        k.effect(CopyPte(k.mm, child, h * k.HPAGE_PMD_NR, k.HPAGE_PMD_NR))
        k.effect(Copy("fork", child, addr, pmd.pfn, 0, new, 0))
        return
    f = k.folio(pmd.pfn)
    k.folios[pmd.pfn] = f._replace(entire_mapcount=f.entire_mapcount + 1, refcount=f.refcount + 1)
    npmd = pmd._replace(write=False)
    k.set_pmd_at(h, npmd)
    k.set_pmd_at(h, npmd, child)
    k.effect(CopyPte(k.mm, child, h * k.HPAGE_PMD_NR, k.HPAGE_PMD_NR))
