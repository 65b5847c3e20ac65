"""Kernel paths keep the kernel's books: refcounts, mapcounts, pte bits.
Expected numbers come from the kernel code (comments name the function)."""
from cowlab import designs
from cowlab.kernel.types import GUP_PIN_COUNTING_BIAS, PG_lru, MMF_HAS_PINNED, PTE_SWAP
from cowlab.model import CowModel
from cowlab.schedule import sequential
from cowlab.scenario import Script


def final_state(script, design):
    run = sequential(CowModel(script.build(), designs.load(design)), max_steps=5000)
    for tr in run:
        assert not tr.bugs, tr.bugs
    assert run.end == "done", run.end     # not "stuck" (a deadlock) nor "limit" (5000 steps)
    return run.state


def test_fresh_page_sits_in_the_lru_batch():
    # do_anonymous_page(): page_add_new_anon_rmap + lru_cache_add (+1 ref, no PG_lru yet)
    s = Script("t", pages=1); p = s.process("parent"); p.mmap(0); p.write(0)
    st = final_state(s, "linux-5.9")
    pte = st.mms[0].ptes[0]
    f = st.folios[pte.pfn]
    assert pte.write and pte.dirty
    assert f.refcount == 2 and f.mapcount == (1,) and not f.flags & PG_lru


def test_fork_shares_read_only():
    # copy_present_pte(): get_page + page_dup_rmap, both ptes write-protected
    s = Script("t", pages=1); p, c = s.process("parent"), s.process("child")
    p.mmap(0); p.write(0); p.lru_add_drain(); p.fork(c)
    st = final_state(s, "linux-5.11")
    pp, cp = st.mms[0].ptes[0], st.mms[1].ptes[0]
    assert pp.pfn == cp.pfn and not pp.write and not cp.write
    assert st.folios[pp.pfn].refcount == 2 and st.folios[pp.pfn].mapcount == (2,)


def test_pin_adds_the_bias_and_marks_the_mm():
    # try_grab_page(FOLL_PIN): refcount += GUP_PIN_COUNTING_BIAS on a small folio; MMF_HAS_PINNED
    s = Script("t", pages=1); p = s.process("parent"); p.mmap(0); p.write(0); p.lru_add_drain()
    p.pin_longterm(0)
    st = final_state(s, "linux-5.19")
    f = st.folios[st.mms[0].ptes[0].pfn]
    assert f.refcount == 1 + GUP_PIN_COUNTING_BIAS
    assert st.mms[0].flags & MMF_HAS_PINNED


def test_fork_copies_a_pinned_page_for_the_child():
    # 70e806e4e645 (5.9) / page_try_dup_anon_rmap (5.19): the child gets its own page, the parent keeps its pte
    for d in ("linux-5.9", "linux-5.19"):
        s = Script("t", pages=1); p, c = s.process("parent"), s.process("child")
        p.mmap(0); p.write(0); p.pin_longterm(0, write=True); p.fork(c)
        st = final_state(s, d)
        pp, cp = st.mms[0].ptes[0], st.mms[1].ptes[0]
        assert pp.pfn != cp.pfn and pp.write and cp.write, d
        assert st.folios[cp.pfn].data == st.folios[pp.pfn].data


def test_fork_shares_a_pinned_page_before_5_9():
    s = Script("t", pages=1); p, c = s.process("parent"), s.process("child")
    p.mmap(0); p.write(0); p.pin_longterm(0, write=True); p.fork(c)
    st = final_state(s, "linux-5.7")
    assert st.mms[0].ptes[0].pfn == st.mms[1].ptes[0].pfn


