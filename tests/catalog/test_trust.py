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
S_PARTIAL = ("io_uring/memmap.c io_pin_pages() (io_sqe_buffer_register() in 5.x) unpins a partial pin and fails "
             "-EFAULT: nothing is pinned at fork, the page is shared and COW-copied for the parent's write "
             "(before the fix the model kept the pin: 5.7/5.8 gave a false wrong COW)")
S_SEGV_FIRST = "access_error() -> SIGSEGV kills the parent only (do_exit()); the child reads the page it shared"
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
    "gup-partial": row(("", S_PARTIAL)),
    "segv-first-process": row(("", S_SEGV_FIRST)),
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
    # O_DIRECT's -EFAULT is an Error too (__iomap_dio_rw()); the WRITE_FIXED has no buffer (io_import_fixed())
    assert calls == ["odirect_read", "PIN_LONGTERM_TEST_START", "io_uring_register", "io_uring_write_fixed"]
    assert {e.errno for _, e in effects if type(e) is Error} == {14}
    assert not any(type(e) is Segv for _, e in effects)


@pytest.mark.parametrize("design", ALL)
def test_pageout_of_hugetlb_is_einval(design):
    run, effects = _effects("pageout-hugetlb", design)
    assert [(e.call, e.errno) for _, e in effects if type(e) is Error] == [("madvise(MADV_PAGEOUT)", 22)]


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
