"""The KSM and O_DIRECT cases (cowlab/catalog/ksm.py, direct_io.py) under
every design, each expectation with its source."""
import pytest

from cowlab import catalog, designs
from cowlab.model import CowModel
from cowlab.schedule import sequential

from .expect import ALL, check, row

S_KSM = ("mm/ksm.c write_protect_page() refuses a pinned page (mapcount + 1 + swapcache != page_count, since "
         "2.6.32); do_wp_page() copies a KSM page mapped elsewhere in every version; live-kernel probe on 6.18.44 "
         "(cowlab conformance: agree)")
S_DIO = "GUP FOLL_WRITE breaks COW before the DMA in every version (mm/gup.c faultin_page()); live-kernel probe"
S_DIO_W = ("FOLL_GET leaves the page shared; from 6.5 (a7e689dd1c06) FOLL_PIN makes gup_must_unshare() (5.19) "
           "unshare it: live-kernel probe on 6.18.44 sees the parent's page exclusive after the write (6.18 agrees, "
           "5.19's FOLL_GET model disagrees)")
S_LRU = ("the child's page is still in the parent CPU's lru_add batch when the child writes: page_count() == 2, "
         "so 5.9..5.17 copy for nothing (3ae33b08-d9ef-f846-56fb-645e3b9b4c66@redhat.com section 5); 5.18 drains the "
         "local batch in do_wp_page() on the parent's own COW first (d4c470970d45)")


EXPECT = {
    "ksm-merge-write": row(("", S_KSM)),
    "ksm-fork": row(("", S_KSM)),
    "ksm-pinned-page": row(("", S_KSM)),
    "ksm-pinned-tree-page": row(("", S_KSM + "; try_to_merge_two_pages() un-merges the first page with break_cow() "
                                  "when the tree page is refused: a copy of a KSM page, which the oracle counts as "
                                  "needed (a KSM page may be mapped anywhere)")),
    "odirect-read-after-fork": row(("", S_DIO), linux_5_9=("unnecessary", S_LRU), linux_5_11=("unnecessary", S_LRU)),
    "odirect-write-after-fork": row(("", S_DIO_W), linux_5_9=("unnecessary", S_LRU),
                                    linux_5_11=("unnecessary", S_LRU)),
}


@pytest.mark.parametrize("case,design", [(c, d) for c in EXPECT for d in ALL])
def test_case_under_design(case, design):
    check(case, design, *EXPECT[case][design])


def test_every_case_has_expectations():
    from cowlab.catalog import ksm, direct_io
    assert {c.id for c in ksm.cases() + direct_io.cases()} == set(EXPECT)


def _final(case, design):
    run = sequential(CowModel(catalog.get(case), designs.load(design)))
    for _ in run:
        pass
    assert run.end == "done", run.end
    return run.state


def test_the_pinned_page_is_merged_only_after_unpin():
    # write_protect_page(): the io_uring pin's references make the first merge fail; the second merges
    s = _final("ksm-pinned-page", "linux-6.18")
    a, b = s.mms[0].ptes[0], s.mms[0].ptes[1]
    from cowlab.kernel.types import PG_ksm
    assert a.pfn == b.pfn and s.folios[a.pfn].flags & PG_ksm


def test_odirect_write_unshares_from_6_5_only():
    # a7e689dd1c06 (6.5): O_DIRECT takes FOLL_PIN; gup_must_unshare() copies a shared anon page
    from cowlab.kernel.types import FOLL_PIN
    assert designs.load("linux-6.18").odirect_gup & FOLL_PIN
    assert not designs.load("linux-5.19").odirect_gup & FOLL_PIN


def test_break_cow_takes_the_first_page_back():
    # try_to_merge_two_pages(): page 1 was made a KSM page, page 0 (pinned) is refused, break_cow(page 1)
    s = _final("ksm-pinned-tree-page", "linux-6.18")
    from cowlab.kernel.types import PG_ksm
    a, b = s.mms[0].ptes[0], s.mms[0].ptes[1]
    assert a.pfn != b.pfn
    assert not s.folios[b.pfn].flags & PG_ksm and s.folios[b.pfn].anon_exclusive == (True,)
