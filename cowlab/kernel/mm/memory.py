"""mm/memory.c: page faults on private anonymous memory and zapping.

Paths (each a sequence of atomic steps at the kernel's lock boundaries):

* ``handle_mm_fault`` -> ``handle_pte_fault`` under the PT lock, dispatching to
  ``do_anonymous_page`` (pte none), ``do_wp_page`` (present, R/O, write or
  FAULT_FLAG_UNSHARE) or ``do_swap_page`` (swap pte);
* ``do_wp_page`` asks the design (``wp_anon``) whether to reuse; a copy
  drops the PT lock, allocates and copies (``wp_page_copy``), retakes the
  PT lock and installs the copy if the pte is unchanged;
* ``do_swap_page``: swap-cache lookup or read without the PT lock, then
  ``lock_page`` (may sleep), then the PT lock, ``pte_same`` re-check and
  the design's exclusivity decision;
* ``zap_pte_range`` for munmap / MADV_DONTNEED / exit.

A fault is entered with ``enter_fault`` and returns to ``fr['ret']``.
Versions: 5.7 .. 6.18; what differs between them is asked of the design.
"""
from __future__ import annotations

from ..paths import step, op
from ..txn import Blocked, ModelBug
from ..types import (PTE_PRESENT, PTE_SWAP, PTE_MIGRATION, VM_WRITE, VM_HUGETLB, ZERO, ZERO_PFN, PG_dirty, HPAGE_PMD_NR)
from ..decisions import Vmf, REUSE, COPY, LOCK_PAGE, READ_MORE
from . import rmap, swap as lru, swapfile


# --------------------------------------------------------------------------- entry
def enter_fault(fr: dict, addr: int, write: bool, unshare: bool, ret: str, mm_locked: bool) -> str:
    """Set up the locals of a fault on ``addr`` returning to ``ret``.
    ``mm_locked``: the caller (GUP) already holds mmap_lock for read."""
    fr.update(fa=addr, fw=write, fu=unshare, ret=ret, own_mm=not mm_locked)
    return "fault.handle" if mm_locked else "fault.lock_mm"


def fault_done(k, fr) -> str:
    if fr.pop("own_mm"):
        k.mmap_read_unlock()
    for key in ("fa", "fw", "fu", "old", "new", "slot", "orig", "fresh"):
        fr.pop(key, None)
    return fr.pop("ret")


def vm_normal_page(pte) -> int | None:
    """vm_normal_page(): None for the shared zero page."""
    return None if pte.pfn == ZERO_PFN else pte.pfn


@step("fault.lock_mm")
def lock_mm_and_find_vma(k, fr, op):
    """do_user_addr_fault(): mmap_read_lock, find_vma and access_error()."""
    k.mmap_read_lock()
    vma = k.find_vma(fr["fa"])
    if vma is None or (fr["fw"] and not vma.flags & VM_WRITE):
        k.effect("segv", k.mm, fr["fa"])
        fr["segv"] = True
        return fault_done(k, fr)
    return "fault.handle"


@step("fault.handle")
def handle_pte_fault(k, fr, op):
    """handle_mm_fault() -> handle_pte_fault() with the PT lock taken."""
    addr = fr["fa"]
    vma = k.find_vma(addr)
    if vma is None:
        k.effect("segv", k.mm, addr)
        fr["segv"] = True
        return fault_done(k, fr)
    if vma.flags & VM_HUGETLB:
        from . import hugetlb
        return hugetlb.hugetlb_fault(k, fr, vma)
    hidx = addr // HPAGE_PMD_NR
    if k.pmd(hidx) is not None:
        from . import huge_memory
        return huge_memory.huge_pmd_fault(k, fr, vma)
    k.pte_lock()
    pte = k.pte(addr)
    if pte is None:
        if fr["fw"] and huge_memory_wants_thp(k, vma, addr, fr):
            k.pte_unlock()
            from . import huge_memory
            return huge_memory.do_huge_pmd_anonymous_page(k, fr, vma)
        return do_anonymous_page(k, fr, vma)
    if pte.kind == PTE_SWAP:
        k.pte_unlock()
        fr["orig"] = tuple(pte)
        return "swap.lookup"
    if pte.kind == PTE_MIGRATION:
        k.pte_unlock()
        return "fault.migration_wait"
    if (fr["fw"] or fr["fu"]) and not pte.write:
        return do_wp_page(k, fr, vma)
    # spurious fault (already writable / readable): nothing to do
    k.pte_unlock()
    return fault_done(k, fr)


