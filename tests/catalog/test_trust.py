"""The false-verdict regressions of issue "Verdicts you can trust" under every
design: each case gave a false missed or wrong COW (or ran to the step limit)
before its fix.  Expected verdicts cite the kernel code that decides them."""
import pytest

from cowlab import catalog, designs
from cowlab.kernel.effects import Copy, Error, Load, Move, Segv, Store, Unmap
from cowlab.kernel.types import PG_ksm, PG_swapcache, ZERO, ZERO_PFN
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
S_PARTIAL = ("io_uring/memmap.c io_pin_pages() (io_sqe_buffer_register() in 5.x) unpins a partial pin and fails "
             "-EFAULT: nothing is pinned at fork, the page is shared and COW-copied for the parent's write "
             "(before the fix the model kept the pin: 5.7/5.8 gave a false wrong COW)")
S_SEGV_FIRST = "access_error() -> SIGSEGV kills the parent only (do_exit()); the child reads the page it shared"
S_FORK_DMA_GET = ("O_DIRECT takes FOLL_GET before a7e689dd1c06 (6.5): page_maybe_dma_pinned() does not see it, fork "
                  "shares the page and the DMA lands in the child's page too (the O_DIRECT vs fork problem)")
S_FORK_DMA_PIN = ("a7e689dd1c06 (6.5) FOLL_PIN: fork copies the pinned page for the child (70e806e4e645) and the DMA "
                  "stays the parent's; the copy counts as unnecessary where fork saw gup-fast's pin before it was "
                  "handed over (folio_maybe_dma_pinned() counts any FOLL_PIN reference)")
S_ANON_VMA = ("mm/memory.c copy_page_range() / vma_needs_copy() (5.19+): no pte of a vma without an anon_vma is "
              "copied; the pages there are the zero page, so the child's own faults give the same data and the "
              "only copies are the two writes' copies of the zero page (wp_page_copy())")

S_FRESH = ("mm/memory.c do_swap_page(): on zram (SWP_SYNCHRONOUS_IO) an entry with one user is read into a fresh "
           "folio that skips the swap cache and is mapped exclusive (folio != swapcache, c145e0b47c77 5.18; "
           "RMAP_EXCLUSIVE 5.19+), so the write reuses it; 5.7/5.8 and the RFCs reuse by mapcount; live probe "
           "agrees on 6.18 (cowlab conformance swapin-fresh-exclusive)")
S_FRESH_PC = ("09854ba94c6a (5.9) .. 5.18 decide the write by page_count(): the other CPU's lru_add batch holds a "
              "reference that lru_add_drain() cannot drain (d4c470970d45's 'remote LRU pagevecs'), so it copies; "
              "5.18's swap-in maps the fresh folio writable on a write fault only")
S_KSM_DRAIN = ("mm/ksm.c scan_get_next_rmap_item(): ksmd's lru_add_drain_all() lets the batched page merge; "
               "do_wp_page() copies a KSM page from 5.9 (09854ba94c6a), 5.7/5.8 reuse it when mapped once "
               "(reuse_ksm_page()); live probe agrees on 6.18 (cowlab conformance ksm-merge-lru-batch)")
S_FORK_CPU = ("fork copies the pinned page for the child from 5.9 (70e806e4e645) and the child's page out swaps "
              "the copy (its CPU's lru_add batch drained); 5.7/5.8 share it (mapcount 2: MADV_PAGEOUT skips it); "
              "the parent's write stays its own either way; live probe agrees on 6.18 "
              "(cowlab conformance lru-batch-fork-child-cpu)")
S_FORK_CPU_57 = "5.7/5.8 share the pinned page at fork; the parent's write copies it away from its own pin (wrong)"
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

S_FORK_WRITE = ("mm/memory.c copy_present_pte(s)(): a store through the parent's pte before ptep_set_wrprotect() / "
                "wrprotect_ptes() lands in the page the child then shares (the child may read it), one after faults "
                "and waits for dup_mmap()'s mmap_write_lock and copies; copy_huge_pmd() write-protects a PMD in one "
                "step; live probe tools/fork_race_probe.c on 6.18 (the child sees stores made during fork(), none "
                "made after it returned)")
