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
from ..paths import step, Call, Goto, Return
from ..types import FOLL_FAST, FOLL_PIN, FOLL_WRITE, VM_HUGETLB, VM_READ, VM_WRITE, ZERO_PFN
from . import huge_memory
from .internal import EFAULT, VM_FAULT_SIGSEGV, GupFrame, enter_fault, gup_next, try_grab_page

__all__ = ["start_gup", "try_grab_page"]


def start_gup(caller, addrs, gup_flags: int, kind: str, owner: str, then: str) -> Call:
    """get_user_pages*/pin_user_pages*(): call GUP on ``addrs``, recording
    references as (kind, owner); the caller resumes at ``then`` with locals
    ``caller``, and ``k.ret`` is 0 or -EFAULT."""
    fr = GupFrame(tuple(addrs), 0, gup_flags, kind, owner)
    return Call("gupf.begin" if gup_flags & FOLL_FAST else "gup.lock", fr, then, caller)


@step("gup.lock")
def gup_lock(k, fr: GupFrame, op):
    """__gup_longterm_locked() -> __get_user_pages_locked(): mmap_read_lock;
    FOLL_PIN sets MMF_HAS_PINNED (mm->has_pinned 5.9+); 5.8 forces FOLL_WRITE
    on COW mappings (should_force_cow_break())."""
    k.mmap_read_lock()
    gf = fr.flags & ~FOLL_FAST
    if gf & FOLL_PIN:
        k.mm_set_has_pinned_flag()
    vma = k.find_vma(fr.addrs[fr.i])
    if vma is not None and k.design.gup_force_write(k, vma, gf):
        gf |= FOLL_WRITE
    return Goto("gup.follow", fr._replace(flags=gf))


