"""The false-verdict regressions of issue "Verdicts you can trust" under every
design: each case gave a false missed or wrong COW (or ran to the step limit)
before its fix.  Expected verdicts cite the kernel code that decides them."""
import pytest

from cowlab import catalog, designs
from cowlab.kernel.effects import Error, Segv
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


EXPECT = {
    "mremap-pinned-page": row(("", S_MREMAP), linux_5_7=("wrong", S_MREMAP_57), linux_5_8=("wrong", S_MREMAP_57)),
    "dma-after-munmap": row(("", S_UNMAP)),
    "dma-after-dontneed": row(("", S_UNMAP)),
    "dma-after-munmap-shared": row(("", S_UNMAP_SHARED), linux_5_7=("missed", S_UNMAP_SHARED),
                                   linux_5_8=("missed", S_UNMAP_SHARED)),
    "pageout-hugetlb": row(("", S_PAGEOUT)),
    "write-gup-prot-read": row(("", S_EFAULT)),
    "read-prot-none": row(("", S_PROTNONE)),
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


# ----------------------------------------------------------------------------- huge pages (the random run at 512)
S_HUGE_ZERO = ("do_huge_pmd_anonymous_page(): a read fault maps the huge zero folio; copy_huge_pmd() shares it; a "
               "write maps a fresh THP (6.13+ do_huge_zero_wp_pmd(); 5.7) or splits it and copies a 4 KiB zero page "
               "(5.8 .. 6.12): nothing is shared that was written")
S_PAGEOUT_REF = ("shrink_folio_list(): can_split_folio() refuses a THP with the pipe's extra reference, so it stays "
                 "PMD-mapped; fork shares it, the child's write copies (no pin: 5.7's mapcount sees two mappers)")
S_PAGEOUT_RANGE = ("madvise_cold_or_pageout_pte_range(): the parent's own 4 KiB copy is reclaimed, the THP the child "
                   "maps is left; the swap-in reads the parent's own data")
EXPECT_HUGE = {"huge-zero-page": row(("", S_HUGE_ZERO)), "thp-pageout-extra-ref": row(("", S_PAGEOUT_REF)),
               "thp-pageout-range": row(("", S_PAGEOUT_RANGE))}


@pytest.mark.parametrize("case,design", [(c, d) for c in EXPECT_HUGE for d in ALL])
def test_huge_page_case(case, design):
    check(case, design, *EXPECT_HUGE[case][design])


def _states(case, design, nr):
    """Per operation of the sequential run: (process, op name, state after it)."""
    from cowlab.conformance.runner import model_steps
    m, steps = model_steps(catalog.get(case, hpage_pmd_nr=nr), designs.load(design))
    return [(proc, op.name, s) for proc, op, s, *_ in steps]


@pytest.mark.parametrize("nr", [2, 8])
@pytest.mark.parametrize("design", ALL)
def test_a_read_of_an_unfaulted_thp_maps_the_huge_zero_page(design, nr):
    """set_huge_zero_folio(): one read-only PMD of the huge zero folio (every subpage present, not anon, not
    mapcounted); fork gives the child the same PMD; the parent's write then maps a fresh exclusive THP where the
    design says so (huge_zero_wp_thp: 5.7, 6.13+) or splits the PMD into zero-page ptes and copies one page."""
    from cowlab.kernel.types import PG_anon, PG_huge_zero, ZERO_PFN
    d = designs.load(design)
    st = _states("huge-zero-page", design, nr)
    ops = [op for _, op, _ in st]
    s = st[ops.index("read")][2]
    hz = s.mms[0].pmds[0]
    assert hz is not None and not hz.write and s.folios[hz.pfn].flags & PG_huge_zero
    assert not s.folios[hz.pfn].flags & PG_anon and s.mms[0].pmds[1] is None     # the other huge page: untouched
    s = st[ops.index("fork")][2]
    assert s.mms[1].pmds[0] == hz
    s = st[ops.index("write")][2]
    new = s.mms[0].pmds[0]
    if d.huge_zero_wp_thp:
        assert new is not None and new.pfn != hz.pfn and s.folios[new.pfn].flags & PG_anon and new.write
        assert not d.anon_exclusive or all(s.folios[new.pfn].anon_exclusive)
    else:
        assert new is None and s.mms[0].ptes[0].pfn == ZERO_PFN and s.mms[0].ptes[1].pfn != ZERO_PFN
    # the child still maps the huge zero page (but 5.8's vmsplice broke COW first, should_force_cow_break())
    assert (s.mms[1].pmds[0] == hz) == (design != "linux-5.8")


@pytest.mark.parametrize("nr", [2, 8])
@pytest.mark.parametrize("design", ALL)
def test_pageout_of_a_thp_a_pipe_holds_leaves_it_mapped(design, nr):
    """can_split_folio() fails with the pipe's reference: the THP stays PMD-mapped, nothing is swapped."""
    st = _states("thp-pageout-extra-ref", design, nr)
    ops = [op for _, op, _ in st]
    before, after = st[ops.index("pageout") - 1][2], st[ops.index("pageout")][2]
    assert after.mms[0].pmds[0] is not None and after.mms[0].pmds[0].pfn == before.mms[0].pmds[0].pfn
    assert all(p is None for p in after.mms[0].ptes) and not any(after.swap)


@pytest.mark.parametrize("nr", [2, 8])
@pytest.mark.parametrize("design", ALL)
def test_pageout_walks_its_range(design, nr):
    """Every folio of the range mapped only by this process is reclaimed: the parent's 4 KiB copy of subpage 1
    (not the folio at addr, the THP the child still maps, which stays)."""
    from cowlab.kernel.types import PTE_PRESENT, PTE_SWAP
    st = _states("thp-pageout-range", design, nr)
    ops = [op for _, op, _ in st]
    s = st[ops.index("pageout")][2]
    kinds = [p.kind for p in s.mms[0].ptes]
    assert kinds[1] == PTE_SWAP and all(k == PTE_PRESENT for i, k in enumerate(kinds) if i != 1), kinds
    assert s.mms[1].pmds[0] is not None


@pytest.mark.parametrize("design", ["linux-6.18", "linux-5.9"])
def test_pageout_of_a_thp_nothing_else_holds_swaps_it(design):
    """The control: without the pipe's reference the THP is reclaimed (split and swapped out whole)."""
    from cowlab.scenario import Script
    from cowlab.kernel.types import PTE_SWAP
    s = Script("thp-pageout-control", "MADV_PAGEOUT of a THP nothing else holds", pages=4, hpage_pmd_nr=4,
               tags=("thp",))
    p = s.process("parent")
    p.mmap(0, pages=4, thp=True)
    p.write(0, pages=4)
    p.pageout(0, pages=4)
    m = CowModel(s.build(), designs.load(design))
    st = m.init_state()
    for tr in sequential(m):
        st = tr.state
    assert all(x is not None and x.kind == PTE_SWAP for x in st.mms[0].ptes), st.mms[0].ptes