S_NEIGHBOUR = ("mm/mremap.c copy_vma() keeps a faulted vma's vm_pgoff (no merge at the new address), mprotect_fixup() "
               "with unchanged flags merges nothing; fork copies the moved page, the parent's write copies it "
               "(do_wp_page(): mapcount 2) and the child keeps its data")

S_SWAP_OFFSETS = ("mm/swapfile.c setup_swap_map(): offset 0 is the swap header, small folios paged out take 1..8; "
                  "alloc_swap_folio() (6.12, 242d12c98174) swaps in pages 4..7 as one fresh exclusive folio, which "
                  "fork shares and the child's write copies; live probe on 6.18 (docs/findings/"
                  "mthp-swapin-split-offsets.toml and a probe of this case: a 16 kB folio at pages 4..7)")
S_SWAP_OFFSETS_RFC = ("LKML 17 Dec 2021 (Linus): mapcount does not see another process's swap entry; rfc-mapcount's "
                      "do_swap_page() maps the child's page writable at mapcount 0 while the parent's swap pte "
                      "still uses the entry (before 6.12 the pages near the first fault stay swapped out at fork)")

S_SWAP_CURSOR = ("the per-CPU swap cluster hands out offsets in order (live probe on 6.18: 4..11 after 1..3 were "
                 "freed); 6.12+ swaps pages 8..11 in as one fresh exclusive 16 kB folio, fork shares it and the "
                 "child's write copies its page; before 6.12 small pages, the same data")


