"""mm/rmap.c: reverse-map accounting of anonymous pages (mapcount) and the
PageAnonExclusive helpers of include/linux/rmap.h (5.19+).

Versions: 5.7 .. 6.18 (the folio_*_rmap_pte() names of 6.8+ do the same
book-keeping; the model keeps the page_* names of 5.x)."""
from __future__ import annotations

from ..txn import ModelBug
from ..types import PG_anon


def anon_vma_prepare(k, addr: int, mm: int | None = None) -> None:
    """anon_vma_prepare() (__anon_vma_prepare(); vmf_anon_prepare() of 6.8+
    around it): the vma mapping ``addr`` gets an anon_vma before its first
    anonymous page is mapped -- do_anonymous_page() for a write fault (a read
    maps the zero page and prepares none), wp_page_copy() (also when it copies
    the zero page), do_huge_pmd_anonymous_page() (before it maps the huge zero
    page too), hugetlb_no_page() / hugetlb_wp() of a private mapping.  The
    kernel takes mm->page_table_lock for it; it is one store here.  5.7 .. 6.18."""
    mm = k.mm if mm is None else mm
    vmas = k.mmv(mm).vmas
    for i, v in enumerate(vmas):
        if v.start <= addr < v.end:
            if not v.anon_vma:
                k.set_mm(mm, vmas=vmas[:i] + (v._replace(anon_vma=True),) + vmas[i + 1:])
            return
    raise ModelBug(f"anon_vma_prepare: no vma at page {addr} of mm{mm}")


def page_add_new_anon_rmap(k, pfn: int, idx: int = 0, exclusive: bool = True) -> None:
    """page_add_new_anon_rmap() (folio_add_new_anon_rmap() 6.x): first
    mapping of a fresh anon page; 5.19+ (6c287605fd56) also sets
    PG_anon_exclusive, which the model does only for designs that have it."""
    f = k.folio(pfn)
    mc = list(f.mapcount)
    mc[idx] += 1
    k.folios[pfn] = f._replace(mapcount=tuple(mc), flags=f.flags | PG_anon)
    if exclusive and k.design.anon_exclusive:
        k.SetPageAnonExclusive(pfn, idx)


def page_add_anon_rmap(k, pfn: int, idx: int = 0, exclusive: bool = False) -> None:
    """page_add_anon_rmap()/do_page_add_anon_rmap(): map an existing anon
    page (swapin, migration restore); RMAP_EXCLUSIVE sets PG_anon_exclusive (5.19+)."""
    f = k.folio(pfn)
    mc = list(f.mapcount)
    mc[idx] += 1
    k.folios[pfn] = f._replace(mapcount=tuple(mc))
    if exclusive and k.design.anon_exclusive:
        k.SetPageAnonExclusive(pfn, idx)


def page_dup_rmap(k, pfn: int, idx: int = 0) -> None:
    """page_dup_rmap() (fork): mapcount++ (the caller took the reference)."""
    f = k.folio(pfn)
    mc = list(f.mapcount)
    mc[idx] += 1
    k.folios[pfn] = f._replace(mapcount=tuple(mc))


def page_remove_rmap(k, pfn: int, idx: int = 0) -> None:
    """page_remove_rmap() (folio_remove_rmap_pte() 6.8+): mapcount--.  The
    mapping's reference is dropped separately by the caller (put_page / TLB
    gather), as in the kernel.  PG_anon_exclusive is left as is (a page no
    longer mapped is freed or stays in the swap cache, where the swp pte
    carries exclusivity)."""
    f = k.folio(pfn)
    mc = list(f.mapcount)
    mc[idx] -= 1
    if mc[idx] < 0:
        raise ModelBug(f"mapcount of pfn {pfn}/{idx} went negative")
    k.folios[pfn] = f._replace(mapcount=tuple(mc))


def page_try_dup_anon_rmap(k, pfn: int, idx: int, src_mm: int) -> int:
    """page_try_dup_anon_rmap() (5.19, 6c287605fd56; folio_try_dup_anon_rmap_pte() 6.8+):
    at fork, share an anon page with the child.  Fails with -EBUSY when the
    page is exclusive and may be pinned (the caller then copies it for the
    child); otherwise clears PG_anon_exclusive and dups the mapcount."""
    if k.PageAnonExclusive(pfn, idx):
        if k.mm_has_pinned(src_mm) and k.folio_maybe_dma_pinned(pfn):   # page_needs_cow_for_dma()
            return -16   # -EBUSY
        k.ClearPageAnonExclusive(pfn, idx)
    page_dup_rmap(k, pfn, idx)
    return 0


def page_try_share_anon_rmap(k, pfn: int, idx: int = 0) -> int:
    """page_try_share_anon_rmap() (5.19; folio_try_share_anon_rmap_pte() 6.8+):
    before a pte is replaced by a swap/migration entry or write-protected by
    KSM, mark the page "maybe shared"; fails (-EBUSY) when it may be pinned.
    The caller has cleared the pte first (synchronises with gup-fast; the
    smp_mb() of 088b8aa537c2, 6.1, is implicit in the model's sequential
    consistency)."""
    if k.folio_maybe_dma_pinned(pfn):
        return -16
    k.ClearPageAnonExclusive(pfn, idx)
    return 0