def huge_memory_wants_thp(k, vma, addr, fr) -> bool:
    from ..types import VM_HUGEPAGE
    if not vma.flags & VM_HUGEPAGE:
        return False
    base = addr - addr % HPAGE_PMD_NR
    return vma.start <= base and base + HPAGE_PMD_NR <= vma.end and all(
        k.pte(a) is None for a in range(base, base + HPAGE_PMD_NR))


@step("fault.migration_wait")
def migration_entry_wait(k, fr, op):
    """migration_entry_wait(): sleep until the migration entry is replaced."""
    pte = k.pte(fr["fa"])
    if k.is_migration(pte):
        raise Blocked("migration entry")
    return "fault.handle"


def do_anonymous_page(k, fr, vma) -> str:
    """do_anonymous_page() (PT lock held; the model allocates under it): read
    faults map the shared zero page R/O; write faults map a fresh zeroed anon
    page writable, exclusive (5.19+), queued in the local lru_add batch."""
    addr = fr["fa"]
    if not fr["fw"]:
        k.set_pte_at(addr, k.mk_pte(ZERO_PFN, 0, write=False))
        k.pte_unlock()
        return fault_done(k, fr)
    pfn = k.alloc_folio()
    rmap.page_add_new_anon_rmap(k, pfn, 0, exclusive=True)
    lru.lru_cache_add(k, pfn)
    k.ref_to_mapping(pfn)
    k.set_pte_at(addr, k.mk_pte(pfn, 0, write=bool(vma.flags & VM_WRITE), dirty=True))
    k.pte_unlock()
    return fault_done(k, fr)


# --------------------------------------------------------------------------- do_wp_page
def do_wp_page(k, fr, vma) -> str:
    """do_wp_page() (PT lock held): write fault or FAULT_FLAG_UNSHARE on a
    present pte that is not writable."""
    addr = fr["fa"]
    pte = k.pte(addr)
    unshare = fr["fu"] and not fr["fw"]
    page = vm_normal_page(pte)
    if page is None:
        # the shared zero page: a write always copies; an unshare only from 6.2
        if unshare and not k.design.unshare_non_anon:
            k.pte_unlock()
            return fault_done(k, fr)
        fr["old"] = ZERO_PFN
        k.get_page(ZERO_PFN)
        k.pte_unlock()
        return "wp.copy"
    if not k.PageAnon(page):
        raise ModelBug("non-anonymous page in a private anonymous mapping")
    vmf = Vmf(k.mm, addr, page, pte.idx, write=not unshare, unshare=unshare, locked=fr.get("wplocked", False),
              snap=fr.pop("wpsnap", None))
    d = k.design.wp_anon(k, vmf)
    if isinstance(d, tuple) and d[0] == READ_MORE:
        # the design read part of what it needs; it reads the rest in the next atomic step
        fr["wpsnap"] = d[1]
        return "wp.decide"
    fr.pop("wplocked", None)
    return _wp_decided(k, fr, d, page, pte)


@step("wp.decide")
def do_wp_page_continue(k, fr, op):
    """do_wp_page(), PT lock still held: the design's decision continues
    with its next read (separate loads of separate counters are separate
    atomic steps for any other CPU)."""
    vma = k.find_vma(fr["fa"])
    return do_wp_page(k, fr, vma)


