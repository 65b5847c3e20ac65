"""A thread's store racing fork() in the same process (issue "Verdicts you can trust": the oracle called it a
missed COW in every design).  What the kernel lets the child see, per page: every store that reached the page
before fork write-protected the parent's pte, none made after.

Sources: mm/memory.c copy_pte_range() -> copy_present_pte() (5.7 .. 6.8) / copy_present_ptes() (6.9+): the rmap
dup (page_dup_rmap(), page_try_dup_anon_rmap() 5.19, folio_try_dup_anon_rmap_pte(s) 6.8+), then
__copy_present_pte(s)(): ptep_set_wrprotect() / wrprotect_ptes() of the parent's pte and set_pte(s)_at() of the
child's, all under the parent's PT lock -- which does not stop another CPU's store through the still-writable pte;
after the write-protect a store faults and waits for dup_mmap()'s mmap_write_lock (6.4+ also vma_start_write())
and then copies (do_wp_page()); dup_mmap() flushes the parent's TLB (flush_tlb_mm(oldmm)) before
mmap_write_unlock(), so a store through a stale TLB entry lands before fork returns too.  copy_huge_pmd() shares
and write-protects a PMD in one step under the PMD lock.  Live: tools/fork_race_probe.c on this machine's kernel
(the child saw stores made while fork() ran, never one made after it returned)."""
import pytest

from cowlab import catalog, designs
from cowlab.explore import explore
from cowlab.kernel.effects import CopyPte, Load, Store
from cowlab.kernel.types import ZERO
from cowlab.model import CowModel
from cowlab.schedule import sequential

from .expect import ALL

CASES = ("race-fork-write", "race-fork-write-thp", "race-fork-write-pte-thp")


