"""mm/migrate.c: migrating one anon page (compaction, NUMA, move_pages()).

Steps: ``migrate.isolate`` (lru_add_drain_all(), isolate_lru_page() +1),
``migrate.lock`` (lock_page), ``migrate.unmap`` (try_to_migrate(): each pte
becomes a migration entry; 5.19+ the entry records exclusivity and pinned
pages are refused), ``migrate.move`` (folio_migrate_mapping(): freeze the
refcount at 1 (+ swap cache); any other reference -- GUP, speculative --
makes it fail and the ptes are restored; else copy to a new page and
remove_migration_ptes() maps it).
"""
from __future__ import annotations

from ..effects import Migrate, MigrateFailed
from typing import NamedTuple

from ..paths import step, op, Goto, Pfn
from ..txn import Blocked
from ..types import ZERO_PFN, PG_locked, PG_lru, PG_swapcache, PTE_MIGRATION, SWP_MIGRATION_WRITE
from . import rmap, swap as lru


class MigrateFrame(NamedTuple):
    """migrate_pages()'s locals: the isolated source folio."""
    page: Pfn


@step("migrate.isolate")
def migrate_isolate(k, fr, op):
    lru.lru_add_drain_all(k)
    pte = k.pte(op["addr"])
    if not k.is_present(pte) or pte.pfn == ZERO_PFN or not k.PageLRU(pte.pfn) or k.PageKsm(pte.pfn):
        return None
    k.clear_flag(pte.pfn, PG_lru)
    k.add_ref("isolate", pte.pfn, owner=f"t{k.tid}")
    return Goto("migrate.lock", MigrateFrame(pte.pfn))


@step("migrate.lock")
def migrate_lock(k, fr, op):
    k.lock_page(fr.page)
    return Goto("migrate.unmap", fr)


def _iso(k, pfn):
    return next(r for r in k.refs_held_by(f"t{k.tid}") if r.kind == "isolate" and r.pfn == pfn)


def _restore(k, src, dst) -> None:
    """remove_migration_ptes(src, dst): migration entries -> present ptes of dst."""
    for mm, m in enumerate(k.mms):
        for a, p in enumerate(m.ptes):
            if p is not None and p.kind == PTE_MIGRATION and p.pfn == src:
                write = p.excl == SWP_MIGRATION_WRITE
                k.add_ref("tmp", dst)
                k.ref_to_mapping(dst)
                rmap.page_add_anon_rmap(k, dst, p.idx, exclusive=k.design.migration_restore_exclusive(p.excl))
                k.set_pte_at(a, k.mk_pte(dst, p.idx, write=write, dirty=write), mm)


@step("migrate.unmap")
def try_to_migrate(k, fr, op):
    pfn = fr.page
    maps = k.rmap_walk_ptes(pfn)
    if any(k.mms[mm].ptl != -1 for mm, _, _ in maps):
        raise Blocked("page-table lock held")
    for mm, a, p in maps:
        ok, typ = k.design.migrate_try_unmap(k, pfn, p.idx, p)
        if not ok:
            continue
        k.set_pte_at(a, k.migration_pte(pfn, p.idx, typ), mm)
        rmap.page_remove_rmap(k, pfn, p.idx)
        k.put_page(pfn)
    return Goto("migrate.move", fr)


@step("migrate.move")
def migrate_move(k, fr, op):
    pfn = fr.page
    f = k.folio(pfn)
    expected = 1 + (f.nr if f.flags & PG_swapcache else 0)
    if k.total_mapcount(pfn) or f.refcount != expected:
        _restore(k, pfn, pfn)
        k.unlock_page(pfn)
        k.set_flag(pfn, PG_lru)
        k.drop_ref(_iso(k, pfn))
        k.effect(MigrateFailed(pfn))
        return None
    new = k.alloc_folio(nr=f.nr, flags=f.flags & ~(PG_lru | PG_locked), data=f.data)
    k.set_folio(new, swap=f.swap, flags=(f.flags & ~(PG_lru | PG_locked | PG_swapcache)) | PG_lru
                | (f.flags & PG_swapcache))
    if f.flags & PG_swapcache:
        for s in f.swap:
            if s >= 0:
                k.set_slot(s, cache=new)
        k.set_folio(new, refcount=k.folio(new).refcount + f.nr)
        k.set_folio(pfn, flags=f.flags & ~PG_swapcache, swap=(-1,) * f.nr, refcount=f.refcount - f.nr)
    _restore(k, pfn, new)
    k.drop_ref(k.my_tmp_ref(new))
    k.unlock_page(pfn)
    k.drop_ref(_iso(k, pfn))   # frees the old page
    k.effect(Migrate(pfn, new))
    return None


op("migrate", "migrate.isolate", "migrate_pages()", ("addr",), "migrate the page to a new page frame")
