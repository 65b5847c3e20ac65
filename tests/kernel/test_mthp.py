"""Anonymous mTHP (6.8+, 19eaf44954df): alloc_anon_folio() in do_anonymous_page() and the paths that meet a
PTE-mapped large folio of any size.  Expected numbers come from the kernel code named in each test."""
import tomllib

import pytest

from cowlab import designs
from cowlab.kernel.types import PG_ksm, PG_large, PG_lru, ZERO_PFN
from cowlab.model import CowModel
from cowlab.scenario import ScenarioError, Script
from cowlab.schedule import sequential
from cowlab.toml_format import parse_case


def final_state(script, design, max_steps=20000):
    run = sequential(CowModel(script.build(), designs.load(design)), max_steps=max_steps)
    for tr in run:
        assert not tr.bugs, tr.bugs
    assert run.end == "done", run.end
    return run.state


def mthp_script(pages=8, pmd=8, sizes=(4,), vma=(0, 8), write=(0,)):
    s = Script("t", pages=pages, hpage_pmd_nr=pmd, settings={"thp_sizes": sizes})
    p = s.process("parent")
    p.mmap(vma[0], pages=vma[1] - vma[0], thp=True)
    for a in write:
        p.write(a)
    return s, p


@pytest.mark.parametrize("nr,pmd", [(4, 8), (8, 16), (16, 512)])
def test_a_write_fault_maps_a_large_folio_with_ptes(nr, pmd):
    # do_anonymous_page() -> alloc_anon_folio(): one folio of nr pages, folio_ref_add(nr - 1),
    # folio_add_new_anon_rmap(RMAP_EXCLUSIVE) (every subpage mapped once and PageAnonExclusive), folio_add_lru()
    # (a large folio goes to the LRU at once), set_ptes() of all nr ptes writable and dirty
    s, p = mthp_script(pages=pmd, pmd=pmd, sizes=(nr,), vma=(0, nr), write=(1,))
    st = final_state(s, "linux-6.18")
    ptes = st.mms[0].ptes[:nr]
    pfn = ptes[0].pfn
    f = st.folios[pfn]
    assert f.nr == nr and f.flags & PG_large and f.flags & PG_lru
    assert f.refcount == nr and f.mapcount == (1,) * nr and f.entire_mapcount == 0
    assert f.anon_exclusive == (True,) * nr
    assert [(p.pfn, p.idx, p.write, p.dirty) for p in ptes] == [(pfn, i, True, True) for i in range(nr)]
    assert all(p is None for p in st.mms[0].pmds)
    assert not [r for r in st.refs if r.pfn == pfn]     # no lru_add batch reference left on it


def test_the_highest_enabled_order_that_fits_the_vma_and_empty_ptes():
    # alloc_anon_folio(): highest_order() of thp_vma_suitable_orders() (aligned range inside the vma) whose
    # ptes are all none (pte_range_none(); a zero-page pte is not none), else order 0
    s = Script("t", pages=16, hpage_pmd_nr=16, settings={"thp_sizes": (4, 8)})
    p = s.process("parent")
    p.mmap(0, pages=12, thp=True)
    p.read(9)               # the zero page at 9: the 8-page range 8..15 is out of the vma anyway; 8..11 not none
    p.write(1)              # 0..7 inside the vma, all none: order 3
    p.write(10)             # 8..11 holds the zero-page pte at 9: no order 2; order 0
    p.write(8)              # the same
    st = final_state(s, "linux-6.9")
    ptes = st.mms[0].ptes
    assert st.folios[ptes[0].pfn].nr == 8 and {ptes[a].pfn for a in range(8)} == {ptes[0].pfn}
    assert ptes[9].pfn == ZERO_PFN
    assert st.folios[ptes[10].pfn].nr == 1 and st.folios[ptes[8].pfn].nr == 1


def test_a_read_fault_maps_the_small_zero_page():
    # do_anonymous_page(): !FAULT_FLAG_WRITE -> the 4 KiB shared zero page, whatever mTHP sizes are enabled
    s, p = mthp_script(write=())
    p.read(0)
    st = final_state(s, "linux-6.18")
    assert st.mms[0].ptes[0].pfn == ZERO_PFN and st.mms[0].ptes[1] is None