def _wp_decided(k, fr, d, page, pte) -> str:
    addr = fr["fa"]
    unshare = fr["fu"] and not fr["fw"]
    if k.PageLocked(page) and d != LOCK_PAGE and fr.get("holds_lock") == page:
        raise ModelBug("design returned with the page lock still held")
    if d == REUSE:
        k.effect("reuse", k.mm, addr, page, pte.idx, "unshare" if unshare else "write")
        if not unshare:
            wp_page_reuse(k, addr, pte)
        k.pte_unlock()
        return fault_done(k, fr)
    if d == LOCK_PAGE:
        k.get_page(page)
        k.pte_unlock()
        fr["old"] = page
        return "wp.lock_page"
    if d == COPY:
        fr["old"] = page
        k.get_page(page)
        k.pte_unlock()
        return "wp.copy"
    raise ModelBug(f"design answered {d!r} in do_wp_page")


def wp_page_reuse(k, addr, pte) -> None:
    """wp_page_reuse(): make the pte writable and dirty, keep the page."""
    k.set_pte_at(addr, pte._replace(write=True, dirty=True, soft_dirty=True))


@step("wp.lock_page")
def wp_lock_page(k, fr, op):
    """do_wp_page() before 5.9: trylock_page() failed -> get_page(),
    pte_unmap_unlock(), lock_page() (sleeps)."""
    k.lock_page(fr["old"])
    return "wp.relock"


@step("wp.relock")
def wp_relock(k, fr, op):
    """... then re-take the PT lock; if the pte changed, unlock, put, retry;
    else put_page() and decide again with the page locked."""
    page = fr.pop("old")
    k.pte_lock()
    pte = k.pte(fr["fa"])
    k.drop_ref(k.my_tmp_ref(page))
    if not (k.is_present(pte) and pte.pfn == page and not pte.write):
        if k.folios[page] is not None:
            k.unlock_page(page)
        k.pte_unlock()
        return fault_done(k, fr)
    fr["wplocked"] = True
    vma = k.find_vma(fr["fa"])
    return do_wp_page(k, fr, vma)


@step("wp.copy")
def wp_page_copy_alloc(k, fr, op):
    """wp_page_copy(), first half, no PT lock: allocate the new page and copy
    the old one's data into it (cow_user_page())."""
    old = fr["old"]
    pte = k.pte(fr["fa"])
    idx = pte.idx if k.is_present(pte) and pte.pfn == old else 0
    data = ZERO if old == ZERO_PFN else k.folio(old).data[idx]
    fr["new"] = k.alloc_folio(data=(data,))
    fr["oidx"] = idx
    return "wp.copy_commit"


@step("wp.copy_commit")
def wp_page_copy_commit(k, fr, op):
    """wp_page_copy(), second half: take the PT lock; if the pte still maps
    the old page, replace it with the copy (writable+dirty on a write fault,
    R/O on FAULT_FLAG_UNSHARE), remove the old page's rmap and drop its
    references; otherwise free the copy and retry."""
    old, new, idx = fr.pop("old"), fr.pop("new"), fr.pop("oidx")
    addr = fr["fa"]
    k.pte_lock()
    pte = k.pte(addr)
    unshare = fr["fu"] and not fr["fw"]
    k.drop_ref(k.my_tmp_ref(old))
    if not (k.is_present(pte) and pte.pfn == old and pte.idx == idx and not pte.write):
        k.drop_ref(k.my_tmp_ref(new))   # free the unused copy
        k.pte_unlock()
        return fault_done(k, fr)
    rmap.page_add_new_anon_rmap(k, new, 0, exclusive=True)
    lru.lru_cache_add(k, new)
    k.ref_to_mapping(new)
    vma = k.find_vma(addr)
    write = not unshare
    k.set_pte_at(addr, k.mk_pte(new, 0, write=write and bool(vma.flags & VM_WRITE), dirty=write))
    k.effect("copy", "unshare" if unshare else "wp_page_copy", k.mm, addr, old, idx, new, 0)
    if old != ZERO_PFN:
        rmap.page_remove_rmap(k, old, idx)
        k.put_page(old)                       # the old pte's reference
        if k.design.frees_swapcache_after_cow:
            swapfile.free_swap_cache(k, old)
    k.pte_unlock()
    return fault_done(k, fr)


