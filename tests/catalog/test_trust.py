"""The false-verdict regressions of issue "Verdicts you can trust" under every
design: each case gave a false missed or wrong COW (or ran to the step limit)
before its fix.  Expected verdicts cite the kernel code that decides them."""
import pytest

from cowlab import catalog, designs
from cowlab.kernel.effects import Copy, Error, Load, Move, Segv, Store, Unmap
from cowlab.kernel.types import PG_ksm, ZERO, ZERO_PFN
from cowlab.model import CowModel
from cowlab.schedule import sequential

from .expect import ALL, check, row

S_MREMAP = ("mm/mremap.c move_ptes() moves the pte, the io_uring fixed buffer holds the pinned page: nothing is "
            "disconnected from 5.9 on, where fork copies the pinned page for the child (70e806e4e645)")
S_MREMAP_57 = ("5.7/5.8: fork shares the pinned page (no early COW before 70e806e4e645, 5.9) and the parent's "
               "write copies it away from its own pin: a real wrong COW")
S_UNMAP = ("io_uring/rsrc.c: the fixed buffer keeps its pages after munmap()/MADV_DONTNEED; no process maps them, "
           "so DMA through it reaches nobody")
S_UNMAP_SHARED = ("5.7/5.8 share the pinned page with the child at fork (early COW from 70e806e4e645, 5.9): DMA "
                  "through the parent's pin after its munmap() lands in the child's page")
S_PAGEOUT = "mm/madvise.c: MADV_PAGEOUT on a VM_HUGETLB vma is -EINVAL; hugetlb reuse by mapcount (hugetlb_wp())"
S_EFAULT = "mm/gup.c check_vma_flags(): FOLL_WRITE on a vma without VM_WRITE is -EFAULT; nothing is pinned"
S_PROTNONE = "arch/x86/mm/fault.c access_error(): a read of a PROT_NONE vma is SIGSEGV, which kills the child"
S_FORK_DMA_GET = ("O_DIRECT takes FOLL_GET before a7e689dd1c06 (6.5): page_maybe_dma_pinned() does not see it, fork "
                  "shares the page and the DMA lands in the child's page too (the O_DIRECT vs fork problem)")
S_FORK_DMA_PIN = ("a7e689dd1c06 (6.5) FOLL_PIN: fork copies the pinned page for the child (70e806e4e645) and the DMA "
                  "stays the parent's; the copy counts as unnecessary where fork saw gup-fast's pin before it was "
                  "handed over (folio_maybe_dma_pinned() counts any FOLL_PIN reference)")
S_MAP_FIXED = ("mm/mmap.c mmap_region() unmaps the old page first (do_munmap() .. vms_complete_munmap_vmas(), "
               "5.7 .. 6.18): the parent's read maps the zero page, its write copies only that; the child keeps "
               "its page alone")
S_MREMAP_FIXED = ("mm/mremap.c mremap_to(): do_munmap() of the destination, then move_ptes(); the parent's write "
                  "copies the page the child still maps (do_wp_page(): mapcount / refcount 2)")
S_MREMAP_KSM = ("mm/mremap.c move_vma() -> ksm_madvise(MADV_UNMERGEABLE) -> break_ksm() (1ff829957316, 2.6.32): "
                "the KSM page is copied before the move, a copy needed (the other page maps it)")
S_DMA_MREMAP = ("io_uring/rsrc.c: the fixed buffer holds the pinned page after munmap(); WRITE_FIXED sends what the "
                "process had there, whatever mremap() moved onto the address (no process maps the page)")
S_VMSPLICE_SWAP = ("mm/mremap.c move_ptes() moves the swap entry; the pipe holds the page (in the swap cache since "
                   "MADV_PAGEOUT): it returns what the process wrote")
S_BUF_ORDER = ("io_uring/rsrc.c: the fixed buffer's pages, fs/splice.c: the pipe's buffers, in the order they were "
               "taken; move_ptes() moves the mappings only: nothing is disconnected or shared")
