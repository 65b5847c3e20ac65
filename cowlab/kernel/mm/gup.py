"""mm/gup.c: get_user_pages / pin_user_pages, slow path and lockless gup-fast.

Slow path (``__get_user_pages``, mmap_lock held for read): per page,
``follow_page_pte`` under the PT lock; when the pte is missing, not writable
for FOLL_WRITE, or ``gup_must_unshare`` says so, ``faultin_page`` runs a
fault (FAULT_FLAG_WRITE or FAULT_FLAG_UNSHARE) and the lookup is retried;
then ``try_grab_page`` takes a FOLL_GET reference (+1) or a FOLL_PIN
(+GUP_PIN_COUNTING_BIAS on small folios, +1 and _pincount on large ones).

gup-fast (``lockless_pages_from_mm`` / ``gup_pte_range``), IRQs off, no
locks, as the steps B1..B5 of 088b8aa537c2: read the pte; bail if not present
or (FOLL_WRITE and not writable); grab; re-read the pte and drop if it
changed; drop if R/O and ``gup_must_unshare``; with FOLL_PIN and 5.11+
(57efa1fe5957) bracketed by ``write_protect_seq``.  A bail falls back to
the slow path.

The caller names the holder the reference is recorded for (``kind``, ``owner``).
Versions 5.7 .. 6.18; design questions: ``gup_force_write`` (5.8),
``gup_fast_only_writable`` (5.8), ``write_protect_seq`` (5.11+),
``gup_must_unshare`` (5.19+).
"""
from __future__ import annotations

from ..effects import Pin
from ..paths import step
from ..types import FOLL_FAST, FOLL_PIN, FOLL_WRITE, ZERO_PFN
from .memory import enter_fault


def start_gup(fr: dict, addrs, gup_flags: int, kind: str, owner: str, ret: str | None) -> str:
    """get_user_pages*/pin_user_pages*(): locals for a GUP of ``addrs``
    recording references as (kind, owner); continue at ``ret`` after."""
    fr.update(g_addrs=tuple(addrs), g_i=0, gf=gup_flags, g_kind=kind, g_owner=owner, g_ret=ret, g_err=0)
    return "gupf.begin" if gup_flags & FOLL_FAST else "gup.lock"


def _gup_finish(k, fr) -> str | None:
    for key in ("g_addrs", "g_i", "gf", "g_kind", "g_owner", "g_seq", "g_pte"):
        fr.pop(key, None)
    return fr.pop("g_ret")


@step("gup.lock")
def gup_lock(k, fr, op):
    """__gup_longterm_locked() -> __get_user_pages_locked(): mmap_read_lock;
    FOLL_PIN sets MMF_HAS_PINNED (mm->has_pinned 5.9+); 5.8 forces FOLL_WRITE
    on COW mappings (should_force_cow_break())."""
    k.mmap_read_lock()
    gf = fr["gf"] & ~FOLL_FAST
    if gf & FOLL_PIN:
        k.mm_set_has_pinned_flag()
    vma = k.find_vma(fr["g_addrs"][fr["g_i"]])
    if vma is not None and k.design.gup_force_write(k, vma, gf):
        gf |= FOLL_WRITE
    fr["gf"] = gf
    return "gup.follow"


