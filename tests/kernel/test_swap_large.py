"""Large-folio swap-out and swap-in, per kernel version.  Each expected outcome cites the kernel source it comes
from (torvalds/linux; the line quoted is the version's own code):

* shrink_folio_list(), mm/vmscan.c: v5.7 .. v6.9 "Split folios without a PMD map right away" --
  ``if (!folio_entire_mapcount(folio) && split_folio_to_list(folio, folio_list))`` (compound_mapcount() in 5.x);
  from v6.10 (5ed890ce5147 "mm: vmscan: avoid split during shrink_folio_list()") "Split partially mapped folios
  right away" -- ``if (data_race(!list_empty(&folio->_deferred_list)) && split_folio_to_list(...))``
  (``&& folio_test_partially_mapped(folio)`` from 8422acdc97ed, 6.12).  A PMD-mapped THP is added to the swap
  cache whole in every version (CONFIG_THP_SWAP, x86-64) and try_to_unmap(TTU_SPLIT_HUGE_PMD) splits its PMD.
* madvise_cold_or_pageout_pte_range(), mm/madvise.c: before v6.10 ``if (folio_test_large(folio)) { if
  (page_mapcount(page) != 1) break; ... split_folio() ...}`` (5.x; v6.5 ``folio_estimated_sharers(folio) != 1``,
  2f406263e3e9, which is page_mapcount(folio_page(folio, 0)); v6.9 ``folio_likely_mapped_shared()``); v6.10+
  (Ryan Roberts, "mm: madvise: avoid split during MADV_PAGEOUT and MADV_COLD") splits only when
  ``nr < folio_nr_pages(folio)`` and isolates a fully mapped one when ``folio_mapcount(folio) ==
  folio_nr_pages(folio)``.
* do_swap_page() / alloc_swap_folio() / can_swapin_thp(), mm/memory.c, from v6.12 (242d12c98174 "mm: support
  large folios swap-in for sync io devices"): on SWP_SYNCHRONOUS_IO with ``__swap_count(entry) == 1`` (the faulting
  entry only), orders ``thp_vma_allowable_orders(..., BIT(PMD_ORDER) - 1)`` -- never the PMD order --,
  ``(addr >> PAGE_SHIFT) % nr == swp_offset % nr``, swap_pte_batch() == nr and non_swapcache_batch() == nr; the
  fresh folio is "certainly exclusive"; with c18160dba5ff (6.11) every pte is mapped writable.
"""
import pytest

from cowlab import designs
from cowlab.catalog import cow_c
from cowlab.kernel.types import PG_large, PG_swapcache, PTE_PRESENT, PTE_SWAP
from cowlab.model import CowModel
from cowlab.schedule import sequential
from cowlab.scenario import Script

OLD = ["linux-5.7", "linux-5.9", "linux-5.19", "linux-6.5", "linux-6.9"]     # before 6.10
NEW = ["linux-6.18", "linux-6.9:swapout_large_unsplit=true"]                   # 6.10+
N = 8


def _run(case, design):
    """Every state of a sequential run (checks on: a model invariant broken is a failure)."""
    m = CowModel(case, designs.load(design))
    states = [m.init_state()]
    run = sequential(m, max_steps=20000)
    for tr in run:
        assert not tr.bugs, tr.bugs
        states.append(tr.state)
    assert run.end == "done", run.end
    return states


def _large_in_swapcache(states) -> bool:
    """Some state holds a large folio in the swap cache (it went to add_to_swap() whole)."""
    return any(f is not None and f.flags & PG_large and f.flags & PG_swapcache
               for s in states for f in s.folios)


def _thp(nr=N, pte_mapped=False, settings=None, title="t"):
    s = Script(title, pages=nr, hpage_pmd_nr=nr, settings=settings)
    p = s.process("parent")
    p.mmap(0, pages=nr, thp=True)
    p.write(0, pages=nr)
    if pte_mapped:
        p.mprotect(0, pages=1, prot="r")        # cow.c's PTE-mapping trick
        p.mprotect(0, pages=1, prot="rw")
    return s, p


