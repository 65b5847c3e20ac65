"""mm/swap.c: the per-CPU LRU batches (pagevecs until 5.x, folio batches in 6.x).

A fresh folio is added to the local CPU's lru_add batch, which holds a
reference until the batch is drained onto the LRU list (PG_lru set).  The
model has one batch per CPU (``k.cpu``, the running thread's: model.cpu_of);
``lru_add_drain`` drains the local one, ``lru_add_drain_all`` (a background
agent, migration, ksmd) drains every CPU.
"""
from __future__ import annotations

from ..types import PG_lru


def lru_cache_add(k, pfn: int) -> None:
    """lru_cache_add()/folio_add_lru() (all versions): folio_get() + queue in
    the local CPU's lru_add batch; PG_lru is set only when the batch drains."""
    k.add_ref("lru_batch", pfn, owner=f"cpu{k.cpu}")


def folio_add_lru_large(k, pfn: int) -> None:
    """folio_add_lru() of a large folio (all versions: __lru_cache_add() moved the local pagevec to the LRU at
    once for a PageCompound() page; 6.x folio_batch_add_and_move() does so for folio_test_large()): the whole
    local batch drains and the folio is on the LRU, holding no batch reference."""
    lru_add_drain(k)
    k.set_flag(pfn, PG_lru)


def _drain(k, owner: str | None) -> None:
    held = k.refs if owner is None else k.refs_held_by(owner)
    for r in [r for r in held if r.kind == "lru_batch"]:
        if k.folios[r.pfn] is not None:
            k.set_flag(r.pfn, PG_lru)
        k.drop_ref(r)


def lru_add_drain(k) -> None:
    """lru_add_drain() (all versions): drain this CPU's batch only."""
    _drain(k, f"cpu{k.cpu}")


def lru_add_drain_all(k) -> None:
    """lru_add_drain_all(): drain every CPU's batch."""
    _drain(k, None)