def test_without_vm_hugepage_or_before_6_8_a_fault_maps_a_base_page():
    # thp_vma_allowable_orders(): the model's hugepages-<kB>kB/enabled is "madvise"; 6.5 has no mTHP
    s = Script("t", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": (4,)})
    p = s.process("parent")
    p.mmap(0, pages=8)
    p.write(0)
    assert final_state(s, "linux-6.18").folios[1].nr == 1
    s, p = mthp_script()
    assert final_state(s, "linux-6.5").folios[1].nr == 1


def test_the_pmd_size_takes_the_pmd_path_only_when_enabled():
    # __handle_mm_fault(): create_huge_pmd() only if thp_vma_allowable_order(PMD_ORDER)
    s, _ = mthp_script(sizes=(4, 8))
    st = final_state(s, "linux-6.18")
    assert st.mms[0].pmds[0] is not None and st.folios[st.mms[0].pmds[0].pfn].nr == 8
    s, _ = mthp_script(sizes=(4,))
    st = final_state(s, "linux-6.18")
    assert st.mms[0].pmds[0] is None and st.folios[st.mms[0].ptes[0].pfn].nr == 4
    # a design without mTHP: the PMD size as today, nothing below it
    s, _ = mthp_script(sizes=(4, 8))
    assert final_state(s, "linux-6.5").mms[0].pmds[0] is not None


def test_fork_shares_every_pte_of_the_folio():
    # copy_present_ptes() (6.9+: folio_pte_batch() + folio_try_dup_anon_rmap_ptes()): every subpage's
    # PageAnonExclusive cleared, mapcount + 1, one reference per pte, both sides write-protected
    s, p = mthp_script(write=(0,))
    c = s.process("child")
    p.fork(c)
    st = final_state(s, "linux-6.9")
    pfn = st.mms[0].ptes[0].pfn
    f = st.folios[pfn]
    assert f.mapcount == (2,) * 4 and f.refcount == 8 and f.anon_exclusive == (False,) * 4
    for mm in (0, 1):
        assert [(p.pfn, p.idx, p.write) for p in st.mms[mm].ptes[:4]] == [(pfn, i, False) for i in range(4)]


def test_a_pinned_folio_is_copied_page_by_page_at_fork():
    # folio_needs_cow_for_dma() is per folio (_pincount): a pin of one subpage makes fork copy every exclusive
    # subpage for the child (the batch fails with -EBUSY, copy_present_ptes() retries pte by pte)
    s, p = mthp_script(write=(0,))
    c = s.process("child")
    p.pin_longterm(0, pages=1)
    p.fork(c)
    st = final_state(s, "linux-6.18")
    big = st.mms[0].ptes[0].pfn
    assert {st.mms[1].ptes[a].pfn for a in range(4)} & {big} == set()
    assert all(st.folios[st.mms[1].ptes[a].pfn].nr == 1 for a in range(4))
    assert st.folios[big].mapcount == (1,) * 4 and st.folios[big].anon_exclusive == (True,) * 4


def test_write_after_fork_copies_in_6_9_and_reuses_in_6_18_once_alone():
    # 6.9 cd197c3a2040: never reuse a large folio by its refcount; 6.18 1da190f4d0a6: reuse when every
    # reference is a mapping of this MM
    def script():
        s, p = mthp_script(write=(0,))
        c = s.process("child")
        p.fork(c)
        c.exit()
        p.write(0)
        return s
    st = final_state(script(), "linux-6.9")
    assert st.folios[st.mms[0].ptes[0].pfn].nr == 1                 # copied
    st = final_state(script(), "linux-6.18")
    pte = st.mms[0].ptes[0]
    f = st.folios[pte.pfn]
    assert f.nr == 4 and pte.write and f.anon_exclusive[0]         # reused, that page marked exclusive


def test_partial_munmap_leaves_the_folio_partially_mapped():
    # zap_pte_range() per pte: folio_remove_rmap_ptes() + the pte's reference; the rest stays mapped (the
    # kernel queues the folio for a deferred split, deferred_split_folio(), which changes no mapping)
    s, p = mthp_script(write=(0,))
    p.munmap(1, pages=2)
    st = final_state(s, "linux-6.18")
    f = st.folios[st.mms[0].ptes[0].pfn]
    assert f.nr == 4 and f.mapcount == (1, 0, 0, 1) and f.refcount == 2


def test_thp_sizes_in_a_script_and_a_file():
    s = Script("t", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": [4]})
    s.process("p").mmap(0, pages=8, thp=True)
    assert s.build().setting("thp_sizes") == (4,)
    for bad, msg in (((2,), "power of two in 4..8"), ((16,), "power of two in 4..8"), ((6,), "power of two"),
                     ((), "non-empty"), ((4, 4), "twice")):
        s = Script("t", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": bad})
        s.process("p").mmap(0, pages=8, thp=True)
        with pytest.raises(ScenarioError, match=msg):
            s.build()
    text = ('id = "m"\npages = 8\nhpage_pmd_nr = 8\nthp_sizes = [4]\n\n'
            '[[step]]\nthread = "p"\nop = "mmap"\naddr = 0\npages = 8\nthp = true\n')
    c = parse_case(tomllib.loads(text), text, "m.toml")
    assert c.setting("thp_sizes") == (4,)
    bad = text.replace("thp_sizes = [4]", "thp_sizes = [4, 3]")
    with pytest.raises(ScenarioError, match=r"^m.toml:4: thp_sizes: 3 is not a power of two in 4..8"):
        parse_case(tomllib.loads(bad), bad, "m.toml")
    bad = text.replace("hpage_pmd_nr = 8\n", "")
    with pytest.raises(ScenarioError, match=r"^m.toml:3: thp_sizes: .*set hpage_pmd_nr >= 4"):
        parse_case(tomllib.loads(bad), bad, "m.toml")
    bad = text.replace("thp_sizes = [4]", 'thp_sizes = "4"')
    with pytest.raises(ScenarioError, match=r"^m.toml:4: thp_sizes"):
        parse_case(tomllib.loads(bad), bad, "m.toml")


def _ksm_script(pin=False):
    s = Script("k", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": (4,)})
    p, q = s.process("parent"), s.process("other")
    p.mmap(0, pages=8, thp=True)
    p.madvise(0, pages=8, advice="mergeable")
    p.fork(q)
    p.write(0, pages=4, value=7)       # a fresh mTHP in each (after the fork: nothing shared)
    q.write(0, pages=4, value=7)
    if pin:
        q.pin_longterm(3, pages=1, pin="x")
    p.ksm_merge(1, of="other", other_addr=1)
    if pin:
        q.unpin(pin="x")
    p.read(0, pages=4)
    q.read(0, pages=4)
    q.exit()
    return s


@pytest.mark.parametrize("design", ["linux-6.9", "linux-6.18"])
def test_ksm_splits_a_pte_mapped_large_folio_and_merges_its_page(design):
    # try_to_merge_one_page(): "if (folio_test_large(folio)) { if (split_folio(folio)) goto out_unlock; }" for
    # both pages, then write_protect_page() + replace_page(): one KSM page mapped R/O at page 1 in both mms
    run = sequential(CowModel(_ksm_script().build(), designs.load(design)), max_steps=20000)
    merged = None
    for tr in run:
        assert not tr.bugs, tr.bugs
        s = tr.state
        if tr.label == "ksm.merge":
            merged = s
    assert run.end == "done" and merged is not None
    a, b = merged.mms[0].ptes[1], merged.mms[1].ptes[1]
    assert a.pfn == b.pfn and not a.write and not b.write and merged.folios[a.pfn].flags & PG_ksm
    assert merged.folios[a.pfn].nr == 1
    # the rest of each folio is small folios now (split), still mapped where they were
    for mm in (0, 1):
        assert all(merged.folios[merged.mms[mm].ptes[i].pfn].nr == 1 for i in range(4))


def test_ksm_leaves_a_pinned_large_folio_alone():
    # split_folio() fails (-EAGAIN: can_split_folio(), the pin's reference): the tree page is not merged and
    # break_cow() takes the first page back
    run = sequential(CowModel(_ksm_script(pin=True).build(), designs.load("linux-6.18")), max_steps=20000)
    for tr in run:
        assert not tr.bugs, tr.bugs
        if tr.label == "ksm.merge":
            s = tr.state
            assert s.folios[s.mms[1].ptes[1].pfn].nr == 4          # the pinned folio is whole
    assert run.end == "done"