@pytest.mark.parametrize("design", OLD + NEW)
def test_a_pmd_mapped_thp_goes_to_swap_whole_in_every_version(design):
    """shrink_folio_list(): folio_entire_mapcount() != 0 -> no split; add_to_swap() gets one aligned cluster;
    try_to_unmap(TTU_SPLIT_HUGE_PMD) leaves a swap pte per subpage."""
    s, p = _thp()
    p.pageout(0, pages=N)
    st = _run(s.build(), design)
    assert _large_in_swapcache(st)
    end = st[-1]
    assert end.mms[0].pmds[0] is None
    slots = [x.pfn for x in end.mms[0].ptes]
    assert all(x.kind == PTE_SWAP for x in end.mms[0].ptes)
    assert slots == list(range(slots[0], slots[0] + N)) and slots[0] % N == 0      # one aligned run
    assert not any(f is not None and f.flags & PG_large for f in end.folios)        # freed after writeback


@pytest.mark.parametrize("nr", [8, 16])
@pytest.mark.parametrize("design", OLD + NEW)
def test_a_pte_mapped_thp_is_split_before_swap_until_6_9(design, nr):
    """cow.c's pte-thp-swap setup: before 6.10 the madvise walk splits it (each subpage a small folio in the swap
    cache); from 6.10 it goes to the swap cache as one folio."""
    s, p = _thp(nr, pte_mapped=True)
    p.pageout(0, pages=nr)
    st = _run(s.build(), design)
    assert _large_in_swapcache(st) == (design in NEW)
    assert all(x.kind == PTE_SWAP for x in st[-1].mms[0].ptes)


@pytest.mark.parametrize("design", OLD)
def test_background_reclaim_splits_a_pte_mapped_thp_before_6_10(design):
    """Reclaim without the madvise walk (``shared_ok``): shrink_folio_list() splits the folio onto its list
    (split_folio_to_list(): ``!folio_entire_mapcount(folio)``) and reclaims every subpage."""
    s, p = _thp(pte_mapped=True)
    p.pageout(0, pages=N, shared_ok=True)
    st = _run(s.build(), design)
    assert not _large_in_swapcache(st)
    assert all(x.kind == PTE_SWAP for x in st[-1].mms[0].ptes)
    assert all(f is None for f in st[-1].folios[1:])


def test_background_reclaim_of_a_partially_mapped_thp_splits_it_from_6_10():
    """v6.18: a folio with subpages unmapped (MADV_DONTNEED of all but the first) is "partially mapped" and split
    ("Split partially mapped folios right away. We can free the unmapped pages without IO."); the unmapped tails
    are freed, the mapped subpage goes to swap."""
    s, p = _thp()
    p.madvise(1, pages=N - 1, advice="dontneed")
    p.pageout(0, shared_ok=True)
    st = _run(s.build(), "linux-6.18")
    assert not _large_in_swapcache(st)
    end = st[-1]
    assert end.mms[0].ptes[0].kind == PTE_SWAP
    assert all(f is None for f in end.folios[1:])


@pytest.mark.parametrize("design,swapped", [("linux-5.19", True), ("linux-6.5", False), ("linux-6.9", False)])
def test_pageout_shared_test_reads_the_pte_subpage_or_the_head(design, swapped):
    """A PTE-mapped THP whose first subpage was zapped: 5.4 .. 6.1 test ``page_mapcount(page) != 1`` of the pte's
    own subpage (1: split, swapped); 6.5's folio_estimated_sharers() / 6.9's folio_likely_mapped_shared() read the
    first subpage (mapcount 0: ``!= 1`` -> break, nothing reclaimed)."""
    s, p = _thp(pte_mapped=True)
    p.madvise(0, advice="dontneed")
    p.pageout(1, pages=N - 1)
    st = _run(s.build(), design)
    kinds = {x.kind for x in st[-1].mms[0].ptes[1:]}
    assert kinds == ({PTE_SWAP} if swapped else {PTE_PRESENT})


