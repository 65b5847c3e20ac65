"""mm/khugepaged.c in the model: MADV_COLLAPSE and khugepaged keep the
kernel's books.  Expected numbers come from the kernel code (comments name
the function, in torvalds/linux mm/khugepaged.c 00f58104202c unless said)."""
import pytest

from cowlab import designs
from cowlab.kernel.effects import CollapsePmd, Error
from cowlab.kernel.types import PG_lru, PTE_SWAP
from cowlab.model import CowModel
from cowlab.schedule import sequential
from cowlab.scenario import Script

N = 4


def pte_mapped_thp(s, p, n=N):
    """A PMD-mapped THP of n subpages with distinct data, PTE-mapped by mprotect() of its second subpage (cow.c)."""
    p.mmap(0, pages=n, thp=True)
    for i in range(n):
        p.write(i, value=f"d{i}")
    p.mprotect(1, prot="r")
    p.mprotect(1, prot="rw")


def run(s, design, settings=None):
    trs = []
    r = sequential(CowModel(s.build(), designs.load(design, settings or {})), max_steps=5000)
    for tr in r:
        assert not tr.bugs, tr.bugs
        assert not tr.events or all(e.kind == "correct" for e in tr.events), tr.events
        trs.append(tr)
    assert r.end == "done", r.end
    return r.state, [e for tr in trs for e in tr.effects]


def errors(effects):
    return [(e.call, e.errno) for e in effects if type(e) is Error]


@pytest.mark.parametrize("design", ["linux-6.5", "linux-6.9", "linux-6.18"])
def test_collapse_maps_a_fresh_exclusive_thp(design):
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    pte_mapped_thp(s, p)
    p.madvise(0, pages=N, advice="collapse")
    st, eff = run(s, design)
    m = st.mms[0]
    assert errors(eff) == []
    assert all(pte is None for pte in m.ptes[:N])              # the ptes are gone (__collapse_huge_page_copy_succeeded)
    pmd = m.pmds[0]
    f = st.folios[pmd.pfn]
    assert pmd.write and pmd.dirty                             # maybe_pmd_mkwrite(pmd_mkdirty(_pmd), vma)
    assert f.data == ("d0", "d1", "d2", "d3")                  # __collapse_huge_page_copy()
    assert f.entire_mapcount == 1 and f.mapcount == (0,) * N and f.refcount == 1
    assert f.anon_exclusive == (True,) * N                     # folio_add_new_anon_rmap(RMAP_EXCLUSIVE)
    assert f.flags & PG_lru                                    # folio_add_lru_vma()
    old = [e for e in eff if type(e) is CollapsePmd][0].old
    assert old and all(st.folios[o] is None for o in old)      # the old THP lost its last mapping: freed
    assert sum(1 for x in st.folios if x is not None) == 2     # the zero page and the new THP


@pytest.mark.parametrize("design", ["linux-5.7", "linux-5.18", "linux-5.19", "rfc-mapcount"])
def test_no_madv_collapse_before_6_1(design):
    # 7d8faaf15545 (6.1): before it madvise_behavior_valid() does not know the advice: -EINVAL, nothing changes
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    pte_mapped_thp(s, p)
    p.madvise(0, pages=N, advice="collapse")
    st, eff = run(s, design)
    assert errors(eff) == [("madvise(MADV_COLLAPSE)", 22)]
    assert st.mms[0].pmds[0] is None and all(pte is not None for pte in st.mms[0].ptes[:N])


def test_a_pinned_page_is_not_collapsed():
    # __collapse_huge_page_isolate() / hpage_collapse_scan_pmd(): is_refcount_suitable() fails with the pin's
    # reference (SCAN_PAGE_COUNT), madvise_collapse_errno(SCAN_PAGE_COUNT) = -EAGAIN; the ptes stay
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    pte_mapped_thp(s, p)
    p.pin_longterm(2)
    p.madvise(0, pages=N, advice="collapse")
    st, eff = run(s, "linux-6.18")
    assert errors(eff) == [("madvise(MADV_COLLAPSE)", 11)]
    assert st.mms[0].pmds[0] is None
    before = st.mms[0].ptes[:N]
    assert len({pte.pfn for pte in before}) == 1                # still the old THP, PTE-mapped