S_MREMAP_ONTO_PIN = ("mm/mremap.c mremap_to(): do_munmap() of the destination (the buffer's second page, which the "
                     "buffer keeps), then move_ptes() of its first page there: that pin stays coherent with page 1; "
                     "from 5.9 fork copies it for the child (70e806e4e645)")


EXPECT = {
    "mremap-pinned-page": row(("", S_MREMAP), linux_5_7=("wrong", S_MREMAP_57), linux_5_8=("wrong", S_MREMAP_57)),
    "dma-after-munmap": row(("", S_UNMAP)),
    "dma-after-dontneed": row(("", S_UNMAP)),
    "dma-after-munmap-shared": row(("", S_UNMAP_SHARED), linux_5_7=("missed", S_UNMAP_SHARED),
                                   linux_5_8=("missed", S_UNMAP_SHARED)),
    "pageout-hugetlb": row(("", S_PAGEOUT)),
    "write-gup-prot-read": row(("", S_EFAULT)),
    "read-prot-none": row(("", S_PROTNONE)),
    "mmap-fixed-over-shared": row(("", S_MAP_FIXED)),
    "mremap-fixed-onto-shared": row(("", S_MREMAP_FIXED)),
    "mremap-ksm-unmerge": row(("", S_MREMAP_KSM)),
    "dma-after-munmap-mremap": row(("", S_DMA_MREMAP)),
    "mremap-vmsplice-swapped": row(("", S_VMSPLICE_SWAP)),
    "mremap-buffer-order": row(("", S_BUF_ORDER)),
    "mremap-pinned-onto-buffer": row(("", S_MREMAP_ONTO_PIN), linux_5_7=("wrong", S_MREMAP_57),
                                     linux_5_8=("wrong", S_MREMAP_57)),
    "race-fork-odirect": row(("missed", S_FORK_DMA_GET), linux_6_5=("unnecessary", S_FORK_DMA_PIN),
                             linux_6_9=("unnecessary", S_FORK_DMA_PIN), linux_6_18=("unnecessary", S_FORK_DMA_PIN)),
}


@pytest.mark.parametrize("case,design", [(c, d) for c in EXPECT for d in ALL])
def test_trust_case(case, design):
    check(case, design, *EXPECT[case][design])


def _effects(case, design):
    m = CowModel(catalog.get(case), designs.load(design))
    run = sequential(m)
    out = [(m.case.threads[tr.tid].process, e) for tr in run for e in tr.effects]
    return run, out


@pytest.mark.parametrize("design", ALL)
def test_a_prot_none_read_kills_the_process(design):
    # access_error(): SIGSEGV, and the child runs nothing after it (no load, no store of its own)
    run, effects = _effects("read-prot-none", design)
    assert run.end == "done"
    child = [type(e).__name__ for p, e in effects if p == "child"]
    assert "Segv" in child
    after = child[child.index("Segv") + 1:]
    assert "Load" not in after and "Store" not in after and "Exit" in after


@pytest.mark.parametrize("design", ALL)
def test_write_gup_of_a_read_only_mapping_is_efault(design):
    run, effects = _effects("write-gup-prot-read", design)
    assert run.end == "done"
    calls = [e.call for _, e in effects if type(e) is Error]
    assert calls == ["PIN_LONGTERM_TEST_START", "io_uring_register"]       # O_DIRECT's error is the read's own
    assert not any(type(e) is Segv for _, e in effects)


@pytest.mark.parametrize("design", ALL)
def test_pageout_of_hugetlb_is_einval(design):
    run, effects = _effects("pageout-hugetlb", design)
    assert [e.call for _, e in effects if type(e) is Error] == ["madvise(MADV_PAGEOUT)"]