# ----------------------------------------------------------------------------------------------- swap-in
def _swapped_thp(settings, design, read_at=5, nr=N):
    s, p = _thp(nr, settings=settings)
    p.pageout(0, pages=nr)
    p.read(read_at)
    return _run(s.build(), design)[-1]


def test_a_pmd_size_thp_comes_back_as_small_folios():
    """alloc_swap_folio(): only orders below PMD_ORDER (``BIT(PMD_ORDER) - 1``); the PMD size alone enabled ->
    an order-0 folio for the faulting entry only."""
    end = _swapped_thp(None, "linux-6.18")
    ptes = end.mms[0].ptes
    assert ptes[5].kind == PTE_PRESENT and end.folios[ptes[5].pfn].data and len(end.folios[ptes[5].pfn].data) == 1
    assert all(ptes[i].kind == PTE_SWAP for i in range(N) if i != 5)


@pytest.mark.parametrize("design,large", [("linux-6.18", True), ("linux-6.9", False),
                                          ("linux-6.9:swapin_large_sync_io=true,swapin_read_mkwrite=true", True)])
def test_an_mthp_size_is_swapped_in_whole_from_6_12(design, large):
    """thp_sizes=(4, 8): the read fault at page 5 swaps in the aligned 4-page range 4..7 as one exclusive folio,
    every pte writable (6.11's c18160dba5ff maps an exclusive swapped-in page writable on a read fault), clean;
    pages 0..3 stay swapped out.  Before 6.12: one small folio."""
    end = _swapped_thp({"thp_sizes": (4, 8)}, design)
    ptes = end.mms[0].ptes
    f = end.folios[ptes[5].pfn]
    if not large:
        assert len(f.data) == 1 and all(ptes[i].kind == PTE_SWAP for i in range(N) if i != 5)
        return
    assert len(f.data) == 4 and all(ptes[4 + i].pfn == ptes[5].pfn and ptes[4 + i].idx == i for i in range(4))
    assert all(f.anon_exclusive) and f.mapcount == (1,) * 4 and f.refcount == 4
    assert all(ptes[4 + i].write and not ptes[4 + i].dirty for i in range(4))
    assert all(ptes[i].kind == PTE_SWAP for i in range(4))
    assert all(end.swap[ptes[0].pfn + 4 + i] is None for i in range(4))         # swap_free_nr()


def test_shared_entries_are_swapped_in_through_the_swap_cache():
    """After fork every entry's swap count is 2: no skip-swapcache, no large folio (do_swap_page()'s
    ``__swap_count(entry) == 1``); the parent's read maps a small swap-cache folio, not exclusive (fork cleared the
    swp pte exclusive bit: copy_nonpresent_pte() pte_swp_clear_exclusive())."""
    s, p = _thp(settings={"thp_sizes": (4, 8)})
    c = s.process("child")
    p.pageout(0, pages=N)
    p.fork(c)
    p.read(5)
    c.read(5)
    c.exit()
    end = _run(s.build(), "linux-6.18")[-1]
    pte = end.mms[0].ptes[5]
    f = end.folios[pte.pfn]
    assert len(f.data) == 1 and not f.anon_exclusive[0] and not pte.write


def test_only_the_faulting_entry_needs_swap_count_1():
    """v6.18 tests ``__swap_count(entry) == 1`` for the faulting entry only: after fork and the child's munmap of
    page 4, entry 4 has count 1 and 5..7 count 2; the parent's fault at 4 swaps in 4..7 as one fresh, exclusive
    folio (the child keeps its entries 5..7 and reads them from the device); the parent's writes stay its own."""
    s, p = _thp(settings={"thp_sizes": (4, 8)})
    c = s.process("child")
    p.pageout(0, pages=N)
    p.fork(c)
    c.munmap(4)
    p.read(4)
    p.write(4, pages=4)
    c.read(5, pages=3)
    c.exit()
    end = _run(s.build(), "linux-6.18")[-1]
    ptes = end.mms[0].ptes
    f = end.folios[ptes[4].pfn]
    assert len(f.data) == 4 and all(ptes[4 + i].pfn == ptes[4].pfn for i in range(4))