def test_all_read_only_range_fails_until_6_18():
    # hpage_collapse_scan_pmd(): no writable pte -> SCAN_PAGE_RO -> -EINVAL (up to 6.17); 6.18 collapses
    # (the live probe, tools/probe_madv_collapse.py fully)
    for design, want in (("linux-6.9", [("madvise(MADV_COLLAPSE)", 22)]), ("linux-6.18", [])):
        s = Script("t", pages=N, hpage_pmd_nr=N); p, c = s.process("parent"), s.process("child")
        pte_mapped_thp(s, p)
        p.fork(c)
        p.madvise(0, pages=N, advice="collapse")
        st, eff = run(s, design)
        assert errors(eff) == want, design
        if not want:
            new = st.folios[st.mms[0].pmds[0].pfn]
            old = st.mms[1].ptes[0].pfn
            # the child keeps the old THP, now mapped by it alone; the parent's copy is exclusive
            assert st.folios[old].mapcount == (1,) * N and st.folios[old].refcount == N
            assert new.anon_exclusive == (True,) * N and new.data == st.folios[old].data


def test_swap_entries_are_swapped_in_first():
    # __collapse_huge_page_swapin(): do_swap_page() on each swap pte, then the collapse (MADV_COLLAPSE ignores
    # max_ptes_swap: cc->is_khugepaged is false)
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    pte_mapped_thp(s, p)
    p.pageout(3)
    s2 = s
    st, _ = run(s2, "linux-6.18")
    assert st.mms[0].ptes[3].kind == PTE_SWAP                   # (MADV_PAGEOUT of one subpage split the THP)
    p.madvise(0, pages=N, advice="collapse")
    st, eff = run(s, "linux-6.18")
    assert errors(eff) == []
    f = st.folios[st.mms[0].pmds[0].pfn]
    assert f.data == ("d0", "d1", "d2", "d3")
    assert all(x is None for x in st.swap)                      # the slot was freed by the swap-in


def test_collapse_refuses_a_vma_without_thp():
    # madvise_collapse(): thp_vma_allowable_order() fails for VM_NOHUGEPAGE -> -EINVAL
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    pte_mapped_thp(s, p)
    p.madvise(0, pages=N, advice="nohugepage")
    p.madvise(0, pages=N, advice="collapse")
    st, eff = run(s, "linux-6.18")
    assert errors(eff) == [("madvise(MADV_COLLAPSE)", 22)]


def test_unaligned_range_collapses_nothing_and_succeeds():
    # madvise_collapse(): hstart = round_up(start), hend = round_down(end): no whole PMD -> thps == 0 == 0 -> 0
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    pte_mapped_thp(s, p)
    p.madvise(1, pages=2, advice="collapse")
    st, eff = run(s, "linux-6.18")
    assert errors(eff) == [] and st.mms[0].pmds[0] is None


def test_an_already_pmd_mapped_thp_counts_as_collapsed():
    # find_pmd_or_thp_or_none() -> SCAN_PMD_MAPPED: madvise_collapse() counts it (++thps)
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    p.mmap(0, pages=N, thp=True); p.write(0, pages=N)
    p.madvise(0, pages=N, advice="collapse")
    st, eff = run(s, "linux-6.18")
    assert errors(eff) == [] and st.mms[0].pmds[0] is not None


def test_khugepaged_collapses_and_applies_its_tunables():
    # khugepaged_scan_mm_slot() -> hpage_collapse_scan_pmd() with cc->is_khugepaged: max_ptes_none =
    # HPAGE_PMD_NR - 1 (khugepaged_init()): with one subpage left it collapses, with none it has nothing to scan
    s = Script("t", pages=8, hpage_pmd_nr=8); p = s.process("parent")
    p.mmap(0, pages=8, thp=True); p.write(0, pages=8, value="x")
    p.madvise(1, pages=7, advice="dontneed")                    # a single pte of the THP left
    p.khugepaged(0)
    st, eff = run(s, "linux-6.18")
    assert st.mms[0].pmds[0] is not None and errors(eff) == []
    f = st.folios[st.mms[0].pmds[0].pfn]
    assert f.data[0] == "x" and f.data[1:] == (0,) * 7          # clear_user_highpage() for the none ptes
    # max_ptes_shared = HPAGE_PMD_NR / 2: a range all of whose pages another process maps stays
    s = Script("t", pages=8, hpage_pmd_nr=8); p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=8, thp=True); p.write(0, pages=8)
    p.mprotect(1, prot="r"); p.mprotect(1, prot="rw")
    p.fork(c)
    p.khugepaged(0)
    st, eff = run(s, "linux-6.18")
    assert st.mms[0].pmds[0] is None                            # SCAN_EXCEED_SHARED_PTE; khugepaged reports nothing


