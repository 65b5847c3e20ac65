"""cow.c's non_anon_test_cases[] the model can express (the shared zeropage
and the huge zeropage) under every design, each expectation with its source
(kernel commits, the reference's 7.5), not from cowlab's output."""
import pytest

from cowlab.catalog import cow_c

from .expect import ALL, check, row
from .test_mutation_cases import EXPECT as MUTATION, S_ZERO, S_ZERO_58, S_ZERO_OK, S_ZERO_RFC

S_COW_ZERO = ("mm/memory.c do_wp_page(): a write fault on the zero pfn (no page to reuse) always goes to "
              "wp_page_copy(), a fresh zeroed anonymous page; the zero page is never mapped writable (5.7 .. 6.18), "
              "so cow.c's test_cow() 'Other mapping not modified' passes")
S_COW_HUGE_ZERO = ("mm/huge_memory.c do_huge_pmd_wp_page() on the huge zero PMD: a fresh THP (5.7's 'goto alloc'; "
                   "do_huge_zero_wp_pmd(), 1ced09e0331f, 6.13) or a split into zero-page ptes and a pte-level copy "
                   "(3917c80280c9, 5.8 .. 6.12); the huge zero folio is never written")
S_PIN_HUGE_ZERO = (S_ZERO + "; the huge zeropage likewise (reference 7.5: the R/O longterm pin tests 'with huge "
                   "zeropage' pass only with 84209e87c696)")
S_PIN_HUGE_ZERO_OK = (S_ZERO_OK + "; gup_must_unshare() on the huge zero PMD (follow_trans_huge_pmd()): "
                      "do_huge_pmd_wp_page(FAULT_FLAG_UNSHARE) splits it or maps a fresh THP, then the pin takes "
                      "the exclusive anon page")

PIN = row(("wrong", S_PIN_HUGE_ZERO), linux_5_8=("", S_ZERO_58 + " (the huge zero PMD is split first, 3917c80280c9)"),
          linux_6_5=("", S_PIN_HUGE_ZERO_OK), linux_6_9=("", S_PIN_HUGE_ZERO_OK), linux_6_18=("", S_PIN_HUGE_ZERO_OK),
          rfc_mapcount=("wrong", S_ZERO_RFC), rfc_page_anon_shared=("wrong", S_ZERO_RFC))

EXPECT = {
    "non-anon-cow-zeropage": row(("", S_COW_ZERO)),
    "non-anon-cow-huge-zeropage": row(("", S_COW_HUGE_ZERO)),
    "ro-pin-huge-zeropage": PIN,
    "ro-fast-pin-huge-zeropage": PIN,
}


@pytest.mark.parametrize("case,design", [(c, d) for c in EXPECT for d in ALL])
def test_case_under_design(case, design):
    check(case, design, *EXPECT[case][design])


def test_every_non_anon_case_has_expectations():
    assert {c.id for c in cow_c.non_anon_cases()} == set(EXPECT)


def test_the_zeropage_pins_expect_what_the_huge_zeropage_pins_expect():
    """The same rule (84209e87c696) for the 4 KiB and the huge zero page: the
    mutation table's rows for ro-pin-zeropage give the same verdict kinds."""
    for d in ALL:
        assert MUTATION["ro-pin-zeropage"][d][0] == PIN[d][0], d


@pytest.mark.parametrize("nr", [2, 8, 512])
def test_the_huge_zeropage_cases_map_a_whole_thp(nr):
    """run_with_huge_zeropage(): mem and smem are each one PMD-sized,
    MADV_HUGEPAGE range; the tests touch all of it (memset(mem, 0xff, pmdsize))."""
    c = {c.id: c for c in cow_c.non_anon_cases(nr)}["non-anon-cow-huge-zeropage"]
    ops = [(op.name, dict(op.args)) for t in c.threads for op in t.ops]
    mmaps = [a for n, a in ops if n == "mmap"]
    assert [(m["addr"], m["pages"], m.get("thp"), m.get("prot", "rw")) for m in mmaps] == \
        [(0, nr, True, "rw"), (nr, nr, True, "r")]
    assert ("write", {"addr": 0, "pages": nr, "process": "parent"}) in [(n, {k: v for k, v in a.items()
                                                                             if k in ("addr", "pages", "process")})
                                                                         for n, a in ops]
