"""mm/mmap.c, mm/mprotect.c, mm/madvise.c (MADV_DONTNEED, MADV_DONTFORK,
MADV_DOFORK, MADV_HUGEPAGE), kernel/exit.c exit_mmap(), fs/proc/task_mmu.c
clear_refs (soft-dirty).

Versions: 5.7 .. 6.18; what changed (mprotect making exclusive ptes writable
in 6.0, clear_refs leaving pinned pages alone in 5.11) is asked of the design."""
from __future__ import annotations

from typing import NamedTuple

from ..effects import Error, Exit, Move
from ..txn import Blocked
from ..paths import step, op
from ..types import (Vma, VM_READ, VM_WRITE, VM_MAYWRITE, VM_DONTCOPY, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_SOFTDIRTY,
                     VM_HUGETLB, VM_MERGEABLE, PG_hugetlb, PG_swapcache, PTE_MIGRATION, PTE_PRESENT, PTE_SWAP,
                     ZERO_PFN)
from . import huge_memory, khugepaged
from .internal import VM_FAULT_SIGSEGV
from .memory import enter_fault, zap_pte, vm_normal_page, lookup

PROT = {"rw": VM_READ | VM_WRITE, "r": VM_READ, "none": 0}


def _vma_edit(vmas, start, end, fn, new=None):
    """Apply fn(flags)->flags to [start, end), splitting vmas (split_vma():
    the parts keep the vma's anon_vma); ``new`` is a vma mmap() puts in the
    range.  Then vma_merge(): a vma whose flags changed, or the new one,
    merges with an adjacent one of equal flags if their anon_vmas allow it
    (_is_mergeable)."""
    out = []
    for v in vmas:
        if v.end <= start or v.start >= end:
            out.append((v, False))
            continue
        lo, hi = max(v.start, start), min(v.end, end)
        nf = fn(v.flags)
        if nf is not None and nf == v.flags:
            # no change: mprotect_fixup() / madvise_update_vma() return before split_vma() and vma_merge() when
            # the new flags are the old ones (5.7 .. 6.18): the vma stays whole, and merges with nothing
            out.append((v, False))
            continue
        if v.start < start:
            out.append((v._replace(end=start), False))
        if nf is not None:
            out.append((v._replace(start=lo, end=hi, flags=nf), nf != v.flags))
        if v.end > end:
            out.append((v._replace(start=end), False))
    if new is not None:
        out.append((new, True))
    merged = []
    for v, src in sorted(out):
        if merged and _is_mergeable(merged[-1][0], v, merged[-1][1], src):
            p = merged[-1][0]
            # (the changed or new range merges with its neighbours only: a vma after a neighbour it merged with
            # is not next to the range)
            # the merged vma has the flags of the range changed or created (its VM_SOFTDIRTY too: mmap_region()
            # sets VM_SOFTDIRTY on the vma it ends with, __mmap_complete() 6.12+; mprotect_fixup() and
            # madvise_update_vma() vm_flags_reset() it to the new flags after the merge)
            merged[-1] = (p._replace(end=v.end, anon_vma=p.anon_vma or v.anon_vma,
                                     fork_child=p.fork_child or v.fork_child,
                                     flags=v.flags if src else p.flags), src)
        else:
            merged.append((v, src))
    return tuple(v for v, _ in merged)


def _is_mergeable(a, b, a_src: bool, b_src: bool) -> bool:
    """is_mergeable_vma() and is_mergeable_anon_vma() (mm/mmap.c, mm/vma.c
    from 6.12; 5.7 .. 6.18) for adjacent a, b with equal flags but for
    VM_SOFTDIRTY ("VM_SOFTDIRTY should not prevent from VMA merging", every
    version: ``(vma->vm_flags ^ vm_flags) & ~VM_SOFTDIRTY``).  The vma
    being changed or created (the source: b if both are) merges into its
    neighbour (the target) if their anon_vmas are the same, or if the source
    has none and the target's anon_vma_chain is singular (the target has an
    anon_vma and was not inherited at fork: list_is_singular(), 6.18
    vma_is_fork_child()); a source with an anon_vma does not merge into a
    target without one (the live 6.18 kernel does not merge them either).
    Two vmas that both have anon_vmas are taken to share one: the model does
    not tell anon_vmas apart.  Two vmas neither of which changed do not merge:
    no merge is attempted for them (two vmas an mremap() left apart, whose
    vm_pgoffs are not contiguous, stay apart; a live 6.18 probe: the random
    run's thp / outcome / madvise reproducer, catalog mremap-neighbour-stays)."""
    if a.end != b.start or (a.flags ^ b.flags) & ~VM_SOFTDIRTY or a.pgoff_shift != b.pgoff_shift:
        return False
    if not (a_src or b_src):
        return False
    if a.anon_vma == b.anon_vma:
        return True
    target = a if b_src else b
    return target.anon_vma and not target.fork_child