# --------------------------------------------------------------------------- do_swap_page
@step("swap.lookup")
def do_swap_page_lookup(k, fr, op):
    """do_swap_page(), no PT lock: swap_cache_get_folio() or
    swapin_readahead() -> __read_swap_cache_async(): a new page is added to
    the swap cache, read from the device and queued for the LRU."""
    orig = fr["orig"]
    slot = orig[1]
    s = k.swap[slot] if slot < len(k.swap) else None
    if s is None or k.pte(fr["fa"]) != tuple_pte(orig):
        return fault_done(k, fr)          # raced: the pte changed, retry the fault
    pfn = s.cache
    if pfn >= 0:
        k.get_page(pfn)
    else:
        pfn = k.alloc_folio(data=(s.data,))
        swapfile.add_to_swap_cache(k, pfn, slot)
        lru.lru_cache_add(k, pfn)
    fr["old"] = pfn
    return "swap.lock"


def tuple_pte(t):
    from ..types import Pte
    return Pte(*t)


@step("swap.lock")
def do_swap_page_lock(k, fr, op):
    """lock_page_or_retry() / folio_lock_or_retry(): may sleep."""
    k.lock_page(fr["old"])
    return "swap.map"


@step("swap.map")
def do_swap_page_map(k, fr, op):
    """do_swap_page() with page lock and PT lock: pte_same() re-check, the
    design's exclusivity decision (which frees the swap entry), map the
    page, then do_wp_page() if the write fault was not satisfied."""
    pfn = fr.pop("old")
    orig = tuple_pte(fr.pop("orig"))
    addr = fr["fa"]
    k.pte_lock()
    slot = orig.pfn
    if k.pte(addr) != orig or not k.PageSwapCache(pfn) or slot not in k.folio(pfn).swap:
        k.unlock_page(pfn)
        k.drop_ref(k.my_tmp_ref(pfn))
        k.pte_unlock()
        return fault_done(k, fr)
    idx = k.folio(pfn).swap.index(slot)
    vmf = Vmf(k.mm, addr, pfn, idx, write=fr["fw"], unshare=fr["fu"], locked=True)
    count = k.swap[slot].count
    exclusive = k.design.do_swap_page_map(k, vmf, slot, bool(orig.excl), False)
    freed = k.swap[slot] is None or k.swap[slot].count != count
    fr["sw"] = (pfn, idx, slot, bool(exclusive), freed)
    return "swap.set_pte"


@step("swap.set_pte")
def do_swap_page_set_pte(k, fr, op):
    """do_swap_page(), still under the PT lock and page lock: set_pte_at() +
    page_add_anon_rmap() (RMAP_EXCLUSIVE), then -- in the kernels that free the
    entry after mapping (before 5.18) -- swap_free(); unlock_page(); and
    do_wp_page() if a write fault was not satisfied.  A separate step from the
    decision, so that lockless readers of the counts (another mm's fault
    under its own PT lock) can run in between, as in the kernel."""
    pfn, idx, slot, exclusive, freed = fr.pop("sw")
    addr = fr["fa"]
    vma = k.find_vma(addr)
    write = fr["fw"] and exclusive and bool(vma.flags & VM_WRITE)
    k.ref_to_mapping(pfn)
    rmap.page_add_anon_rmap(k, pfn, idx, exclusive=exclusive)
    k.set_pte_at(addr, k.mk_pte(pfn, idx, write=write, dirty=write, soft_dirty=True))
    k.effect("swapin", k.mm, addr, pfn, idx, exclusive)
    if not freed:
        swapfile.swap_free(k, slot)
    if k.folios[pfn] is not None and k.PageLocked(pfn):
        k.unlock_page(pfn)
    if fr["fw"] and not write:
        return do_wp_page(k, fr, vma)
    k.pte_unlock()
    return fault_done(k, fr)


