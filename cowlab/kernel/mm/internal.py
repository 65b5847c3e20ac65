"""mm/internal.h: what the fault, GUP and THP paths share -- the fault's
locals (``struct vm_fault``), entering and leaving a fault, GUP's locals and
``try_grab_page()`` -- so that mm/memory, mm/gup, mm/huge_memory and
mm/hugetlb import this module and not each other.

Versions: 5.7 .. 6.18.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from ..effects import Pin
from ..paths import Call, Goto, InFlight, NOTHING_IN_FLIGHT, Pfn, Return, Slot
from ..types import FOLL_FAST, FOLL_PIN, Pte, ZERO_PFN

#: include/linux/mm_types.h vm_fault_t: the fault could not be handled (access_error(), no vma)
VM_FAULT_SIGSEGV = 0x0002
#: -EFAULT
EFAULT = -14


class SwapMapped(NamedTuple):
    """do_swap_page() between its decision and set_pte_at(): the swap-cache
    folio's subpage about to be mapped, its slot, the design's exclusivity
    answer, and whether the decision already dropped the slot's count."""
    page: Pfn
    idx: int
    slot: Slot
    exclusive: bool
    freed: bool
    #: a fresh folio that skipped the swap cache (SWP_SYNCHRONOUS_IO): its slot holds swapcache_prepare()'s flag
    fresh: bool = False
    #: the ptes being mapped: ``nr`` from ``address - idx`` (a fresh large folio, 6.12's alloc_swap_folio(): subpage
    #: i at address - idx + i, slot ``slot - idx + i``); 1 for a small folio or a swap-cache folio's one subpage
    nr: int = 1


class FaultFrame(NamedTuple):
    """struct vm_fault, the locals of handle_mm_fault() and the handlers it
    calls (do_anonymous_page, do_wp_page, wp_page_copy, do_swap_page, the
    huge and hugetlb handlers): ``address``; FAULT_FLAG_WRITE (``write``) and
    FAULT_FLAG_UNSHARE (``unshare``, 5.19+); ``own_mm``: do_user_addr_fault()
    took mmap_lock itself (a GUP caller already holds it); ``page``/``idx``:
    the page the fault holds a reference on (do_wp_page's get_page(), the
    swap-cache folio); ``cow_page``: wp_page_copy()'s new page; ``orig_pte``:
    vmf->orig_pte of a swap fault; ``locked``: the page lock is held after
    LOCK_PAGE (5.7/5.8); ``snap``: what a split decision read (READ_MORE);
    ``swapin``: do_swap_page() between decision and mapping; ``fresh``:
    do_swap_page()'s folio skipped the swap cache (folio != swapcache)."""
    address: int
    write: bool
    unshare: bool
    own_mm: bool
    page: Optional[Pfn] = None
    idx: int = 0
    cow_page: Optional[Pfn] = None
    orig_pte: Optional[Pte] = None
    locked: bool = False
    snap: object = None
    swapin: Optional[SwapMapped] = None
    fresh: bool = False

    def in_flight(self, s, mm, args, hpage_pmd_nr) -> InFlight:
        """do_swap_page() between the design's decision and set_pte_at():
        the page is being mapped at address, and the slot's count may
        already be dropped for the swap pte it replaces."""
        sw = self.swapin
        if sw is None:
            return NOTHING_IN_FLIGHT
        if sw.nr > 1:
            base, first = self.address - sw.idx, sw.slot - sw.idx
            return InFlight(maps=tuple((mm, base + i, sw.page, i) for i in range(sw.nr)),
                            slots=tuple((first + i, -1) for i in range(sw.nr)) if sw.freed else ())
        return InFlight(maps=((mm, self.address, sw.page, sw.idx),),
                        slots=((sw.slot, -1),) if sw.freed else ())


def enter_fault(caller, addr: int, write: bool, unshare: bool, then: str, mm_locked: bool) -> Call:
    """handle_mm_fault() on ``addr``, resuming the caller at ``then`` with
    locals ``caller``; ``mm_locked``: the caller (GUP) already holds
    mmap_lock for read.  The fault returns VM_FAULT_SIGSEGV or None (``k.ret``)."""
    fr = FaultFrame(addr, write, unshare, own_mm=not mm_locked)
    return Call("fault.handle" if mm_locked else "fault.lock_mm", fr, then, caller)


def fault_done(k, fr: FaultFrame, ret: int | None = None) -> Return:
    """The fault returns (mmap_read_unlock() if do_user_addr_fault() took it):
    VM_FAULT_SIGSEGV, or nothing when it was handled (a 0 the caller never
    reads would only make states that are alike differ)."""
    if fr.own_mm:
        k.mmap_read_unlock()
    return Return(ret)


def vm_normal_page(pte) -> int | None:
    """vm_normal_page(): None for the shared zero page."""
    return None if pte.pfn == ZERO_PFN else pte.pfn


def lookup(k, addr, mm=None):
    """What the MMU sees at addr: the pte, or a pte-like view of the PMD
    (THP / hugetlb) leaf that maps it."""
    pmd = k.pmd(addr // k.HPAGE_PMD_NR, mm)
    if pmd is not None:
        return k.mk_pte(pmd.pfn, addr % k.HPAGE_PMD_NR, write=pmd.write, dirty=pmd.dirty)
    return k.pte(addr, mm)


# --------------------------------------------------------------------------- GUP
class GupFrame(NamedTuple):
    """The locals of __get_user_pages() / gup-fast: the addresses asked for,
    the index of the next one, the FOLL_* flags (FOLL_FAST while gup-fast
    runs), the holder the references are recorded for (kind, owner), the
    write_protect_seq read by gup-fast (5.11+, None when not read), and the
    pte gup-fast read before grabbing (``pte``)."""
    addrs: tuple
    i: int
    flags: int
    kind: str
    owner: str
    seq: Optional[int] = None
    pte: Optional[Pte] = None


def try_grab_page(k, fr: GupFrame, pfn, idx, addr, gf, kind=None) -> None:
    """try_grab_page()/try_grab_folio(): FOLL_GET +1, FOLL_PIN +bias or +1/_pincount."""
    k.add_ref(kind or fr.kind, pfn, idx, owner=fr.owner, mm=k.mm, addr=addr, gup_flags=gf & ~FOLL_FAST)
    if gf & FOLL_PIN and pfn != ZERO_PFN and k.PageAnon(pfn):
        k.effect(Pin(k.mm, addr, pfn, idx, gf))


def gup_next(k, fr: GupFrame):
    """__get_user_pages(): on to the next page, or mmap_read_unlock() and
    return 0 when every page is taken."""
    if fr.i + 1 < len(fr.addrs):
        return Goto("gup.follow", fr._replace(i=fr.i + 1))
    k.mmap_read_unlock()
    return Return(0)
