"""mm/ksm.c: ksmd merging two identical anonymous pages into one KSM page.

try_to_merge_two_pages() -> try_to_merge_one_page() for each page:
lock_page; write_protect_page() under the PT lock (refuses pages with
references beyond mappings + swap cache + the scan's own follow_page()
reference: ``mapcount + 1 + swapped != page_count``; 5.19+ also page_try_share_anon_rmap()); the first page becomes
the KSM (stable) page; replace_page() points the second mapping at it.
A page of a PTE-mapped large folio (a split THP, an mTHP) is split off
first (split_folio() under the page lock; a pinned folio cannot be split and
is not merged), as try_to_merge_one_page() does in every release.
KSM pages are never PageAnonExclusive and, from 5.9, never reused by
do_wp_page (reuse_ksm_page() is 5.7/5.8 only).
"""
from __future__ import annotations

from ..effects import KsmBreakCow, KsmMerge
from ..paths import step, op
from ..txn import Blocked
from .internal import enter_fault
from ..types import ZERO_PFN, PG_ksm, PG_locked, PTE_SWAP, VM_MERGEABLE
from . import huge_memory, rmap, swap as lru


def _mergeable_page(k, mm, addr) -> int | None:
    """The page ksmd's scan finds at addr (scan_get_next_rmap_item(): a
    page-table walk to a present pte): an anonymous page in a VM_MERGEABLE
    vma, or None.  A PMD-mapped THP is not scanned here (the model's KSM
    walks ptes only); a PTE-mapped large folio (a split THP, an mTHP) is,
    and try_to_merge_one_page() splits it (``_split_for_merge``)."""
    vma = k.find_vma(addr, mm)
    if vma is None or not vma.flags & VM_MERGEABLE or k.pmd(addr // k.HPAGE_PMD_NR, mm) is not None:
        return None
    pte = k.pte(addr, mm)
    if not k.is_present(pte) or pte.pfn == ZERO_PFN or not k.PageAnon(pte.pfn):
        return None
    return pte.pfn


def _split_for_merge(k, mm, addr, held):
    """try_to_merge_one_page(), the page locked by the caller: a large folio
    is split first ("if (folio_test_large(folio)) { if (split_folio(folio))
    goto out_unlock; }", PageTransCompound() + split_huge_page() before the
    folio rename; every release 5.7 .. 6.18): -> (the small folio now at
    ``addr``, the scan's reference on it), or None when the split fails (a
    reference beyond the mappings, the swap cache and ksmd's own: a pin;
    the caller gives up on the merge).  As split_huge_page() does, the page
    the caller passed keeps the lock and the caller's reference; the model's
    split_folio() leaves both on the head, so they move to the subpage.
    On failure nothing of it stays locked."""
    pfn = k.pte(addr, mm).pfn
    if not k.folio_test_large(pfn):
        return pfn, held
    if any(m.alive and m.ptl != -1 and any(p is not None and p.kind != PTE_SWAP and p.pfn == pfn for p in m.ptes)
           for m in k.mms):
        raise Blocked("page-table lock held")    # (the split's unmap_folio() takes each mapping's PT lock)
    if not huge_memory.split_folio(k, pfn):
        k.unlock_page(pfn)
        return None
    pte = k.pte(addr, mm)
    if not k.is_present(pte) or pte.pfn == ZERO_PFN:
        # the split mapped the (all-zero) subpage to the shared zero page (thp_split_zeropage, 6.12+): nothing
        # left to merge here
        if k.folios[pfn] is not None:
            k.unlock_page(pfn)
        return None
    new = pte.pfn
    if new != pfn:
        k.unlock_page(pfn)
        k.set_flag(new, PG_locked)
    return new, _scan_ref(k, held.owner)


def _scan_ref(k, owner):
    """ksmd's reference ``owner`` (``ksmd:a`` / ``ksmd:b``), wherever a split moved it."""
    return next(r for r in k.refs_held_by(owner) if r.kind == "tmp")


def _write_protect_page(k, mm, addr) -> bool:
    """write_protect_page() on the page _mergeable_page() found: False if
    it has references beyond its mappings (a pin: the design's
    ksm_may_merge()), else the pte is write-protected."""
    pte = k.pte(addr, mm)
    pfn = pte.pfn
    if k.mms[mm].ptl != -1:
        raise Blocked("page-table lock held")
    swapped = 1 if k.PageSwapCache(pfn) else 0
    if not k.design.ksm_may_merge(k, pfn, pte.idx, swapped):
        return False
    if pte.write or pte.dirty:
        k.set_pte_at(addr, pte._replace(write=False, dirty=False), mm)
    return True


@step("ksm.merge")
def try_to_merge_two_pages(k, fr, op):
    """try_to_merge_two_pages(): the scanned page (addr) is made a KSM page
    first, then the unstable tree's page (other_addr) is merged into it; if
    that fails, break_cow() un-merges the first again with a fault.

    First scan_get_next_rmap_item()'s lru_add_drain_all() (every version
    5.7 .. 6.18): ksmd drains every CPU's lru_add batch when it starts a full
    scan, so a page is never refused for a batch's reference.  (A page is
    merged only when its checksum did not change since the previous scan,
    so it was faulted in before the scan this drain starts.)"""
    lru.lru_add_drain_all(k)
    a_mm, a = k.mm, op["addr"]
    b_mm, b = op["mm_id"], op.get("other_addr", op["addr"])
    p1, p2 = _mergeable_page(k, a_mm, a), _mergeable_page(k, b_mm, b)
    if p1 is None or p2 is None or p1 == p2 or \
            k.folio(p1).data[k.pte(a, a_mm).idx] != k.folio(p2).data[k.pte(b, b_mm).idx]:
        return None           # nothing the unstable tree would pair up
    # the scan's follow_page(FOLL_GET) of each page: write_protect_page()'s "+ 1" is this reference (taken on
    # the subpage the pte maps, so that a split leaves it there)
    held = [k.add_ref("tmp", p1, k.pte(a, a_mm).idx, owner="ksmd:a"),
            k.add_ref("tmp", p2, k.pte(b, b_mm).idx, owner="ksmd:b")]

    def put_pages():
        for r in held:
            k.drop_ref(r)

    if not k.trylock_page(p1):
        put_pages()
        return None
    if k.folio_test_large(p1):
        got = _split_for_merge(k, a_mm, a, held[0])
        if got is None:
            held = [_scan_ref(k, "ksmd:a"), _scan_ref(k, "ksmd:b")]
            put_pages()
            return None
        p1, held[0] = got
        held[1] = _scan_ref(k, "ksmd:b")
        p2 = k.pte(b, b_mm).pfn
    if not _write_protect_page(k, a_mm, a):
        k.unlock_page(p1)
        put_pages()
        return None
    i1 = k.pte(a, a_mm).idx
    b_ok = True
    if k.folio_test_large(p2):
        # try_to_merge_one_page() of the tree page: locked and split as well; a failure (locked elsewhere, or
        # a reference the split cannot account for) fails this merge like write_protect_page()'s refusal
        b_ok = k.trylock_page(p2)
        if b_ok:
            got = _split_for_merge(k, b_mm, b, held[1])
            b_ok = got is not None
            if b_ok:
                p2 = got[0]
                k.unlock_page(p2)
            held[1] = _scan_ref(k, "ksmd:b")
    if not b_ok or not _write_protect_page(k, b_mm, b):
        put_pages()
        # the first page is a KSM page by now (set_page_stable_node()); break_cow() takes it back by a
        # fault: FAULT_FLAG_WRITE, or FAULT_FLAG_UNSHARE from 6cce3314b928 (6.1)
        k.set_flag(p1, PG_ksm)
        if k.design.anon_exclusive:
            k.ClearPageAnonExclusive(p1, i1)
        k.unlock_page(p1)
        k.effect(KsmBreakCow(a_mm, a, p1))
        unshare = k.design.break_ksm_unshare
        return enter_fault(fr, a, write=not unshare, unshare=unshare, then="ksm.done", mm_locked=False)
    # p1 becomes the stable (KSM) page
    k.set_flag(p1, PG_ksm)
    if k.design.anon_exclusive:
        k.ClearPageAnonExclusive(p1, i1)
    # replace_page(): b's pte now maps the KSM page R/O
    old = k.pte(b, b_mm)
    k.add_ref("tmp", p1)
    k.ref_to_mapping(p1)
    rmap.page_dup_rmap(k, p1, i1)
    k.set_pte_at(b, k.mk_pte(p1, i1, write=False), b_mm)
    rmap.page_remove_rmap(k, p2, old.idx)
    k.put_page(p2)
    k.unlock_page(p1)
    put_pages()
    k.effect(KsmMerge(a_mm, a, b_mm, b, p1))
    return None


@step("ksm.done")
def ksm_done(k, fr, op):
    """break_cow() returns: ksmd goes on scanning."""
    return None


def reuse_ksm_page(k, pfn: int) -> bool:
    """reuse_ksm_page() (5.7/5.8 only; removed with 09854ba94c6a): a KSM page
    mapped once and not in the swap cache may be taken back as an ordinary
    anon page (page_ref_freeze(page, 1))."""
    if k.PageSwapCache(pfn) or k.page_count(pfn) != 1:
        return False
    k.clear_flag(pfn, PG_ksm)
    return True


op("ksm_merge", "ksm.merge", "ksmd: try_to_merge_two_pages()", ("addr", "of", "other_addr"),
   "merge this page with another process's identical page (both must hold the same value)")
