"""``cowlab selftest``: the cow.c catalog run the way the kernel's selftest
runs, reported in KTAP.

A test of the leak group (cow.c cases 1-6: "No leak from parent into child" /
"... child into parent") fails when the model finds a missed COW; a test of
the pin group (7-14: "Longterm R/W|R/O pin is reliable") fails when it finds a
wrong COW.  As in cow.c, the vmsplice tests on hugetlb are expected to fail
(``xfail = is_hugetlb``; "selftests: mm: cow: flag vmsplice() hugetlb tests as
XFAIL", 20240502085259.103784-2-david@redhat.com): a leak there is
``ok ... # XFAIL``.  Unnecessary COWs do not fail a cow.c test.
"""
from __future__ import annotations

from .catalog import cow_c
from .model import CowModel
from .run import run_sequential
from .verdict import MISSED, WRONG

LEAK_TESTS = {t[0] for t in cow_c.TESTS[:6]}
VMSPLICE_TESTS = {t[0] for t in cow_c.TESTS[2:6]}


def test_of(case):
    """(cow.c test id, variant) of a cow.c case (an mTHP case's id ends in ``-<kB>k``: cow_c.mthp_case_id())."""
    for tid, *_ in cow_c.TESTS:
        for v in cow_c.VARIANTS:
            if cow_c.case_id(tid, v) == case.id or (v in cow_c.MTHP_VARIANTS and "mthp" in case.tags and any(
                    cow_c.mthp_case_id(tid, v, kb) == case.id for kb in cow_c.MTHP_SIZES_KB)):
                return tid, v
    raise KeyError(case.id)


def judge(case, result) -> str:
    """pass | fail | xfail | skip"""
    tid, variant = test_of(case)
    if result.status != "complete" or result.bugs:
        return "fail"
    failed = result.outcomes[MISSED] > 0 if tid in LEAK_TESTS else result.outcomes[WRONG] > 0
    if failed and variant == "hugetlb" and tid in VMSPLICE_TESTS:
        return "xfail"
    return "fail" if failed else "pass"


def run(design, progress=None, cases=None):
    """``cases``: a selection of cow_c.cases() (``selftest -t``), default all."""
    rows = []
    for c in (cow_c.cases() if cases is None else cases):
        r = run_sequential(CowModel(c, design))
        rows.append((c, r, judge(c, r)))
        if progress:
            progress()
    return rows


def ktap(design, rows) -> str:
    out = ["TAP version 13", f"# cowlab model of tools/testing/selftests/mm/cow.c under design {design.name} "
                             f"({design.kernel})", f"1..{len(rows)}"]
    totals = {"pass": 0, "fail": 0, "xfail": 0, "skip": 0}
    for i, (c, r, verdict) in enumerate(rows, 1):
        totals[verdict] += 1
        out.append(f"# [RUN] {c.title}")
        if verdict == "fail":
            why = next((t for _, k, t in r.events), r.reason or "")
            if why:
                out.append(f"# {why}")
        line = f"{'not ok' if verdict == 'fail' else 'ok'} {i} {c.title}"
        if verdict == "xfail":
            line += " # XFAIL"
        elif verdict == "skip":
            line += " # SKIP"
        out.append(line)
    out.append(f"# Totals: pass:{totals['pass']} fail:{totals['fail']} xfail:{totals['xfail']} "
               f"xpass:0 skip:{totals['skip']} error:0")
    return "\n".join(out)