EXPECT = {
    "mremap-pinned-page": row(("", S_MREMAP), linux_5_7=("wrong", S_MREMAP_57), linux_5_8=("wrong", S_MREMAP_57)),
    "dma-after-munmap": row(("", S_UNMAP)),
    "dma-after-dontneed": row(("", S_UNMAP)),
    "dma-after-munmap-shared": row(("", S_UNMAP_SHARED), linux_5_7=("missed", S_UNMAP_SHARED),
                                   linux_5_8=("missed", S_UNMAP_SHARED)),
    "pageout-hugetlb": row(("", S_PAGEOUT)),
    "write-gup-prot-read": row(("", S_EFAULT)),
    "read-prot-none": row(("", S_PROTNONE)),
    "fork-no-anon-vma": row(("", S_ANON_VMA)),
    "mremap-neighbour-stays": row(("", S_NEIGHBOUR)),
    "gup-partial": row(("", S_PARTIAL)),
    "segv-first-process": row(("", S_SEGV_FIRST)),
    "mmap-fixed-over-shared": row(("", S_MAP_FIXED)),
    "mremap-fixed-onto-shared": row(("", S_MREMAP_FIXED)),
    "mremap-ksm-unmerge": row(("", S_MREMAP_KSM)),
    "dma-after-munmap-mremap": row(("", S_DMA_MREMAP)),
    "mremap-vmsplice-swapped": row(("", S_VMSPLICE_SWAP)),
    "mremap-buffer-order": row(("", S_BUF_ORDER)),
    "mremap-pinned-onto-buffer": row(("", S_MREMAP_ONTO_PIN), linux_5_7=("wrong", S_MREMAP_57),
                                     linux_5_8=("wrong", S_MREMAP_57)),
    "race-fork-write": row(("", S_FORK_WRITE)),
    "race-fork-write-thp": row(("", S_FORK_WRITE)),
    "race-fork-write-pte-thp": row(("", S_FORK_WRITE)),
    "race-fork-odirect": row(("missed", S_FORK_DMA_GET), linux_6_5=("unnecessary", S_FORK_DMA_PIN),
                             linux_6_9=("unnecessary", S_FORK_DMA_PIN), linux_6_18=("unnecessary", S_FORK_DMA_PIN)),
    "swapin-fresh-exclusive": row(("", S_FRESH), linux_5_9=("unnecessary", S_FRESH_PC),
                                  linux_5_11=("unnecessary", S_FRESH_PC), linux_5_18=("unnecessary", S_FRESH_PC)),
    "ksm-merge-lru-batch": row(("", S_KSM_DRAIN)),
    "lru-batch-fork-child-cpu": row(("", S_FORK_CPU), linux_5_7=("wrong", S_FORK_CPU_57),
                                    linux_5_8=("wrong", S_FORK_CPU_57)),
    "mthp-swapin-offsets": row(("", S_SWAP_OFFSETS), rfc_mapcount=("missed", S_SWAP_OFFSETS_RFC)),
    "swap-offsets-continue": row(("", S_SWAP_CURSOR), rfc_mapcount=("missed", S_SWAP_OFFSETS_RFC)),
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
    # O_DIRECT's -EFAULT is an Error too (__iomap_dio_rw()); the WRITE_FIXED has no buffer (io_import_fixed())
    assert calls == ["odirect_read", "PIN_LONGTERM_TEST_START", "io_uring_register", "io_uring_write_fixed"]
    assert {e.errno for _, e in effects if type(e) is Error} == {14}
    assert not any(type(e) is Segv for _, e in effects)


@pytest.mark.parametrize("design", ALL)
def test_pageout_of_hugetlb_is_einval(design):
    run, effects = _effects("pageout-hugetlb", design)
    assert [(e.call, e.errno) for _, e in effects if type(e) is Error] == [("madvise(MADV_PAGEOUT)", 22)]


@pytest.mark.parametrize("design", ALL)
def test_fork_copies_no_pte_of_a_vma_without_anon_vma(design):
    # copy_page_range() -> vma_needs_copy(): only the vmas with an anon_vma are copied: [2, 4) (page 3 was mapped
    # next to the written page 2 and merged into its vma) and [5] (written); [0] and [6] were only read (the
    # mprotect of [5] to [6]'s flags does not merge a vma with an anon_vma into one without: is_mergeable_anon_vma());
    # page 8, only read, moved by mremap() to 9 merges into [10]'s vma (copy_vma() of a vma never faulted)
    from cowlab.kernel.effects import CopyPte
    run, effects = _effects("fork-no-anon-vma", design)
    assert run.end == "done"
    copied = sorted(e.addr for _, e in effects if type(e) is CopyPte)
    assert copied == [2, 3, 5, 9, 10]
def _after_swapin(design, **settings):
    """swapin-fresh-exclusive's state right after the other thread's read swap-in."""
    m = CowModel(catalog.get("swapin-fresh-exclusive"), designs.load(design, settings or None))
    run = list(sequential(m))
    s = [tr for tr in run if tr.func == "do_swap_page_set_pte"][-1].state
    pte = s.mms[0].ptes[0]
    return pte, s.folios[pte.pfn], s


@pytest.mark.parametrize("design", ALL)
def test_swapin_on_zram_skips_the_swap_cache(design):
    # do_swap_page() "skip swapcache": a fresh folio, not in the swap cache, the slot freed; exclusive 5.19+
    pte, f, s = _after_swapin(design)
    assert not f.flags & PG_swapcache and f.swap == (-1,)
    assert all(sl is None for sl in s.swap)
    assert f.anon_exclusive == ((True,) if designs.load(design).anon_exclusive else (False,))


@pytest.mark.parametrize("design,settings,writable", [
    ("linux-6.18", {}, True),                               # c18160dba5ff (6.11)
    ("linux-6.9", {}, False),                               # v6.9/v6.10: writable on a write fault only
    ("linux-6.9", {"swapin_read_mkwrite": True}, True),     # v6.11 .. v6.14
    ("linux-6.5", {}, False), ("linux-5.19", {}, False)])
def test_read_swapin_maps_an_exclusive_page_writable_from_6_11(design, settings, writable):
    pte, f, _ = _after_swapin(design, **settings)
    assert f.anon_exclusive == (True,)
    assert pte.write is writable and not pte.dirty


@pytest.mark.parametrize("design", ALL)
def test_ksmd_merges_a_page_in_an_lru_batch(design):
    # scan_get_next_rmap_item()'s lru_add_drain_all(): the batch's reference does not refuse the merge
    run, effects = _effects("ksm-merge-lru-batch", design)
    assert [type(e).__name__ for _, e in effects if type(e).__name__.startswith("Ksm")] == ["KsmMerge"]
    r = check_copies("ksm-merge-lru-batch", design)
    assert r.copies["correct"] == (1 if design in ("linux-5.7", "linux-5.8") else 2), r.copies


def check_copies(case, design):
    from cowlab.run import run_sequential
    return run_sequential(CowModel(catalog.get(case), designs.load(design)))


@pytest.mark.parametrize("design", ALL)
def test_the_child_pages_out_the_copy_fork_made(design):
    # the copy is in the batch of the CPU fork ran on, which the child shares (model.cpu_of) and drains
    m = CowModel(catalog.get("lru-batch-fork-child-cpu"), designs.load(design))
    run = list(sequential(m))
    child = m.case.processes.index("child")
    after = [tr for tr in run if tr.op.startswith("pageout")][-1].state
    kind = after.mms[child].ptes[0].kind
    from cowlab.kernel.types import PTE_SWAP
    assert (kind == PTE_SWAP) is (design not in ("linux-5.7", "linux-5.8")), kind


def _outcomes(case, design):
    from cowlab.conformance.runner import model_steps
    _, steps = model_steps(catalog.get(case), designs.load(design))
    return [(proc, op.name, r.kind, r.errno, r.pages) for proc, op, _s, _st, _ld, _t, r in steps]


# what the kernel answered, probed live on 6.18 (tools: a 2-page range whose second page is unmapped):
# vmsplice() returned 4096, IORING_REGISTER_BUFFERS and the O_DIRECT read EFAULT (page 0 filled by the read)
GUP_PARTIAL = [("parent", "mmap", "ok", None, None), ("parent", "write", "ok", None, None),
               ("parent", "vmsplice", "ok", None, 1), ("parent", "io_uring_register", "error", 14, None),
               ("parent", "odirect_read", "error", 14, None), ("parent", "read", "ok", None, None),
               ("parent", "pipe_read", "ok", None, None), ("parent", "fork", "ok", None, None),
               ("parent", "write", "ok", None, None), ("parent", "io_uring_write_fixed", "error", 14, None),
               ("child", "read", "ok", None, None), ("child", "exit", "ok", None, None)]


@pytest.mark.parametrize("design", ALL)
def test_partial_gup_outcomes(design):
    # iter_to_pipe(): a short count; io_pin_pages(): whole or -EFAULT; __iomap_dio_rw(): -EFAULT
    assert _outcomes("gup-partial", design) == GUP_PARTIAL


@pytest.mark.parametrize("design", ALL)
def test_partial_io_uring_registration_pins_nothing(design):
    from cowlab.conformance.runner import model_steps
    _, steps = model_steps(catalog.get("gup-partial"), designs.load(design))
    after = {op.name: st for _p, op, st, *_ in steps[:6]}
    assert [r for r in after["vmsplice"].refs if r.kind == "pipe"]            # the pipe keeps page 0
    assert not [r for r in after["io_uring_register"].refs if r.kind == "io_uring"]     # unpinned again


@pytest.mark.parametrize("design", ALL)
def test_a_killed_first_process_leaves_its_child_running(design):
    assert _outcomes("segv-first-process", design) == [
        ("parent", "mmap", "ok", None, None), ("parent", "write", "ok", None, None),
        ("parent", "fork", "ok", None, None), ("parent", "mprotect", "ok", None, None),
        ("parent", "read", "killed", None, None),
        ("parent", "write", "not_run", None, None), ("child", "read", "ok", None, None),
        ("child", "exit", "ok", None, None)]


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


# ----------------------------------------------------------------------------- huge pages (the random run at 512)
S_HUGE_ZERO = ("do_huge_pmd_anonymous_page(): a read fault maps the huge zero folio; copy_huge_pmd() shares it; a "
               "write maps a fresh THP (6.13+ do_huge_zero_wp_pmd(); 5.7) or splits it and copies a 4 KiB zero page "
               "(5.8 .. 6.12): nothing is shared that was written")
S_PAGEOUT_REF = ("shrink_folio_list(): can_split_folio() refuses a THP with the pipe's extra reference, so it stays "
                 "PMD-mapped; fork shares it, the child's write copies (no pin: 5.7's mapcount sees two mappers)")
S_PAGEOUT_RANGE = ("madvise_cold_or_pageout_pte_range(): the parent's own 4 KiB copy is reclaimed, the THP the child "
                   "maps is left; the swap-in reads the parent's own data")
S_PAGEOUT_SPLIT = ("madvise_cold_or_pageout_pte_range(): split_folio() of the THP the range does not cover; "
                   "remap_page() maps its all-zero subpages to the shared zero page from 6.12 (b1f202060afe): the "
                   "writes after fork copy the zero page or the swapped-in page, nothing is shared that was written")
EXPECT_HUGE = {"huge-zero-page": row(("", S_HUGE_ZERO)), "thp-pageout-extra-ref": row(("", S_PAGEOUT_REF)),
               "thp-pageout-range": row(("", S_PAGEOUT_RANGE)), "thp-pageout-partial": row(("", S_PAGEOUT_SPLIT)),
               "thp-pageout-partial-pmd": row(("", S_PAGEOUT_SPLIT))}


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
    """From 6.10 every folio of the range mapped only by this process is reclaimed: the parent's 4 KiB copy of
    subpage 1 (not the folio at addr, the THP the child still maps, which stays: "if
    (folio_maybe_mapped_shared(folio)) continue;" in v6.18's madvise_cold_or_pageout_pte_range()).  Before 6.10 the
    walk of the PMD stops at that shared large folio -- v5.7 .. v6.1 "if (page_mapcount(page) != 1) break;", v6.5
    "if (folio_estimated_sharers(folio) != 1) break;" (2f406263e3e9), v6.9 "if (folio_likely_mapped_shared(folio))
    break;" -- so nothing is reclaimed."""
    from cowlab.kernel.types import PTE_PRESENT, PTE_SWAP
    st = _states("thp-pageout-range", design, nr)
    ops = [op for _, op, _ in st]
    s = st[ops.index("pageout")][2]
    kinds = [p.kind for p in s.mms[0].ptes]
    if design in ("linux-6.18",):
        assert kinds[1] == PTE_SWAP and all(k == PTE_PRESENT for i, k in enumerate(kinds) if i != 1), kinds
    else:
        assert all(k == PTE_PRESENT for k in kinds), kinds
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


def _zeropage_split(design, settings=None):
    """(the design, its thp_split_zeropage)."""
    d = designs.load(design, settings or None)
    return d, d.thp_split_zeropage


@pytest.mark.parametrize("nr", [2, 8])
@pytest.mark.parametrize("design", ALL)
def test_pageout_of_part_of_a_pte_mapped_thp_splits_it(design, nr):
    """split_folio() of the pte-mapped THP (mprotect split its PMD and vma; MADV_PAGEOUT of subpage 0 covers only
    part of it): every subpage is a small folio of its own afterwards; from 6.12 (thp_split_zeropage) the all-zero
    ones map the shared zero page and nothing is swapped, before 6.12 subpage 0 is reclaimed.  Subpage 1 (written)
    keeps its data in its own small folio either way, exclusive where the design has PG_anon_exclusive."""
    from cowlab.kernel.types import PG_anon, PTE_PRESENT, PTE_SWAP, ZERO, ZERO_PFN
    d, zero = _zeropage_split(design)
    st = _states("thp-pageout-partial", design, nr)
    ops = [op for _, op, _ in st]
    before, s = st[ops.index("pageout") - 1][2], st[ops.index("pageout")][2]
    large = before.mms[0].ptes[0].pfn
    assert len(before.folios[large].data) == nr and before.mms[0].pmds[0] is None
    ptes = s.mms[0].ptes
    one = s.folios[ptes[1].pfn]
    assert ptes[1].kind == PTE_PRESENT and len(one.data) == 1 and one.data[0] != ZERO and one.flags & PG_anon
    assert not d.anon_exclusive or one.anon_exclusive == (True,)
    rest = [ptes[i] for i in range(2, nr)]
    if zero:
        assert ptes[0].kind == PTE_PRESENT and ptes[0].pfn == ZERO_PFN and not any(s.swap)
        assert all(p.kind == PTE_PRESENT and p.pfn == ZERO_PFN for p in rest)
        assert sum(f is not None for f in s.folios) == sum(f is not None for f in before.folios)   # the rest freed
    else:
        assert ptes[0].kind == PTE_SWAP
        assert all(p.kind == PTE_PRESENT and p.pfn != ZERO_PFN and len(s.folios[p.pfn].data) == 1 for p in rest)
        assert len({p.pfn for p in rest} | {ptes[1].pfn}) == nr - 1


@pytest.mark.parametrize("nr", [2, 8])
@pytest.mark.parametrize("design", ALL)
def test_pageout_of_part_of_a_pmd_mapped_thp_splits_it(design, nr):
    """The PMD case: MADV_PAGEOUT of subpage 0 of a PMD-mapped THP splits the folio (PMD and all); fork then shares
    subpage 1's own small folio and the child's write copies it."""
    from cowlab.kernel.types import PTE_PRESENT, PTE_SWAP, ZERO_PFN
    _, zero = _zeropage_split(design)
    st = _states("thp-pageout-partial-pmd", design, nr)
    ops = [op for _, op, _ in st]
    s = st[ops.index("pageout")][2]
    ptes = s.mms[0].ptes
    assert s.mms[0].pmds[0] is None and len(s.folios[ptes[1].pfn].data) == 1
    if zero:
        assert all(ptes[i].kind == PTE_PRESENT and ptes[i].pfn == ZERO_PFN for i in range(nr) if i != 1)
        assert not any(s.swap)
    else:
        assert ptes[0].kind == PTE_SWAP and all(ptes[i].pfn != ZERO_PFN for i in range(1, nr))
    s = st[ops.index("fork") + 1][2]                            # the child's write copied subpage 1
    assert s.mms[1].ptes[1].pfn != s.mms[0].ptes[1].pfn


@pytest.mark.parametrize("settings,zero", [({}, False), ({"thp_split_zeropage": True}, True)])
def test_linux_6_9_reaches_6_12_by_setting(settings, zero):
    """linux-6.9 covers 6.9 .. 6.14: off by default (6.9 .. 6.11), thp_split_zeropage=true for 6.12 .. 6.14."""
    from cowlab.conformance.runner import model_steps
    from cowlab.kernel.types import PTE_PRESENT, PTE_SWAP
    d, got = _zeropage_split("linux-6.9", settings)
    assert got == zero
    _, steps = model_steps(catalog.get("thp-pageout-partial", hpage_pmd_nr=2), d)
    s = [st for _, op, st, *_ in steps if op.name == "pageout"][0]
    p = s.mms[0].ptes[0]
    assert p.kind == (PTE_PRESENT if zero else PTE_SWAP) and (not zero or p.pfn == ZERO_PFN)


@pytest.mark.parametrize("design", ALL)
def test_a_moved_vma_stays_apart_from_its_new_neighbour(design):
    # copy_vma(): the moved one-page vma keeps its vm_pgoff and does not merge; mprotect_fixup() with unchanged flags
    # merges nothing (the random run's thp / outcome / madvise reproducer, kernel 6.18.44: EINVAL); MADV_COLLAPSE
    # of a vma that cannot hold a PMD is -EINVAL (thp_vma_allowable_order()), and so is the advice before 6.1
    from cowlab.kernel.types import HPAGE_PMD_NR
    case = catalog.get("mremap-neighbour-stays")
    m = CowModel(case, designs.load(design))
    run = list(sequential(m))
    vmas = [(v.start, v.end) for v in run[-1].state.mms[0].vmas]
    n = HPAGE_PMD_NR
    assert (n, n + 1) in vmas and (n + 1, 2 * n) in vmas, vmas
    errs = [e for tr in run for e in tr.effects if type(e) is Error]
    assert [(e.call, e.errno) for e in errs] == [("madvise(MADV_COLLAPSE)", 22)]


def test_a_new_mapping_next_to_a_moved_vma_stays_apart():
    # the second reproducer of the random run's thp / outcome / madvise class (docs/findings/mmap-next-to-moved-vma,
    # which a live 6.18.44 run answers EINVAL at the MADV_COLLAPSE): mmap_region()'s new vma (vm_pgoff from its
    # address) does not merge with the moved one (vm_pgoff kept by copy_vma()): their vm_pgoffs are not contiguous
    from pathlib import Path

    from cowlab.conformance.runner import model_steps
    from cowlab.toml_format import load_case
    path = Path(__file__).resolve().parent.parent.parent / "docs" / "findings" / "mmap-next-to-moved-vma.toml"
    m, steps = model_steps(load_case(str(path)), designs.load("linux-6.18"))
    proc, op, s, *_, res = steps[-1]
    assert op.name == "madvise" and res.kind == "error" and res.errno == 22
    assert [(v.start, v.end) for v in s.mms[0].vmas] == [(0, 512), (512, 513), (513, 1024)]