def test_khugepaged_needs_madv_hugepage():
    # hugepage_vma_revalidate() with TVA_ENFORCE_SYSFS (enabled=madvise): no VM_HUGEPAGE, no collapse
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    pte_mapped_thp(s, p)
    p.madvise(0, pages=N, advice="nohugepage")
    p.khugepaged(0)
    st, _ = run(s, "linux-6.18")
    assert st.mms[0].pmds[0] is None


def test_collapse_waits_for_gup_fast_with_irqs_off():
    # tlb_remove_table_sync_one(): the collapse step is not enabled while another thread runs gup-fast with IRQs off
    from cowlab.kernel.txn import Blocked, Kernel
    from cowlab.kernel.paths import STEPS
    from cowlab.kernel.mm.khugepaged import CollapseFrame
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent"); s.cpu("parent", "cpu1")
    pte_mapped_thp(s, p)
    st, _ = run(s, "linux-6.18")
    st = st._replace(threads=tuple(t._replace(irqs_off=(i == 1)) for i, t in enumerate(st.threads)))
    k = Kernel(st, designs.load("linux-6.18"), tid=0, mm=0, hpage_pmd_nr=N)
    fr = CollapseFrame(0, 1, locked=False, hpage=None)
    with pytest.raises(Blocked):
        STEPS["collapse.huge"](k, fr, {"addr": 0, "pages": N})


def test_the_scenario_file_knows_madv_collapse_and_khugepaged(tmp_path):
    from cowlab.toml_format import load_case
    f = tmp_path / "c.toml"
    f.write_text('id = "c"\npages = 4\nhpage_pmd_nr = 4\n'
                 '[[step]]\nthread = "p"\nop = "mmap"\naddr = 0\npages = 4\nthp = true\n'
                 '[[step]]\nthread = "p"\nop = "write"\naddr = 0\npages = 4\n'
                 '[[step]]\nthread = "p"\nop = "split_pmd"\naddr = 0\n'
                 '[[step]]\nthread = "p"\nop = "madvise"\naddr = 0\npages = 4\nadvice = "collapse"\n'
                 '[[step]]\nthread = "p"\nop = "khugepaged"\naddr = 0\n')
    c = load_case(str(f))
    st = None
    r = sequential(CowModel(c, designs.load("linux-6.18")), max_steps=5000)
    for tr in r:
        assert not tr.bugs
        st = tr.state
    assert r.end == "done" and st.mms[0].pmds[0] is not None     # split, then collapsed again
    bad = tmp_path / "b.toml"
    bad.write_text('id = "b"\npages = 1\n[[step]]\nthread = "p"\nop = "madvise"\naddr = 0\nadvice = "colapse"\n')
    with pytest.raises(Exception) as e:
        load_case(str(bad))
    assert "b.toml" in str(e.value) and "advice" in str(e.value)


def test_a_vma_too_small_for_a_pmd_is_refused():
    # hugepage_vma_check() / thp_vma_allowable_order(): transhuge_vma_suitable(vma, vm_end - HPAGE_PMD_SIZE) fails
    # for a VMA that holds no aligned PMD: madvise_collapse() returns -EINVAL
    s = Script("t", pages=N, hpage_pmd_nr=N); p = s.process("parent")
    p.mmap(1, pages=2); p.write(1, pages=2)
    p.madvise(1, pages=2, advice="collapse")
    st, eff = run(s, "linux-6.18")
    assert errors(eff) == [("madvise(MADV_COLLAPSE)", 22)]