@step("gup.follow")
def follow_page_pte(k, fr: GupFrame, op):
    """follow_page_mask() -> follow_page_pte() under the PT lock, or
    faultin_page() when the page must be faulted in / written / unshared."""
    if k.ret == VM_FAULT_SIGSEGV:
        k.mmap_read_unlock()
        return Return(EFAULT)
    addr = fr.addrs[fr.i]
    gf = fr.flags
    write = bool(gf & FOLL_WRITE)
    vma = k.find_vma(addr)
    if vma is None or not check_vma_flags(vma, gf):
        k.mmap_read_unlock()
        return Return(EFAULT)
    if vma.flags & VM_HUGETLB or k.pmd(addr // k.HPAGE_PMD_NR) is not None:
        return huge_memory.follow_huge(k, fr, vma, addr, gf)
    k.pte_lock()
    pte = k.pte(addr)
    if not k.is_present(pte) or (write and not pte.write):
        k.pte_unlock()
        return enter_fault(fr, addr, write=write, unshare=False, then="gup.follow", mm_locked=True)
    pfn = pte.pfn
    if not pte.write and k.design.gup_must_unshare(k, gf, pfn, pte.idx):
        k.pte_unlock()
        return enter_fault(fr, addr, write=False, unshare=True, then="gup.follow", mm_locked=True)
    try_grab_page(k, fr, pfn, pte.idx, addr, gf)
    k.pte_unlock()
    return gup_next(k, fr)


def check_vma_flags(vma, gup_flags: int) -> bool:
    """check_vma_flags() (all versions; no FOLL_FORCE in the model): FOLL_WRITE
    needs VM_WRITE, a read needs VM_READ; otherwise GUP fails with -EFAULT."""
    if gup_flags & FOLL_WRITE:
        return bool(vma.flags & VM_WRITE)
    return bool(vma.flags & VM_READ)


# --------------------------------------------------------------------------- gup-fast
@step("gupf.begin")
def gup_fast_begin(k, fr: GupFrame, op):
    """lockless_pages_from_mm(): FOLL_PIN sets MMF_HAS_PINNED; with
    write_protect_seq (5.11+) read the sequence and fall back when a fork
    is in progress (odd); then local_irq_save()."""
    gf = fr.flags
    if gf & FOLL_PIN:
        k.mm_set_has_pinned_flag()
    if gf & FOLL_PIN and k.design.write_protect_seq:
        seq = k.mmv().write_protect_seq
        if seq & 1:
            return _gup_fast_fallback(fr)
        fr = fr._replace(seq=seq)
    k.threads[k.tid] = k.threads[k.tid]._replace(irqs_off=True)
    return Goto("gupf.pte", fr)


@step("gupf.pte")
def gup_fast_read_pte(k, fr: GupFrame, op):
    """gup_pte_range() B1/B2: ptep_get_lockless(); bail on a non-present,
    special (zero page) or -- for FOLL_WRITE, or for everyone under 5.8 --
    a non-writable pte."""
    addr = fr.addrs[fr.i]
    pte = k.pte(addr)
    gf = fr.flags
    need_write = gf & FOLL_WRITE or k.design.gup_fast_only_writable
    vma = k.find_vma(addr)       # (a PROT_NONE pte fails pte_access_permitted(): the model asks the vma)
    if (not k.is_present(pte) or pte.pfn == ZERO_PFN or (need_write and not pte.write)
            or vma is None or not vma.flags & (VM_READ | VM_WRITE)
            or k.pmd(addr // k.HPAGE_PMD_NR) is not None):
        return _gup_fast_bail(k, fr)
    return Goto("gupf.grab", fr._replace(pte=pte))


@step("gupf.grab")
def gup_fast_grab(k, fr: GupFrame, op):
    """B3: try_grab_folio() (FOLL_PIN: then smp_mb__after_atomic())."""
    pte = fr.pte
    if k.folios[pte.pfn] is None:
        return _gup_fast_bail(k, fr)
    k.add_ref("gup_fast", pte.pfn, pte.idx, owner=f"t{k.tid}", mm=k.mm, addr=fr.addrs[fr.i],
              gup_flags=fr.flags & ~FOLL_FAST)
    return Goto("gupf.recheck", fr)


@step("gupf.recheck")
def gup_fast_recheck(k, fr: GupFrame, op):
    """B4/B5: drop the reference if the pte changed, or if it is R/O and
    gup_must_unshare() (no vma: anon pages only)."""
    addr = fr.addrs[fr.i]
    old = fr.pte
    ref = _fast_ref(k, old.pfn)
    if k.pte(addr) != old or (not old.write and k.design.gup_must_unshare(k, fr.flags & ~FOLL_FAST, old.pfn, old.idx)):
        k.drop_ref(ref)
        return _gup_fast_bail(k, fr)
    if fr.i + 1 < len(fr.addrs):
        return Goto("gupf.pte", fr._replace(i=fr.i + 1))
    return Goto("gupf.end", fr)


def _fast_ref(k, pfn):
    for r in k.refs_held_by(f"t{k.tid}"):
        if r.kind == "gup_fast" and r.pfn == pfn:
            return r
    raise AssertionError("gup-fast reference missing")


@step("gupf.end")
def gup_fast_end(k, fr: GupFrame, op):
    """local_irq_restore(); FOLL_PIN: read_seqcount_retry(write_protect_seq)
    -> unpin everything and fall back; else the references are the caller's."""
    if not _gup_fast_hand_over(k, fr):
        return _gup_fast_fallback(fr._replace(i=0))
    return Return(0)


def _gup_fast_bail(k, fr: GupFrame):
    """gup-fast could not take page fr.i: keep what it has (gup_fast
    refs of earlier pages are handed over at the end) and finish the rest
    on the slow path."""
    if not _gup_fast_hand_over(k, fr):
        fr = fr._replace(i=0)
    return _gup_fast_fallback(fr)


def _gup_fast_hand_over(k, fr: GupFrame) -> bool:
    """local_irq_restore(), then the write_protect_seq check: on a retry drop
    every reference gup-fast took (the slow path starts over, False); else
    they become the caller's (True)."""
    k.threads[k.tid] = k.threads[k.tid]._replace(irqs_off=False)
    mine = [r for r in k.refs_held_by(f"t{k.tid}") if r.kind == "gup_fast"]
    if fr.seq is not None and k.mmv().write_protect_seq != fr.seq:
        for r in mine:
            k.drop_ref(r)
        return False
    for r in mine:
        k.refs.remove(r)
        k.refs.append(r._replace(kind=fr.kind, owner=fr.owner))
        if r.gup_flags & FOLL_PIN and k.PageAnon(r.pfn):
            k.effect(Pin(r.mm, r.addr, r.pfn, r.idx, r.gup_flags))
    return True


def _gup_fast_fallback(fr: GupFrame):
    return Goto("gup.lock", fr._replace(seq=None, pte=None, flags=fr.flags & ~FOLL_FAST))