def _op_effects(case, design):
    """[(process, operation name, transition, effects of that step)] of the sequential run."""
    m = CowModel(catalog.get(case), designs.load(design))
    run = sequential(m)
    out = []
    for tr in run:
        t = m.case.threads[tr.tid]
        pc = run.before.threads[tr.tid].pc
        out.append((t.process, m.ops[tr.tid][pc].name, tr, list(tr.effects)))
    assert run.end == "done"
    return m, out


@pytest.mark.parametrize("design", ALL)
def test_mmap_fixed_unmaps_the_old_page_first(design):
    # mmap_region(): the parent's page is unmapped by the mmap, the child keeps it; the parent reads zero and
    # copies nothing but the zero page
    m, steps = _op_effects("mmap-fixed-over-shared", design)
    parent = m.case.processes.index("parent")
    mmaps = [e for p, op, _, es in steps if p == "parent" and op == "mmap" for e in es]
    assert Unmap(parent, 0) in mmaps
    loads = [e for p, op, _, es in steps if p == "parent" and op == "read" for e in es if type(e) is Load]
    assert loads[0].data == ZERO
    copies = [e for _, _, _, es in steps for e in es if type(e) is Copy]
    assert copies and all(c.old_pfn == ZERO_PFN for c in copies)


@pytest.mark.parametrize("design", ALL)
def test_mremap_fixed_unmaps_the_destination_first(design):
    # mremap_to(): do_munmap() of the destination, then the move; the parent reads at page 1 what it wrote at 0
    m, steps = _op_effects("mremap-fixed-onto-shared", design)
    parent = m.case.processes.index("parent")
    mr = [e for p, op, _, es in steps if op == "mremap" for e in es]
    assert Unmap(parent, 1) in mr and Move(parent, 0, 1) in mr
    assert not any(type(e) is Error for e in mr)
    stores = [e.data for p, op, _, es in steps if p == "parent" and op == "write" for e in es if type(e) is Store]
    loads = [e.data for p, op, _, es in steps if p == "parent" and op == "read" for e in es if type(e) is Load]
    assert loads[0] == stores[0]


@pytest.mark.parametrize("design", ALL)
def test_mremap_unmerges_ksm_pages_before_the_move(design):
    # move_vma() -> ksm_madvise(MADV_UNMERGEABLE): the moved page is a private copy, the KSM page stays at page 1
    # mapped once (what the live kernel showed: mapcount 1)
    m, steps = _op_effects("mremap-ksm-unmerge", design)
    parent = m.case.processes.index("parent")
    mr = [(tr, es) for p, op, tr, es in steps if op == "mremap"]
    effects = [e for _, es in mr for e in es]
    kinds = [type(e) for e in effects]
    assert Copy in kinds and Move in kinds and kinds.index(Copy) < kinds.index(Move)
    s = mr[-1][0].state
    ptes = s.mms[parent].ptes
    moved, ksm = ptes[2], ptes[1]
    assert not s.folios[moved.pfn].flags & PG_ksm
    assert s.folios[ksm.pfn].flags & PG_ksm and s.folios[ksm.pfn].mapcount[ksm.idx] == 1


@pytest.mark.parametrize("design", ALL)
def test_a_fixed_buffer_returns_its_page_after_munmap_and_mremap(design):
    m, steps = _op_effects("dma-after-munmap-mremap", design)
    first = [e.data for p, op, _, es in steps if op == "write" for e in es if type(e) is Store][0]
    sent = [e.data for p, op, _, es in steps if op == "io_uring_write_fixed" for e in es if type(e) is Load]
    assert sent == [first]


@pytest.mark.parametrize("design", ALL)
def test_buffers_keep_their_order_after_mremap(design):
    # the fixed buffer and the pipe give pages 0, 1, 2 as written, though page 0 now lies at page 3
    m, steps = _op_effects("mremap-buffer-order", design)
    written = [e.data for p, op, _, es in steps if op == "write" for e in es if type(e) is Store]
    for name in ("io_uring_write_fixed", "pipe_read"):
        assert [e.data for p, op, _, es in steps if op == name for e in es if type(e) is Load] == written, name