def _paths(model):
    """Every interleaving, depth-first over (state, what fork copied for the child so far): yields
    (transition, copied) with ``copied`` {addr: data the page held when fork's copy of that entry completed}
    as of before the step, and the state the step started from."""
    s0 = model.init_state()
    todo = [(s0, ())]
    seen = {(s0, ())}
    while todo:
        s, copied = todo.pop()
        for tid in range(model.nthreads):
            tr = model.step(s, tid)
            if tr is None:
                continue
            yield s, tr, dict(copied)
            c = dict(copied)
            for e in tr.effects:
                if type(e) is CopyPte:
                    m = tr.state.mms[e.child]
                    for a in range(e.addr, e.addr + e.nr):
                        pmd = m.pmds[a // model.case.hpage_pmd_nr]
                        if pmd is not None:
                            pfn, idx = pmd.pfn, a % model.case.hpage_pmd_nr
                        elif m.ptes[a] is not None:
                            pfn, idx = m.ptes[a].pfn, m.ptes[a].idx
                        else:
                            continue
                        c[a] = tr.state.folios[pfn].data[idx] if pfn < len(tr.state.folios) and \
                            tr.state.folios[pfn] is not None else None
            key = (tr.state, tuple(sorted(c.items())))
            if key not in seen:
                seen.add(key)
                todo.append(key)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("design", ALL)
def test_the_child_reads_what_the_page_held_when_fork_copied_it(case, design):
    """In every interleaving the child's first read of each page returns what the page held when fork's copy of
    that entry completed (no store of the parent's after it reaches the child), and the racing store does reach
    the child in some interleaving where it landed between the rmap dup and the write-protect (PTE-mapped pages)
    -- the outcome the oracle used to call a missed COW."""
    m = CowModel(catalog.get(case), designs.load(design))
    child = m.case.processes.index("child")
    reads, in_window = set(), set()
    for s, tr, copied in _paths(m):
        assert not tr.bugs, tr.bugs
        assert not m.violations(tr), (case, design, m.violations(tr))
        window = {(p, c, a) for p, c, a in m._in_flight(s).copies}
        for e in tr.effects:
            if type(e) is Load and e.mm == child and e.reader == "cpu":
                # (an entry fork found none: the child faults in the zero page)
                assert e.data == copied.get(e.addr, ZERO), (case, design, e, copied)
                reads.add((e.addr, e.data))
            if type(e) is Store and (e.mm, child, e.addr) in window:
                in_window.add((e.addr, e.data))
    assert ("new" in {d for _, d in reads}), (case, design, reads)
    if case != "race-fork-write-thp":
        # the store landed in the window fork opens on a PTE-mapped page (copy_huge_pmd() opens none)
        assert (0, "new") in in_window, (case, design, in_window)
    else:
        assert not in_window


@pytest.mark.parametrize("design", ("linux-5.9", "linux-6.18"))
def test_the_child_can_see_the_old_data_too(design):
    """The race goes both ways: some interleaving copies the pte before the store (the child reads the old data,
    the parent its new data) -- both outcomes are the kernel's."""
    m = CowModel(catalog.get("race-fork-write"), designs.load(design))
    child = m.case.processes.index("child")
    child_reads = {e.data for _, tr, _ in _paths(m) for e in tr.effects
                   if type(e) is Load and e.mm == child and e.addr == 0}
    assert {"old", "new", "newer"} <= child_reads, child_reads


def test_a_store_after_the_copy_is_still_a_missed_cow():
    """The fix excuses only the store fork's copy takes with it: O_DIRECT's FOLL_GET DMA (before a7e689dd1c06,
    6.5) landing after fork write-protected and shared the page is still a missed COW, and the shortest witness
    has the DMA after the write-protect (before the fix it was the DMA inside the window)."""
    r = explore(CowModel(catalog.get("race-fork-odirect"), designs.load("linux-5.9")))
    assert r.status == "complete"
    w = r.found["missed"]
    labels = [lbl for _, lbl in w.trace]
    assert labels[-1] == "dio.read_io"
    assert "fork.wrprotect" in labels and labels.index("fork.wrprotect") < len(labels) - 1


def test_a_design_that_reuses_the_shared_page_is_still_caught():
    """The negative control: a design that reuses on every write fault (tests/test_oracle.py's AlwaysReuse) lets
    the racing thread's store after fork's copy land in the page the child shares: a missed COW."""
    from tests.test_oracle import AlwaysReuse
    r = explore(CowModel(catalog.get("race-fork-write"), AlwaysReuse()))
    assert r.status == "complete"
    assert "missed" in r.found
    assert "wrote page 0" in r.found["missed"].text


def test_a_sequential_run_is_clean():
    # (the schedule ``run`` and ``conformance`` use: the fork first, then the other thread's stores)
    m = CowModel(catalog.get("race-fork-write"), designs.load("linux-6.18"))
    run = list(sequential(m))
    assert run and all(not tr.bugs and not m.violations(tr) for tr in run)


@pytest.mark.parametrize("design", ("linux-6.9", "linux-6.18"))
def test_a_store_racing_fork_on_an_mthp(design):
    """An order-2 mTHP (thp_sizes (4,), 6.8+ anon mTHP): fork copies its ptes one by one (the model's per-pte
    copy_present_anon; 6.9+ batches them with folio_try_dup_anon_rmap_ptes() under the same PT lock); another
    thread's stores to subpages 1 and 3 race it.  No verdict, and the child reads what each page held when fork
    copied it."""
    from cowlab.scenario import Script
    s = Script("fork-race-mthp", pages=8, hpage_pmd_nr=8, settings={"thp_sizes": (4,)})
    p, c = s.process("parent"), s.process("child")
    s.cpu("parent", "parent.cpu1")
    p.mmap(0, pages=8, thp=True)
    p.write(0, pages=4)
    s.parallel({"parent": [("fork", {"child": "child"})],
                "parent.cpu1": [("write", {"addr": 1, "value": "new"}), ("write", {"addr": 3, "value": "new"})]})
    c.read(0, pages=4)
    p.read(0, pages=4)
    c.exit()
    m = CowModel(s.build(), designs.load(design))
    child = m.case.processes.index("child")
    large = False
    reads = set()
    for st, tr, copied in _paths(m):
        assert not tr.bugs and not m.violations(tr), (tr.bugs, m.violations(tr))
        for e in tr.effects:
            if type(e) is CopyPte and st.folios[st.mms[0].ptes[e.addr].pfn].nr == 4:
                large = True
            if type(e) is Load and e.mm == child:
                assert e.data == copied.get(e.addr, ZERO), (e, copied)
                reads.add((e.addr, e.data))
    assert large, "fork never met the 4-page folio"
    assert (1, "new") in reads and (3, "new") in reads, reads