def vma_adjust_trans_huge(k) -> None:
    """vma_adjust_trans_huge(): a PMD mapping that no longer lies inside one
    vma (after a split_vma()) is split into ptes."""
    m = k.mmv()
    for h, pmd in enumerate(m.pmds):
        if pmd is None or k.test(pmd.pfn, PG_hugetlb):
            continue
        lo, hi = h * k.HPAGE_PMD_NR, (h + 1) * k.HPAGE_PMD_NR
        if not any(v.start <= lo and hi <= v.end for v in k.mmv().vmas):
            locked = k.mmv().ptl == k.tid
            if not locked:
                k.pte_lock()
            huge_memory.__split_huge_pmd_locked(k, k.mm, h)
            if not locked:
                k.pte_unlock()


@step("mmap")
def do_mmap(k, fr, op):
    """do_mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED [|MAP_HUGETLB]) -> mmap_region():
    whatever is mapped in the range is unmapped first, as munmap() would
    (do_munmap() 5.7 .. 6.0, do_mas_munmap() 6.1, do_vmi_munmap() 6.2 .. 6.11,
    vms_gather_munmap_vmas() + vms_complete_munmap_vmas() 6.12+, all under
    mmap_write_lock: ``do_vmi_munmap`` here), then a new private anonymous vma
    (VM_SOFTDIRTY set, as every new vma) with nothing present."""
    k.mmap_write_lock()
    flags = PROT[op.get("prot", "rw")] | VM_MAYWRITE | VM_SOFTDIRTY
    if op.get("hugetlb"):
        flags |= VM_HUGETLB
    if op.get("thp"):
        flags |= VM_HUGEPAGE
    start, n = op["addr"], op.get("pages", 1)
    do_vmi_munmap(k, start, start + n)
    m = k.mmv()
    k.set_mm(k.mm, vmas=_vma_edit(m.vmas, start, start + n, lambda f: None, new=Vma(start, start + n, flags)))
    k.mmap_write_unlock()
    return None


