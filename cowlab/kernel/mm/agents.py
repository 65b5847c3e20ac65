"""Transient references that other CPUs and kernel threads take on any page:
mm/swap.c lru_add_drain() / lru_add_drain_all(); speculative references
(get_page_unless_zero() from a pfn walker, page-cache RCU lookup of a freed
and reused page, compaction / page_idle / memory-failure); they raise the
refcount without any right to the data and drop it again.

Versions: all (5.7 .. 6.18)."""
from __future__ import annotations

from ..types import ZERO_PFN

from ..paths import step, op
from . import swap as lru


@step("lru.drain")
def lru_add_drain_op(k, fr, op):
    if op.get("all"):
        lru.lru_add_drain_all(k)
    else:
        lru.lru_add_drain(k)
    return None


@step("spec.get")
def speculative_get(k, fr, op):
    """get_page_unless_zero() on the page a process maps at addr (found by a
    pfn walker, not through that process)."""
    mm = op.get("mm_id", k.mm)
    pte = k.pte(op["addr"], mm)
    if k.is_present(pte) and pte.pfn != ZERO_PFN and k.folios[pte.pfn] is not None:
        k.add_ref("speculative", pte.pfn, pte.idx, owner=op.get("who", f"t{k.tid}"))
    return None


@step("spec.put")
def speculative_put(k, fr, op):
    for r in [r for r in k.refs_held_by(op.get("who", f"t{k.tid}")) if r.kind == "speculative"]:
        k.drop_ref(r)
    return None


op("lru_add_drain", "lru.drain", "lru_add_drain() / lru_add_drain_all()", ("all",),
   "drain this CPU's (or every CPU's) lru_add batch")
op("speculative_get", "spec.get", "get_page_unless_zero()", ("addr", "who", "of"),
   "take a transient speculative reference on the page mapped at addr")
op("speculative_put", "spec.put", "put_page()", ("who",), "drop the speculative reference")