def test_swapout_and_swapin_round_trip():
    # shrink_page_list(): swap pte + slot count 1, page freed; do_swap_page() brings the data back
    s = Script("t", pages=1); p = s.process("parent"); p.mmap(0); p.write(0, value="A"); p.pageout(0)
    st = final_state(s, "linux-5.19")
    pte = st.mms[0].ptes[0]
    assert pte.kind == PTE_SWAP and pte.excl == 1          # 1493a1913e34: exclusive bit kept
    assert st.swap[pte.pfn].count == 1 and st.swap[pte.pfn].cache == -1
    assert all(f is None for f in st.folios[1:])
    p.read(0)
    st = final_state(s, "linux-5.19")
    pte = st.mms[0].ptes[0]
    assert st.folios[pte.pfn].data == ("A",)
    assert st.folios[pte.pfn].anon_exclusive == (True,)    # RMAP_EXCLUSIVE from the swp pte bit


def test_pinned_page_stays_out_of_swap_from_5_11():
    # feb889fb40fa: shrink_page_list keeps maybe-pinned pages out of the swap cache
    s = Script("t", pages=1); p = s.process("parent"); p.mmap(0); p.write(0); p.pin_longterm(0, write=True)
    p.pageout(0)
    assert final_state(s, "linux-5.11").mms[0].ptes[0].kind == 1
    assert final_state(s, "linux-5.9").mms[0].ptes[0].kind == PTE_SWAP


def test_migration_refuses_a_page_with_a_gup_reference():
    # folio_migrate_mapping(): the refcount must freeze at 1 (isolation)
    s = Script("t", pages=1); p = s.process("parent"); p.mmap(0); p.write(0)
    p.get_user_pages(0); p.migrate(0)
    st = final_state(s, "linux-6.18")
    old = st.mms[0].ptes[0].pfn
    s2 = Script("t", pages=1); q = s2.process("parent"); q.mmap(0); q.write(0); q.migrate(0)
    st2 = final_state(s2, "linux-6.18")
    assert old == 1 and st2.mms[0].ptes[0].pfn != 1


def test_thp_split_moves_the_entire_mapcount_to_subpages():
    # __split_huge_pmd_locked(): entire_mapcount -> per-subpage mapcounts, one reference per pte
    s = Script("t", pages=2); p = s.process("parent"); p.mmap(0, pages=2, thp=True); p.write(0)
    st = final_state(s, "linux-5.19")
    f = st.folios[st.mms[0].pmds[0].pfn]
    assert f.entire_mapcount == 1 and f.mapcount == (0, 0) and f.refcount == 1
    p.mprotect(1, prot="r")
    st = final_state(s, "linux-5.19")
    assert st.mms[0].pmds[0] is None
    f = st.folios[st.mms[0].ptes[0].pfn]
    assert f.entire_mapcount == 0 and f.mapcount == (1, 1) and f.refcount == 2
    assert st.mms[0].ptes[0].write and not st.mms[0].ptes[1].write


def test_ksm_merge_makes_one_read_only_ksm_page():
    s = Script("t", pages=2); p = s.process("parent"); p.mmap(0, pages=2)
    p.write(0, value="x"); p.write(1, value="x"); p.madvise(0, pages=2, advice="mergeable")
    p.ksm_merge(0, of="parent", other_addr=1)
    st = final_state(s, "linux-5.19")
    a, b = st.mms[0].ptes[0], st.mms[0].ptes[1]
    assert a.pfn == b.pfn and not a.write and not b.write
    f = st.folios[a.pfn]
    assert f.mapcount == (2,) and f.anon_exclusive == (False,)


def test_ksm_leaves_pages_outside_mergeable_vmas_alone():
    # ksmd only scans VM_MERGEABLE vmas (MADV_MERGEABLE; scan_get_next_rmap_item())
    s = Script("t", pages=2); p = s.process("parent"); p.mmap(0, pages=2)
    p.write(0, value="x"); p.write(1, value="x"); p.ksm_merge(0, of="parent", other_addr=1)
    st = final_state(s, "linux-5.19")
    assert st.mms[0].ptes[0].pfn != st.mms[0].ptes[1].pfn