def _zap_range(k, mm, start, end):
    k.pte_lock(mm)
    for a in range(start, end):
        if k.pmd(a // k.HPAGE_PMD_NR, mm) is None or huge_memory.zap_huge(k, mm, a):
            zap_pte(k, mm, a)
    k.pte_unlock(mm)


def do_vmi_munmap(k, start, end) -> None:
    """do_munmap() (do_vmi_munmap() 6.2+) of [start, end) in the current mm, its
    mmap_lock held for write by the caller: unmap_region() zaps every entry
    under the PT lock (zap_pte_range(): a present page loses its rmap and the
    mapping's reference, a swap entry is freed with free_swap_and_cache(), a
    THP's PMD is split where the range cuts it; references others hold -- pins,
    pipe buffers -- stay on the page), then the vmas are cut out (split_vma()).
    munmap(), mmap(MAP_FIXED) over a mapping and mremap(MREMAP_FIXED) onto one
    all unmap this way.  Versions: 5.7 .. 6.18."""
    _zap_range(k, k.mm, start, end)
    k.set_mm(k.mm, vmas=_vma_edit(k.mmv().vmas, start, end, lambda f: None))


@step("munmap")
def do_munmap(k, fr, op):
    """__vm_munmap(): mmap_write_lock, do_vmi_munmap() (``do_vmi_munmap``)."""
    k.mmap_write_lock()
    start, n = op["addr"], op.get("pages", 1)
    do_vmi_munmap(k, start, start + n)
    k.mmap_write_unlock()
    return None


@step("madvise")
def do_madvise(k, fr, op):
    """do_madvise(): MADV_DONTNEED zaps (mmap_lock for read);
    MADV_DONTFORK/DOFORK/HUGEPAGE/NOHUGEPAGE/MERGEABLE edit vm_flags
    (mmap_lock for write); MADV_COLLAPSE (6.1+, mmap_lock for read) is
    khugepaged.madvise_collapse()."""
    advice = op["advice"]
    start, n = op["addr"], op.get("pages", 1)
    if advice == "collapse":
        return khugepaged.madvise_collapse(k, op)
    if advice == "dontneed":
        k.mmap_read_lock()
        _zap_range(k, k.mm, start, start + n)
        k.mmap_read_unlock()
        return None
    k.mmap_write_lock()
    fn = {"dontfork": lambda f: f | VM_DONTCOPY, "dofork": lambda f: f & ~VM_DONTCOPY,
          "hugepage": lambda f: (f | VM_HUGEPAGE) & ~VM_NOHUGEPAGE,
          "nohugepage": lambda f: (f | VM_NOHUGEPAGE) & ~VM_HUGEPAGE,
          "mergeable": lambda f: f | VM_MERGEABLE}[advice]
    k.set_mm(k.mm, vmas=_vma_edit(k.mmv().vmas, start, start + n, fn))
    vma_adjust_trans_huge(k)
    k.mmap_write_unlock()
    return None


@step("mprotect")
def do_mprotect(k, fr, op):
    """mprotect_fixup() -> change_protection() -> change_pte_range() under
    the PT lock: removing PROT_WRITE write-protects the ptes; adding it maps
    a pte writable only if the design allows it (6.0+ can_change_pte_writable():
    exclusive anon page, soft-dirty not being tracked or the pte soft-dirty)."""
    k.mmap_write_lock()
    start, n = op["addr"], op.get("pages", 1)
    prot = PROT[op["prot"]]
    k.pte_lock()
    for a in range(start, start + n):
        vma = k.find_vma(a)
        if vma is not None and vma.flags & (VM_READ | VM_WRITE) == prot:
            continue        # mprotect_fixup(): newflags == oldflags returns before change_protection() (5.7 .. 6.18)
        if k.pmd(a // k.HPAGE_PMD_NR) is not None:
            huge_memory.change_huge_pmd(k, a, prot, start, start + n)
            continue
        pte = k.pte(a)
        if not k.is_present(pte):
            continue
        if not prot & VM_WRITE and pte.write:
            k.set_pte_at(a, pte._replace(write=False))
        elif prot & VM_WRITE and not pte.write:
            vma = k.find_vma(a)
            page = vm_normal_page(pte)
            nv = vma._replace(flags=(vma.flags & ~(VM_READ | VM_WRITE)) | prot)
            if page is not None and k.PageAnon(page) and k.design.mprotect_make_writable(k, nv, pte, page, pte.idx):
                k.set_pte_at(a, pte._replace(write=True))
    k.pte_unlock()
    k.set_mm(k.mm, vmas=_vma_edit(k.mmv().vmas, start, start + n,
                                  lambda f: (f & ~(VM_READ | VM_WRITE)) | prot))
    k.mmap_write_unlock()
    return None


@step("clear_refs")
def clear_refs_soft_dirty(k, fr, op):
    """clear_refs_write(CLEAR_REFS_SOFT_DIRTY) -> clear_soft_dirty(): every
    present pte is write-protected and its soft-dirty bit cleared, vmas lose
    VM_SOFTDIRTY; 5.11+ (9348b73c2e1b) leaves writable ptes of maybe-pinned
    pages alone (the design's clear_refs_skip)."""
    k.mmap_write_lock()
    k.pte_lock()
    for a, pte in enumerate(k.mmv().ptes):
        if not k.is_present(pte):
            continue
        page = vm_normal_page(pte)
        if pte.write and page is not None and k.design.clear_refs_skip(k, k.mm, page):
            continue
        k.set_pte_at(a, pte._replace(write=False, soft_dirty=False))
    k.pte_unlock()
    k.set_mm(k.mm, vmas=tuple(v._replace(flags=v.flags & ~VM_SOFTDIRTY) for v in k.mmv().vmas))
    k.mmap_write_unlock()
    return None


@step("exit")
def do_exit(k, fr, op):
    """do_exit() (exit_group()): files are closed (io_uring rings unregister
    their fixed buffers, gup_test drops its pins, the process's pipes are
    freed), then exit_mmap() zaps every mapping.  exit_mmap() runs at the last
    mmput(): the process's other threads leave the kernel first -- a thread
    inside a fault, a gup-fast walk or a pin completes it, holding the mm
    (kernel/exit.c exit_mm(), all versions) -- so the step waits for them."""
    if k.other_threads_in_kernel():
        raise Blocked("exit_mmap() waits for the process's threads to leave the kernel")
    name = op["process"]
    for r in [r for r in k.refs if r.mm == k.mm and r.kind in ("io_uring", "gup_test", "gup")]:
        k.drop_ref(r)
    for r in [r for r in k.refs if r.kind == "pipe" and r.owner.startswith(name + ":")]:
        k.drop_ref(r)
    k.mmap_write_lock()
    m = k.mmv()
    _zap_range(k, k.mm, 0, len(m.ptes))
    k.set_mm(k.mm, alive=False, vmas=(), mmap_lock=0)
    k.effect(Exit(k.mm))
    return None


op("mmap", "mmap", "mmap(MAP_PRIVATE|MAP_ANONYMOUS)", ("addr", "pages", "prot", "thp", "hugetlb"),
   "create a private anonymous mapping")
op("munmap", "munmap", "munmap()", ("addr", "pages"), "unmap pages")
op("madvise", "madvise", "madvise()", ("addr", "pages", "advice"),
   "advice: dontneed | dontfork | dofork | hugepage | nohugepage | mergeable | collapse (MADV_COLLAPSE, 6.1+)")
op("mprotect", "mprotect", "mprotect()", ("addr", "pages", "prot"), "prot: r | rw | none")
op("clear_refs", "clear_refs", "echo 4 > /proc/self/clear_refs", (), "clear soft-dirty bits (write-protects)")
op("exit", "exit", "exit()", (), "the process exits")


class MremapFrame(NamedTuple):
    """The locals of move_vma()'s prep_move_vma() -> ksm_madvise(MADV_UNMERGEABLE)
    -> unmerge_ksm_pages() loop: ``i``, the page of the range break_ksm() is
    at; ``faulted``: its fault has just returned."""
    i: int = 0
    faulted: bool = False


@step("mremap")
def do_mremap(k, fr, op):
    """mremap(old_len == new_len, MREMAP_MAYMOVE|MREMAP_FIXED) -> mremap_to(),
    mmap_lock held for write throughout.

    * No vma at addr (vma_lookup()) or a source range that runs past its vma's
      end (remap_is_valid()/vma_to_resize(): "can't remap across vm area
      boundaries") is -EFAULT; overlapping source and destination is -EINVAL
      (an ``Error`` effect, nothing changes).  Where these checks fall relative
      to the destination's unmapping differs between releases (5.7's
      mremap_to() unmaps it before vma_to_resize() looks at the source; 6.15+
      look the vma up in do_mremap() first and check its end after the
      unmapping); the model checks first.  6.17+
      (d23cb648e365) also moves a range spanning several vmas, one vma at a
      time; the model refuses it as 5.7 .. 6.16 do.
    * do_munmap() of the destination (MREMAP_FIXED: "munmap dst first"), as
      munmap() would (``do_vmi_munmap``).
    * move_vma() (its prep_move_vma() since the 6.15 rework; inline before):
      ksm_madvise(MADV_UNMERGEABLE) of the source range, which for a
      VM_MERGEABLE vma breaks every KSM page mapped there (break_ksm(), since
      1ff829957316 "ksm: prevent mremap move poisoning", 2.6.32; the vma keeps
      VM_MERGEABLE) -- ``mremap_unmerge``.
    * move_page_tables() (``mremap_move``)."""
    k.mmap_write_lock()
    start, n, dst = op["addr"], op.get("pages", 1), op["new_addr"]
    vma = k.find_vma(start)
    if vma is None or start + n > vma.end or (start + n > dst and dst + n > start):
        k.effect(Error("mremap", k.mm, start))
        k.mmap_write_unlock()
        return None
    do_vmi_munmap(k, dst, dst + n)
    return mremap_unmerge(k, MremapFrame(0), op)


def _ksm_page_at(k, a) -> bool:
    """break_ksm()'s test (follow_page() in older releases, a page-table walk,
    ksm_walk_ops, in newer ones): a present pte mapping a KSM page (a swap
    entry is left alone)."""
    if k.pmd(a // k.HPAGE_PMD_NR) is not None:
        return False
    pte = k.pte(a)
    return k.is_present(pte) and pte.pfn != ZERO_PFN and k.PageKsm(pte.pfn)


@step("mremap.unmerge")
def mremap_unmerge(k, fr: MremapFrame, op):
    """unmerge_ksm_pages() over the source range of a VM_MERGEABLE vma:
    break_ksm() faults on each KSM page until it is one no longer
    (handle_mm_fault(): FAULT_FLAG_WRITE 5.7 .. 6.0, FAULT_FLAG_UNSHARE from
    6cce3314b928, 6.1: the design's break_ksm_unshare) with mmap_lock held;
    then the move."""
    start, n = op["addr"], op.get("pages", 1)
    vma = k.find_vma(start)
    first = fr.i + 1 if fr.faulted and k.ret == VM_FAULT_SIGSEGV else fr.i    # break_ksm() gives up on an error
    if vma.flags & VM_MERGEABLE:
        for i in range(first, n):
            if _ksm_page_at(k, start + i):
                unshare = k.design.break_ksm_unshare
                return enter_fault(MremapFrame(i, faulted=True), start + i, write=not unshare, unshare=unshare,
                                   then="mremap.unmerge", mm_locked=True)
    return mremap_move(k, op)


def mremap_move(k, op):
    """move_vma() -> copy_vma() + move_page_tables(): the page-table entries
    of [addr, addr+pages) move to new_addr (move_ptes(): present and swap
    entries alike, no reference or mapcount changes); a PMD only partly moved
    is split first (the cow.c "partially mremap()'ed THP" variant); then the
    source is unmapped (unmap_source_vma(): nothing is left there to zap)."""
    start, n, dst = op["addr"], op.get("pages", 1), op["new_addr"]
    m = k.mmv()
    vma = k.find_vma(start)
    k.pte_lock()
    _move_refs(k, start, n, dst)
    for a in range(start, start + n):
        h = a // k.HPAGE_PMD_NR
        if k.pmd(h) is not None:
            base = h * k.HPAGE_PMD_NR
            if (start <= base and base + k.HPAGE_PMD_NR <= start + n and (dst - start) % k.HPAGE_PMD_NR == 0):
                continue
            huge_memory.__split_huge_pmd_locked(k, k.mm, h)
    moved = []
    for a in range(start, start + n):
        h = a // k.HPAGE_PMD_NR
        if k.pmd(h) is not None and a % k.HPAGE_PMD_NR == 0:
            k.set_pmd_at((a + dst - start) // k.HPAGE_PMD_NR, k.pmd(h))
            k.set_pmd_at(h, None)
        elif k.pmd(h) is None:
            moved.append((a, k.pte(a)))
            k.set_pte_at(a, None)
    for a, p in moved:
        k.set_pte_at(a + dst - start, p)
    k.pte_unlock()
    vmas = _vma_edit(m.vmas, start, start + n, lambda f: None)
    k.set_mm(k.mm, vmas=copy_vma(vmas, vma._replace(start=dst, end=dst + n,
                                                    pgoff_shift=vma.pgoff_shift + start - dst)))
    for a in range(start, start + n):
        k.effect(Move(k.mm, a, a + dst - start))
    k.mmap_write_unlock()
    return None


def copy_vma(vmas, new):
    """copy_vma() (mm/mmap.c; mm/vma.c from 6.12): the moved vma keeps its
    anon_vma.  One that has none was never faulted, so its vm_pgoff follows
    the new address and it merges with its new neighbours as a new vma
    would (vma_merge_new_range()); one with an anon_vma keeps its vm_pgoff,
    which the model does not have, so it is left unmerged (a merge needs
    contiguous vm_pgoffs and the same anon_vma).  5.7 .. 6.18."""
    if new.anon_vma:
        return tuple(sorted(vmas + (new,)))
    return _vma_edit(vmas, new.start, new.end, lambda f: f, new=new._replace(pgoff_shift=0))


def _move_refs(k, start, n, dst) -> None:
    """The references taken for an address in the moved range and still on
    the page that address's entry refers to now belong to the new address:
    move_ptes() moves the entries -- present, migration and swap entries
    alike -- and a pin or pipe buffer holds the page, not the address (the
    model's Ref.addr names the mapping a reference must stay coherent with).
    A page swapped out under a reference stays in the swap cache, where the
    moved swap entry still finds it."""
    for j, r in enumerate(k.refs):
        if r.mm == k.mm and start <= r.addr < start + n and _entry_holds(k, lookup(k, r.addr), r.pfn, r.idx):
            k.refs[j] = r._replace(addr=r.addr + dst - start)


def _entry_holds(k, pte, pfn, idx) -> bool:
    """Does this page-table entry refer to subpage (pfn, idx): a present or
    migration entry of it, or a swap entry of its swap-cache slot."""
    if pte is None:
        return False
    if pte.kind in (PTE_PRESENT, PTE_MIGRATION):
        return pte.pfn == pfn and pte.idx == idx
    if pte.kind == PTE_SWAP:
        f = k.folios[pfn] if 0 <= pfn < len(k.folios) else None
        return f is not None and bool(f.flags & PG_swapcache) and f.swap[idx] == pte.pfn
    return False


op("mremap", "mremap", "mremap(MREMAP_MAYMOVE|MREMAP_FIXED)", ("addr", "pages", "new_addr"),
   "move pages to new_addr (splits a partly moved THP)")
