"""The cases mutation testing asked for (cowlab/catalog/mutation.py) under
every design, each expectation with its source.  The expectations are
written from the kernel code and commits cited, not from cowlab's output."""
import pytest


from .expect import ALL, check, row

S_NOSWAP = ("feb889fb40fa 'mm: don't put pinned pages into the swap cache' (v5.11-rc5): shrink_page_list() keeps a "
            "maybe-pinned anon page that is not in the swap cache (still in 6.x shrink_folio_list(): "
            "folio_maybe_dma_pinned() -> keep_locked); the RFCs' base, 5.16, has it")
S_SWAP_59 = ("feb889fb40fa's message (Linus, LKML 17 Dec 2021: 'the problem with creating a swap page after the "
             "fact'): try_to_unmap() unmaps the pinned page, do_swap_page() maps it back R/O on the read, and the "
             "write's page_count() test (09854ba94c6a) copies it away from the pin")
S_SWAP_57 = ("v5.7 reclaim swaps the pinned page out, but do_wp_page()'s reuse_swap_page() sees mapcount + swap "
             "count == 1 (GUP references are invisible) and reuses the pinned page")
S_FORK_57 = "fork() shares pinned pages until 70e806e4e645 (5.9): the parent's write COWs away from the pin"
S_SC_59 = ("09854ba94c6a (5.9) reuses only at page_count() == 1, so the io_uring pin's write fault copies the page "
           "the swap cache still holds (no one else maps it: unnecessary; 53a05ad9f21d discounts the swap cache "
           "from 5.18); 5.9 then swaps the pinned copy out (no feb889fb40fa yet), fork shares the swap entry and "
           "the write COWs away from the pin")
S_SC_511 = ("the same unnecessary copy as 5.9 (09854ba94c6a); feb889fb40fa keeps the pinned copy mapped and fork "
            "copies it for the child (70e806e4e645)")
S_SC_518 = ("53a05ad9f21d (5.18): the pin's write fault frees the swap cache under the page lock and reuses the page "
            "(page_count() == 1 then); reclaim keeps the pinned page (feb889fb40fa), fork copies it (70e806e4e645)")
S_SC_519 = ("the swap pte's exclusive bit (1493a1913e34) makes the read swap-in exclusive, so the pin reuses the page "
            "in the swap cache; try_to_unmap_one()'s page_try_share_anon_rmap() refuses the pinned exclusive page "
            "(6c287605fd56), and fork copies it (page_try_dup_anon_rmap() -EBUSY)")
S_SC_RFC = ("derived: the RFC (on 5.16) reuses by mapcount, leaving the pinned page in the swap cache, and 5.16's "
            "try_to_unmap() has no pin test (page_try_share_anon_rmap() is 5.19): the pinned page is unmapped and "
            "fork shares its swap entry; ")
S_SC_RFCM = S_SC_RFC + ("the parent's write swap-in decides by mapcount (0: the child's swap entry is invisible, "
                        "Linus 17 Dec 2021) and writes into the page the child's entry refers to")
S_SC_RFCP = S_SC_RFC + ("page_anon_shared() counts the child's swap entry, so the parent's write copies and the pin "
                        "keeps the old page")
S_REFS = ("9348b73c2e1b 'mm: don't play games with pinned pages in clear_page_refs' (v5.11-rc5): clear_soft_dirty() "
          "leaves the writable pte of a maybe-pinned page alone (pte_is_pinned(), still in 6.x fs/proc/task_mmu.c)")
S_REFS_59 = ("9348b73c2e1b: 'Turning a pinned page read-only breaks the pinning after COW': 5.9's page_count() rule "
             "(09854ba94c6a) copies the write-protected pinned page")
S_REFS_57 = "clear_refs write-protects the pinned page, but do_wp_page() reuses it by mapcount (reuse_swap_page())"
S_ZERO = ("84209e87c696 'mm/gup: reliable R/O long-term pinning in COW mappings' (6.2): before it a R/O long-term "
          "pin in a MAP_PRIVATE mapping pins the shared zeropage, and the next write replaces it by an exclusive "
          "anonymous page the pin never sees; cow.c's non-anon test (97713a3abe33) fails there")
S_ZERO_OK = ("84209e87c696 / 8d6a0ac09a16 (6.2): gup_must_unshare() makes FOLL_LONGTERM unshare the zeropage first "
             "(FAULT_FLAG_UNSHARE maps an exclusive anon page); cow.c on 6.x: 'pass:769 fail:0 xfail:8' "
             "(20240502085259.103784-2-david@redhat.com)")
