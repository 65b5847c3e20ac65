"""The built-in case catalog.

Every case is built by a function of the THP/hugetlb size (the case's
``hpage_pmd_nr``): ``get(id)`` and ``all_cases()`` give the model's default
(``kernel.types.HPAGE_PMD_NR``, 2), ``get(id, hpage_pmd_nr=512)`` the same
case at the kernel's size, and ``sized(case, nr)`` rebuilds a case at another
size.  The ids and verdicts do not depend on the size.  The cow.c mTHP
cases (16 kB, ``cow_c.mthp_cases()``) have a geometry of their own: a folio
of 4 subpages under a PMD of 8 (of ``hpage_pmd_nr`` when that is larger:
at 512 they are the kernel's 16 kB mTHP)."""
from __future__ import annotations

import dataclasses
import difflib
from functools import lru_cache

from ..kernel.types import HPAGE_PMD_NR
from ..scenario import Case, check_hpage_pmd_nr


class CatalogError(Exception):
    pass


def uses_huge(case: Case) -> bool:
    """Does the case map a THP or a hugetlb page (so its addresses depend on
    its size)?"""
    def huge(op):
        a = dict(op.args)
        return (op.name == "mmap" and (a.get("thp") or a.get("hugetlb"))) or \
            (op.name == "madvise" and a.get("advice") == "hugepage")
    return any(huge(op) for t in case.threads for op in t.ops)


@lru_cache(maxsize=None)
def _all(nr: int = HPAGE_PMD_NR) -> dict:
    from . import cow_c, seed, races, history, ksm, direct_io, trust, mutation
    check_hpage_pmd_nr(nr)
    out = {}
    for c in (cow_c.cases(nr=nr) + cow_c.thp_cases(nr) + cow_c.non_anon_cases(nr) + seed.cases() + history.cases(nr) +
              ksm.cases() + direct_io.cases() + trust.cases(nr) + mutation.cases() + races.cases(nr) +
              cow_c.mthp_cases(16, max(nr, cow_c.MODEL_PMD_NR))):
        if c.id in out:
            raise RuntimeError(f"duplicate case id {c.id}")
        if "mthp" in c.tags:
            pass      # an mTHP case keeps its folio of 4 under a PMD of at least 8 (cow_c: model geometry)
        elif c.hpage_pmd_nr != nr:
            # a case without THP/hugetlb is the same at every size; one with them must be built at nr
            if uses_huge(c):
                raise RuntimeError(f"catalog case {c.id} was built with THP size {c.hpage_pmd_nr}, not {nr}")
            c = dataclasses.replace(c, hpage_pmd_nr=nr)
        out[c.id] = c
    return out


def all_cases(hpage_pmd_nr: int = HPAGE_PMD_NR) -> list[Case]:
    return list(_all(hpage_pmd_nr).values())


def ids() -> list[str]:
    return list(_all())


def get(case_id: str, hpage_pmd_nr: int | None = None) -> Case:
    """A catalog case (at ``hpage_pmd_nr`` subpages per THP/hugetlb page, by
    default 2) or a ``.toml`` scenario file (at the size the file gives)."""
    cases = _all(HPAGE_PMD_NR if hpage_pmd_nr is None else hpage_pmd_nr)
    if case_id in cases:
        return cases[case_id]
    c = _mthp_on_demand(case_id, hpage_pmd_nr)
    if c is not None:
        return c
    if case_id.endswith(".toml"):
        from ..toml_format import load_case
        c = load_case(case_id)
        return c if hpage_pmd_nr is None else sized(c, hpage_pmd_nr)
    close = difflib.get_close_matches(case_id, cases, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise CatalogError(f"unknown case {case_id!r}{hint}")


def _mthp_on_demand(case_id: str, hpage_pmd_nr: int | None):
    """A cow.c mTHP case of a size the catalog does not hold (``basic-cow-fork-pte-thp-64k``: the catalog has
    the 16 kB ones), built by cow_c.case_for(): at model geometry, or at the kernel's with ``hpage_pmd_nr``
    512; None if ``case_id`` is no such case."""
    from . import cow_c
    head, sep, kb = case_id.rpartition("-")
    if not sep or not kb.endswith("k") or not kb[:-1].isdigit() or int(kb[:-1]) not in cow_c.MTHP_SIZES_KB:
        return None
    for tid, *_ in cow_c.TESTS:
        for v in cow_c.MTHP_VARIANTS:
            if cow_c.case_id(tid, v) == head:
                return cow_c.case_for(tid, v, int(kb[:-1]), real=hpage_pmd_nr == cow_c.REAL_PMD_NR)
    return None


def sized(case: Case, nr: int) -> Case:
    """``case`` with THPs and hugetlb pages of ``nr`` subpages: a catalog
    case is built again at that size; a case without THP/hugetlb only
    changes its geometry field; any other case (a scenario file, a combined
    case) has addresses fixed for its own size and cannot be resized."""
    if case.hpage_pmd_nr == nr:
        return case
    check_hpage_pmd_nr(nr)
    if not uses_huge(case):
        return dataclasses.replace(case, hpage_pmd_nr=nr)
    if "mthp" in case.tags and case.id not in _all(case.hpage_pmd_nr) and \
            _mthp_on_demand(case.id, case.hpage_pmd_nr) == case:
        return _mthp_on_demand(case.id, nr)
    if _all(case.hpage_pmd_nr).get(case.id) != case:
        raise CatalogError(f"{case.id}: not a catalog case, so it cannot be rebuilt with THP size {nr} "
                           f"(its addresses are for {case.hpage_pmd_nr} subpages; set hpage_pmd_nr in the file)")
    return _all(nr)[case.id]