# --------------------------------------------------------------------------- zap
def zap_pte(k, mm: int, addr: int) -> None:
    """zap_pte_range() for one pte (PT lock held by the caller): present ->
    page_remove_rmap + put_page (the TLB-gather's deferred free); swap ->
    free_swap_and_cache(); migration -> drop the entry."""
    pte = k.pte(addr, mm)
    if pte is None:
        return
    k.set_pte_at(addr, None, mm)
    k.effect("unmap", mm, addr)
    if pte.kind == PTE_PRESENT:
        page = vm_normal_page(pte)
        if page is not None:
            rmap.page_remove_rmap(k, page, pte.idx)
            k.put_page(page)
    elif pte.kind == PTE_SWAP:
        swapfile.free_swap_and_cache(k, pte.pfn)


# --------------------------------------------------------------------------- user accesses
@step("access.write")
def user_write(k, fr, op):
    """A CPU store through the pte (after handle_mm_fault() returned): the
    store lands in the mapped page if the pte is present and writable,
    otherwise the CPU faults (FAULT_FLAG_WRITE) and retries.  With ``pages``
    (a memset() over a range) each page's store is its own step."""
    if fr.pop("segv", False):
        return None
    i = fr.get("ai", 0)
    addr = op["addr"] + i
    pte = lookup(k, addr)
    if k.is_present(pte) and pte.write:
        token = op.get("value") or k.new_token()
        store(k, k.mm, addr, pte, token, via=None)
        return _next_page(fr, op, "access.write")
    return enter_fault(fr, addr, write=True, unshare=False, ret="access.write", mm_locked=False)


def _next_page(fr, op, label):
    i = fr.get("ai", 0) + 1
    if i < op.get("pages", 1):
        fr["ai"] = i
        return label
    fr.pop("ai", None)
    return None


def lookup(k, addr, mm=None):
    """What the MMU sees at addr: the pte, or a pte-like view of the PMD
    (THP / hugetlb) leaf that maps it."""
    pmd = k.pmd(addr // HPAGE_PMD_NR, mm)
    if pmd is not None:
        return k.mk_pte(pmd.pfn, addr % HPAGE_PMD_NR, write=pmd.write, dirty=pmd.dirty)
    return k.pte(addr, mm)


@step("access.read")
def user_read(k, fr, op):
    """A CPU load: present pte -> read the page; otherwise a read fault."""
    if fr.pop("segv", False):
        return None
    addr = op["addr"] + fr.get("ai", 0)
    pte = lookup(k, addr)
    if k.is_present(pte):
        data = ZERO if pte.pfn == ZERO_PFN else k.folio(pte.pfn).data[pte.idx]
        k.effect("load", "cpu", f"mm{k.mm}", k.mm, addr, pte.pfn, pte.idx, data)
        return _next_page(fr, op, "access.read")
    return enter_fault(fr, addr, write=False, unshare=False, ret="access.read", mm_locked=False)


def store(k, mm: int, addr: int, pte, token, via) -> None:
    """Write new data into the page a pte (or a GUP reference) points to."""
    f = k.folio(pte.pfn)
    data = list(f.data)
    data[pte.idx] = token
    k.folios[pte.pfn] = f._replace(data=tuple(data), flags=f.flags | PG_dirty)
    if via is None:
        pmd = k.pmd(addr // HPAGE_PMD_NR, mm)
        if pmd is not None:
            k.set_pmd_at(addr // HPAGE_PMD_NR, pmd._replace(dirty=True), mm)
        else:
            k.set_pte_at(addr, pte._replace(dirty=True, soft_dirty=True), mm)
    k.effect("store", mm, addr, pte.pfn, pte.idx, token, via)


op("write", "access.write", "memset() / a CPU store", ("addr", "pages", "value"),
   "write new data to each page of a range (faults as needed)")
op("read", "access.read", "a CPU load", ("addr", "pages"), "read each page of a range and check what the process sees")