S_ZERO_58 = ("17839856fd58 (5.8): every FOLL_PIN on a COW mapping is made FOLL_WRITE, so the zeropage is COWed "
             "before the pin; gup-fast only takes writable ptes and falls back")
S_ZERO_RFC = ("derived: the RFC unshares R/O GUP of anonymous pages with mapcount > 1 only; the zeropage is not "
              "anonymous, and its base (5.16) predates 84209e87c696")
S_THIRD = ("the parent's write swap-in must not be exclusive while child2 holds the swap entry: v5.7 reuse_swap_page() "
           "counts it (page_trans_huge_map_swapcount()); 5.18 do_swap_page() (c145e0b47c77) needs page_count() == 1 "
           "after try_to_free_swap(), which fails while the entry is in use, and do_wp_page() then copies "
           "(53a05ad9f21d); from 5.19 the swap pte of a page three processes mapped is not exclusive (1493a1913e34); "
           "page_anon_shared() counts other processes' swap entries")
S_THIRD_RFC = ("LKML 17 Dec 2021 (Linus): mapcount does not see another process's swap entry; rfc-mapcount's "
               "do_swap_page() maps the page writable at mapcount 0")
S_MIG_FORK = ("5.9-5.18 fork copies maybe-pinned pages for the child (70e806e4e645); from 5.19 remove_migration_pte() "
              "maps the new page RMAP_EXCLUSIVE for a writable migration entry (6c287605fd56), so "
              "page_try_dup_anon_rmap() refuses to share the pinned exclusive page and fork copies it")
S_MIG_PIN = ("mm/migrate.c migrate_page_move_mapping() (folio_migrate_mapping() 6.x): the refcount is frozen at the "
             "expected count, the pin's references make it fail (-EAGAIN) and remove_migration_ptes() restores the "
             "pte; from 5.19 try_to_migrate_one() refuses the pinned exclusive page first (page_try_share_anon_rmap())")


EXPECT = {
    "iouring-pageout": row(("", S_NOSWAP), linux_5_7=("", S_SWAP_57), linux_5_8=("", S_SWAP_57),
                           linux_5_9=("wrong", S_SWAP_59)),
    "iouring-swapcache-pageout-fork": row(("", S_SC_519), linux_5_7=("wrong", S_FORK_57),
                                          linux_5_8=("wrong", S_FORK_57), linux_5_9=("unnecessary wrong", S_SC_59),
                                          linux_5_11=("unnecessary", S_SC_511), linux_5_18=("", S_SC_518),
                                          rfc_mapcount=("missed", S_SC_RFCM),
                                          rfc_page_anon_shared=("wrong", S_SC_RFCP)),
    "iouring-clear-refs": row(("", S_REFS), linux_5_7=("", S_REFS_57), linux_5_8=("", S_REFS_57),
                              linux_5_9=("wrong", S_REFS_59)),
    "ro-pin-zeropage": row(("wrong", S_ZERO), linux_5_8=("", S_ZERO_58), linux_6_5=("", S_ZERO_OK),
                           linux_6_9=("", S_ZERO_OK), linux_6_18=("", S_ZERO_OK),
                           rfc_mapcount=("wrong", S_ZERO_RFC), rfc_page_anon_shared=("wrong", S_ZERO_RFC)),
    "ro-fast-pin-zeropage": row(("wrong", S_ZERO), linux_5_8=("", S_ZERO_58), linux_6_5=("", S_ZERO_OK),
                                linux_6_9=("", S_ZERO_OK), linux_6_18=("", S_ZERO_OK),
                                rfc_mapcount=("wrong", S_ZERO_RFC), rfc_page_anon_shared=("wrong", S_ZERO_RFC)),
    "swapin-write-third-sharer": row(("", S_THIRD), rfc_mapcount=("missed", S_THIRD_RFC)),
    "migrate-iouring-fork": row(("", S_MIG_FORK), linux_5_7=("wrong", S_FORK_57), linux_5_8=("wrong", S_FORK_57)),
    "migrate-pinned": row(("", S_MIG_PIN)),
}


@pytest.mark.parametrize("case,design", [(c, d) for c in EXPECT for d in ALL])
def test_case_under_design(case, design):
    check(case, design, *EXPECT[case][design])


def test_every_case_has_expectations():
    from cowlab.catalog import mutation
    assert {c.id for c in mutation.cases()} == set(EXPECT)