@pytest.mark.parametrize("nr", [8, 16])
@pytest.mark.parametrize("design", OLD + NEW)
def test_cow_c_swap_variants_run_clean(design, nr):
    """cow.c's swap variants at THP sizes 8 and 16: no invariant broken, every run completes."""
    for case in cow_c.cases(["pte-thp-swap", "single-pte-thp-swap", "thp-swap"], nr=nr):
        _run(case, design)


@pytest.mark.parametrize("design", ["linux-6.18", "linux-6.9", "linux-5.19"])
def test_reclaim_of_a_large_folio_racing_faults_keeps_every_invariant(design):
    """Every interleaving of MADV_PAGEOUT of a PTE-mapped THP (whole from 6.10, split before) with another thread's
    read and write of it, then swap-in (an mTHP size enabled: 6.18 swaps the upper half in whole): no model invariant
    broken (refcount = mappings + swap cache + holders, swap counts = swap ptes, PageAnonExclusive of writable
    ptes) and no missed or wrong COW."""
    from cowlab.explore import Limits, explore
    s = Script("t", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": (4, 8)})
    p = s.process("parent")
    p.mmap(0, pages=8, thp=True)
    p.write(0, pages=8)
    p.mprotect(0, prot="r")
    p.mprotect(0, prot="rw")
    s.parallel({"parent": [("pageout", {"addr": 0, "pages": 8})],
                "parent.t2": [("read", {"addr": 7}), ("write", {"addr": 6})]})
    p.read(4, pages=4)
    s.cpu("parent", "parent.t2")
    rep = explore(CowModel(s.build(), designs.load(design)), Limits(max_states=300_000, max_seconds=240))
    assert rep.status == "complete", rep.reason
    assert not rep.bugs, rep.bugs[:1]
    assert not rep.found.get("missed") and not rep.found.get("wrong"), rep.found


@pytest.mark.parametrize("design", ["linux-6.18", "linux-6.9"])
def test_concurrent_large_swapins_keep_every_invariant(design):
    """Every interleaving of two threads faulting on the same swapped-out range (6.18 with ``thp_sizes=(4, 8)``:
    both try alloc_swap_folio() for the same 4-page run; swapcache_prepare() lets one win, the other waits and
    retries), then fork and a write racing the child's reads: no invariant broken, no missed or wrong COW.  (A fork
    racing another thread's write, on small pages, THPs and mTHPs: tests/catalog/test_fork_race.py.)"""
    from cowlab.explore import Limits, explore
    s = Script("t", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": (4, 8)})
    p = s.process("parent")
    c = s.process("child")
    p.mmap(0, pages=8, thp=True)
    p.write(0, pages=8)
    p.pageout(0, pages=8)
    s.parallel({"parent": [("read", {"addr": 5})], "parent.t2": [("write", {"addr": 4}), ("read", {"addr": 7})]})
    p.fork(c)
    s.parallel({"parent": [("write", {"addr": 5})], "child": [("read", {"addr": 4, "pages": 2})]})
    c.exit()
    s.cpu("parent", "parent.t2")
    rep = explore(CowModel(s.build(), designs.load(design)), Limits(max_states=300_000, max_seconds=240))
    assert rep.status == "complete", rep.reason
    assert not rep.bugs, rep.bugs[:1]
    assert not rep.found.get("missed") and not rep.found.get("wrong"), rep.found


def _final_states(case, design, limit=200_000):
    """Every state where no thread can move, over all interleavings (breadth-first over CowModel.step)."""
    m = CowModel(case, designs.load(design))
    s0 = m.init_state()
    seen, todo, ends = {s0}, [s0], []
    while todo:
        st = todo.pop()
        moved = False
        for tid in range(m.nthreads):
            tr = m.step(st, tid)
            if tr is None:
                continue
            assert not tr.bugs, tr.bugs
            moved = True
            if tr.state not in seen:
                seen.add(tr.state)
                todo.append(tr.state)
                assert len(seen) < limit
        if not moved:
            ends.append(st)
    return ends


@pytest.mark.parametrize("design,whole", [("linux-6.18", True), ("linux-6.9", False),
                                          ("linux-6.9:swapin_map_large_swapcache=true", True)])
def test_a_large_folio_found_in_the_swap_cache_is_mapped_whole_from_6_10(design, whole):
    """A THP in the swap cache, every pte a swap pte of it (reclaim between try_to_unmap() and __remove_mapping()),
    and another thread's read fault on it: from 6.10 ("mm: swap: entirely map large folios found in swapcache",
    Barry Song: swap_pte_batch() == nr -> set_ptes() of the whole folio, swap_free_nr()) every pte maps it again;
    before, only the faulting subpage (the others stay swap ptes of the cached folio)."""
    s = Script("t", pages=4, hpage_pmd_nr=4)
    p = s.process("parent")
    p.mmap(0, pages=4, thp=True)
    p.write(0, pages=4)
    s.parallel({"parent": [("pageout", {"addr": 0, "pages": 4})], "parent.t2": [("read", {"addr": 1})]})
    s.cpu("parent", "parent.t2")
    ends = _final_states(s.build(), design)

    def mapped_whole(st):
        ptes = st.mms[0].ptes
        return all(x.kind == PTE_PRESENT for x in ptes) and len({x.pfn for x in ptes}) == 1 and \
            len(st.folios[ptes[0].pfn].data) == 4 and [x.idx for x in ptes] == [0, 1, 2, 3]

    def one_from_cache(st):
        ptes = st.mms[0].ptes
        f = st.folios[ptes[1].pfn] if ptes[1].kind == PTE_PRESENT else None
        return f is not None and len(f.data) == 4 and f.flags & PG_swapcache and \
            [x.kind for x in ptes] == [PTE_SWAP, PTE_PRESENT, PTE_SWAP, PTE_SWAP]

    # the fault found the folio in the swap cache with every pte swapped out in some interleaving:
    # whole mapping from 6.10, the faulting subpage only before
    assert any(mapped_whole(st) for st in ends) == whole
    assert any(one_from_cache(st) for st in ends) == (not whole)


@pytest.mark.parametrize("design", ["linux-5.19", "linux-6.18"])
def test_pageout_of_a_whole_thp_goes_on_over_the_rest_of_the_range(design):
    """madvise_walk_vmas() walks every PMD of the range: a THP covered whole is isolated and the 4 KiB pages after
    it (another vma) are reclaimed too."""
    s = Script("t", pages=2 * N, hpage_pmd_nr=N)
    p = s.process("parent")
    p.mmap(0, pages=N, thp=True)
    p.mmap(N, pages=2)
    p.madvise(N, pages=2, advice="nohugepage")
    p.write(0, pages=N + 2)
    p.pageout(0, pages=N + 2)
    end = _run(s.build(), design)[-1]
    assert all(x is not None and x.kind == PTE_SWAP for x in end.mms[0].ptes[:N + 2]), end.mms[0].ptes


def _paged_out_one_by_one(first, design="linux-6.18", fault=4):
    """A 64 kB mTHP (thp_sizes 16 kB and 64 kB) written whole, ``first``..``first + 7`` paged out (a partial range:
    split, eight small folios swapped out in address order), then a write at ``fault``."""
    s = Script("offsets", pages=32, hpage_pmd_nr=512, settings={"thp_sizes": (4, 16)})
    p = s.process("parent")
    p.mmap(0, pages=32, thp=True)
    p.write(0, pages=16)
    p.pageout(first, pages=8)
    p.write(fault)
    return _run(s.build(), design)


def test_small_folios_take_swap_offsets_from_1():
    """setup_swap_map(): offset 0 is the swap header (SWAP_MAP_BAD); live: pagemap shows offsets 1..8."""
    states = _paged_out_one_by_one(0)
    swapped = max((s for s in states), key=lambda s: sum(p is not None and p.kind == PTE_SWAP for p in s.mms[0].ptes))
    assert [swapped.mms[0].ptes[i].pfn for i in range(8)] == list(range(1, 9))
    assert swapped.swap[0] is None


@pytest.mark.parametrize("first,large", [(1, True), (0, False)])
def test_an_mthp_comes_back_only_where_offsets_agree_with_addresses(first, large):
    """thp_swap_suitable_orders(): offsets 4..7 at pages 4..7 (pages 1..8 paged out) -> one 16 kB folio; offsets
    5..8 at pages 4..7 (pages 0..7 paged out) -> a small page (live probe, 6.18: the same two outcomes)."""
    end = _paged_out_one_by_one(first)[-1]
    ptes = end.mms[0].ptes
    f = end.folios[ptes[4].pfn]
    if large:
        assert len(f.data) == 4 and all(ptes[4 + i].pfn == ptes[4].pfn for i in range(4))
    else:
        assert len(f.data) == 1 and all(ptes[i].kind == PTE_SWAP for i in range(5, 8))


def test_a_large_folio_never_takes_the_run_at_offset_0():
    """folio_alloc_swap() of a whole large folio: an aligned run, never the one holding the header."""
    s, p = _thp(N)
    p.pageout(0, pages=N)
    states = _run(s.build(), "linux-6.18")
    slots = {p.pfn for s in states for p in s.mms[0].ptes if p is not None and p.kind == PTE_SWAP}
    assert slots and min(slots) >= N and min(slots) % N == 0


def test_swap_offsets_are_handed_out_in_order():
    """The per-CPU swap cluster moves on: offsets freed by a swap-in are not taken again at once (live probe, 6.18:
    pages 12..14 at 1..3, written back, then pages 4..11 at 4..11), so the write at page 8 swaps 8..11 in whole."""
    s = Script("cursor", pages=32, hpage_pmd_nr=512, settings={"thp_sizes": (4, 16)})
    p = s.process("parent")
    p.mmap(0, pages=32, thp=True)
    p.write(0, pages=16)
    p.pageout(12, pages=3)
    p.write(12, pages=3)
    p.pageout(4, pages=8)
    states = _run(s.build(), "linux-6.18")
    ptes = states[-1].mms[0].ptes
    assert [ptes[i].pfn for i in range(4, 12)] == list(range(4, 12)) and all(ptes[i].kind == PTE_SWAP
                                                                             for i in range(4, 12))
    p.write(8)
    end = _run(s.build(), "linux-6.18")[-1]
    f = end.folios[end.mms[0].ptes[8].pfn]
    assert len(f.data) == 4 and all(end.mms[0].ptes[8 + i].pfn == end.mms[0].ptes[8].pfn for i in range(4))


def test_a_large_folio_takes_offsets_apart_from_the_small_ones():
    """The kernel keeps a swap cluster per order: a 64 kB folio swapped out whole takes a run of a cluster of its
    own, small folios paged out after it take offsets 1.. (cluster 0), so the read at page 16 (offset 1) gets a
    small page (live 6.18: docs/findings/mthp-swapin-order-clusters.toml, --random 3000 --seed 2615)."""
    s = Script("clusters", pages=32, hpage_pmd_nr=512, settings={"thp_sizes": (4, 16)})
    p = s.process("parent")
    p.mmap(0, pages=32, thp=True)
    p.write(1)
    p.write(16, pages=8)
    p.pageout(0, pages=16)
    p.pageout(16, pages=8)
    p.read(16)
    end = _run(s.build(), "linux-6.18")[-1]
    ptes = end.mms[0].ptes
    assert [ptes[i].pfn for i in range(16)] == list(range(512, 528)) and all(ptes[i].kind == PTE_SWAP
                                                                             for i in range(16))
    assert [ptes[i].pfn for i in range(17, 24)] == list(range(2, 9))
    assert ptes[16].kind == PTE_PRESENT and len(end.folios[ptes[16].pfn].data) == 1