@step("gup.follow")
def follow_page_pte(k, fr, op):
    """follow_page_mask() -> follow_page_pte() under the PT lock, or
    faultin_page() when the page must be faulted in / written / unshared."""
    if fr.pop("segv", False):
        fr["g_err"] = -14   # -EFAULT
        k.mmap_read_unlock()
        return _gup_finish(k, fr)
    addr = fr["g_addrs"][fr["g_i"]]
    gf = fr["gf"]
    write = bool(gf & FOLL_WRITE)
    vma = k.find_vma(addr)
    if vma is None:
        fr["g_err"] = -14
        k.mmap_read_unlock()
        return _gup_finish(k, fr)
    from ..types import VM_HUGETLB
    if vma.flags & VM_HUGETLB or k.pmd(addr // k.HPAGE_PMD_NR) is not None:
        from . import huge_memory
        return huge_memory.follow_huge(k, fr, vma, addr, gf)
    k.pte_lock()
    pte = k.pte(addr)
    if not k.is_present(pte) or (write and not pte.write):
        k.pte_unlock()
        return enter_fault(fr, addr, write=write, unshare=False, ret="gup.follow", mm_locked=True)
    pfn = pte.pfn
    if not pte.write and k.design.gup_must_unshare(k, gf, pfn, pte.idx):
        k.pte_unlock()
        return enter_fault(fr, addr, write=False, unshare=True, ret="gup.follow", mm_locked=True)
    try_grab_page(k, fr, pfn, pte.idx, addr, gf)
    k.pte_unlock()
    return _gup_next(k, fr)


def try_grab_page(k, fr, pfn, idx, addr, gf, kind=None) -> None:
    """try_grab_page()/try_grab_folio(): FOLL_GET +1, FOLL_PIN +bias or +1/_pincount."""
    k.add_ref(kind or fr["g_kind"], pfn, idx, owner=fr["g_owner"], mm=k.mm, addr=addr, gup_flags=gf & ~FOLL_FAST)
    if gf & FOLL_PIN and pfn != ZERO_PFN and k.PageAnon(pfn):
        k.effect(Pin(k.mm, addr, pfn, idx, gf))


def _gup_next(k, fr) -> str | None:
    fr["g_i"] += 1
    if fr["g_i"] < len(fr["g_addrs"]):
        return "gup.follow"
    k.mmap_read_unlock()
    return _gup_finish(k, fr)


# --------------------------------------------------------------------------- gup-fast
@step("gupf.begin")
def gup_fast_begin(k, fr, op):
    """lockless_pages_from_mm(): FOLL_PIN sets MMF_HAS_PINNED; with
    write_protect_seq (5.11+) read the sequence and fall back when a fork
    is in progress (odd); then local_irq_save()."""
    gf = fr["gf"]
    if gf & FOLL_PIN:
        k.mm_set_has_pinned_flag()
    if gf & FOLL_PIN and k.design.write_protect_seq:
        seq = k.mmv().write_protect_seq
        if seq & 1:
            return _gup_fast_fallback(k, fr)
        fr["g_seq"] = seq
    k.threads[k.tid] = k.threads[k.tid]._replace(irqs_off=True)
    return "gupf.pte"


@step("gupf.pte")
def gup_fast_read_pte(k, fr, op):
    """gup_pte_range() B1/B2: ptep_get_lockless(); bail on a non-present,
    special (zero page) or -- for FOLL_WRITE, or for everyone under 5.8 --
    a non-writable pte."""
    addr = fr["g_addrs"][fr["g_i"]]
    pte = k.pte(addr)
    gf = fr["gf"]
    need_write = gf & FOLL_WRITE or k.design.gup_fast_only_writable
    if (not k.is_present(pte) or pte.pfn == ZERO_PFN or (need_write and not pte.write)
            or k.pmd(addr // k.HPAGE_PMD_NR) is not None):
        return _gup_fast_bail(k, fr)
    fr["g_pte"] = tuple(pte)
    return "gupf.grab"


@step("gupf.grab")
def gup_fast_grab(k, fr, op):
    """B3: try_grab_folio() (FOLL_PIN: then smp_mb__after_atomic())."""
    pte = fr["g_pte"]
    if k.folios[pte[1]] is None:
        return _gup_fast_bail(k, fr)
    k.add_ref("gup_fast", pte[1], pte[2], owner=f"t{k.tid}", mm=k.mm, addr=fr["g_addrs"][fr["g_i"]],
              gup_flags=fr["gf"] & ~FOLL_FAST)
    return "gupf.recheck"


@step("gupf.recheck")
def gup_fast_recheck(k, fr, op):
    """B4/B5: drop the reference if the pte changed, or if it is R/O and
    gup_must_unshare() (no vma: anon pages only)."""
    from ..types import Pte
    addr = fr["g_addrs"][fr["g_i"]]
    old = Pte(*fr["g_pte"])
    ref = _fast_ref(k, old.pfn)
    if k.pte(addr) != old or (not old.write and k.design.gup_must_unshare(k, fr["gf"] & ~FOLL_FAST, old.pfn, old.idx)):
        k.drop_ref(ref)
        return _gup_fast_bail(k, fr)
    if fr["g_i"] + 1 < len(fr["g_addrs"]):
        fr["g_i"] += 1
        return "gupf.pte"
    return "gupf.end"


def _fast_ref(k, pfn):
    for r in k.refs:
        if r.kind == "gup_fast" and r.owner == f"t{k.tid}" and r.pfn == pfn:
            return r
    raise AssertionError("gup-fast reference missing")


@step("gupf.end")
def gup_fast_end(k, fr, op):
    """local_irq_restore(); FOLL_PIN: read_seqcount_retry(write_protect_seq)
    -> unpin everything and fall back; else the references are the caller's."""
    if not _gup_fast_hand_over(k, fr):
        return _gup_fast_fallback(k, fr)
    return _gup_finish(k, fr)


def _gup_fast_bail(k, fr) -> str:
    """gup-fast could not take page g_i: keep what it has (gup_fast
    refs of earlier pages are handed over at the end) and finish the rest
    on the slow path."""
    _gup_fast_hand_over(k, fr)
    return _gup_fast_fallback(k, fr)


def _gup_fast_hand_over(k, fr) -> bool:
    """local_irq_restore(), then the write_protect_seq check: on a retry drop
    every reference gup-fast took (the slow path starts over, False); else
    they become the caller's (True)."""
    k.threads[k.tid] = k.threads[k.tid]._replace(irqs_off=False)
    mine = [r for r in k.refs if r.kind == "gup_fast" and r.owner == f"t{k.tid}"]
    if "g_seq" in fr and k.mmv().write_protect_seq != fr["g_seq"]:
        for r in mine:
            k.drop_ref(r)
        fr["g_i"] = 0
        return False
    for r in mine:
        k.refs.remove(r)
        k.refs.append(r._replace(kind=fr["g_kind"], owner=fr["g_owner"]))
        if r.gup_flags & FOLL_PIN and k.PageAnon(r.pfn):
            k.effect(Pin(r.mm, r.addr, r.pfn, r.idx, r.gup_flags))
    return True


def _gup_fast_fallback(k, fr) -> str:
    fr.pop("g_seq", None)
    fr.pop("g_pte", None)
    fr["gf"] &= ~FOLL_FAST
    return "gup.lock"


def unpin_refs(k, refs) -> None:
    """unpin_user_pages() / put_page() of GUP references."""
    for r in refs:
        k.drop_ref(r)
