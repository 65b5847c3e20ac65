"""``cowlab selftest``: tools/testing/selftests/mm/cow.c run on the model, its
tests named, ordered and counted as cow.c prints them, reported in KTAP.

The kernel's test list is generated from cow.c's main() (torvalds/linux
109364fce504 and 49850bd02658, the same list in both): for each of
``anon_test_cases[]`` (run_anon_test_case()) the base page, the swapped-out
base page, for each THP size in ascending order (detect_thp_sizes(); the
PMD size gets "with THP" and "with swapped-out THP" first) the six PTE-level
variants, then one hugetlb test per hugetlb size (detect_hugetlb_page_sizes(),
readdir order); then ``anon_thp_test_cases[]`` at the PMD size
(run_anon_thp_test_cases(), only with THP); then ``non_anon_test_cases[]``
with the shared zeropage, memfd, tmpfile, the huge zeropage (only with THP)
and memfd hugetlb per hugetlb size (run_non_anon_test_case()).  The count is
ksft_set_plan()'s: 14 * tests_per_anon_test_case() + 4 * (THP ? 1 : 0) + 3 *
tests_per_non_anon_test_case() -- 778 with x86-64's 8 THP sizes and 2 hugetlb
sizes.

Each test is judged as cow.c judges it: the leak tests (do_test_cow_in_parent(),
do_test_vmsplice_in_parent(), do_test_anon_thp_collapse()) fail when the model
finds a missed COW, the pin tests (do_test_iouring(), do_test_ro_pin()) when it
finds a wrong one, test_cow() ("Other mapping modified") on a missed COW of the
zero page.  As in cow.c the vmsplice tests on hugetlb are expected to fail
(``xfail = is_hugetlb``; 7dad331be781's list, "selftests: mm: cow: flag
vmsplice() hugetlb tests as XFAIL", 20240502085259.103784-2-david@redhat.com):
a leak there is ``ok ... # XFAIL``.  Unnecessary COWs do not fail a cow.c test.
A test the model has no case for is ``ok N # SKIP model has none: <why>``; an
mTHP test under a design without mTHP (``anon_mthp`` false, before 6.8) is
skipped the way do_run_with_thp() skips when no THP was populated ("Did not
get a THP populated").

The KTAP is 49850bd02658's (log_test_start() / log_test_result(): ``# [RUN]
<name>``, cow.c's message as ``# <message>``, ``ok N <name>``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

from . import designs
from .catalog import cow_c
from .catalog.cow_c import HUGETLB_KB, PMD_KB, THP_KB, THP_VARIANTS
from .model import CowModel
from .run import run_sequential
from .verdict import MISSED, WRONG

SRC = "tools/testing/selftests/mm/cow.c (torvalds/linux 109364fce504, 49850bd02658)"

_ANON = [t[0] for t in cow_c.TESTS]
LEAK_TESTS = set(_ANON[:6])
VMSPLICE_TESTS = set(_ANON[2:6])

#: the judgement of a cow.c test: (what fails it, cow.c's message on success (109364fce504's result line), on
#: failure (49850bd02658's ksft_print_msg(); "Longtom" is cow.c's own spelling there))
JUDGES = {
    "leak-parent": (MISSED, "No leak from parent into child", "Leak from parent into child"),
    "leak-child": (MISSED, "No leak from child into parent", "Leak from child into parent"),
    "rw-pin": (WRONG, "Longterm R/W pin is reliable", "Longtom R/W pin is not reliable"),
    "ro-pin": (WRONG, "Longterm R/O pin is reliable", "Longterm R/O pin is not reliable"),
    "other-mapping": (MISSED, "Other mapping not modified", "Other mapping modified"),
}

#: cow.c's section headers (ksft_print_msg(); the non-anon one is printed as "[RUN]")
SECTIONS = {"anon": "[INFO] Anonymous memory tests in private mappings",
            "anon-thp": "[INFO] Anonymous THP tests",
            "non-anon": "[RUN] Non-anonymous memory tests in private mappings"}

NO_THP_POPULATED = "Did not get a THP populated"


def kind_of(tid: str) -> str:
    """The JUDGES key of cow.c test ``tid``."""
    if tid in _ANON:
        i = _ANON.index(tid)
        return "leak-parent" if i < 4 else "leak-child" if i < 6 else "rw-pin" if i < 8 else "ro-pin"
    if tid in {t for t, _ in cow_c.COLLAPSE_TESTS}:
        return "leak-parent"                    # do_test_anon_thp_collapse(): child_memcmp_fn
    if tid == "non-anon-cow":
        return "other-mapping"
    if tid in ("ro-pin", "ro-fast-pin"):
        return "ro-pin"
    raise KeyError(tid)


class KTest(NamedTuple):
    """One test of cow.c as its main() runs it."""
    name: str               # log_test_start()'s text: "<desc> ... with THP (2048 kB)"
    tid: str                # cow_c.TESTS / COLLAPSE_TESTS / NON_ANON_TESTS id
    variant: str            # cow_c.VARIANTS / NON_ANON_VARIANTS key ("thp" for a collapse test)
    size_kb: int | None     # the THP or hugetlb size; None for base pages and the zeropages
    id: str                 # the model's case id for it (cow_c.kernel_case_id)
    title: str              # the case title style ("<desc> with <variant>")
    section: str            # anon | anon-thp | non-anon

    @property
    def kind(self) -> str:
        return kind_of(self.tid)

    @property
    def xfail(self) -> bool:
        """vmsplice() tests on hugetlb: ``is_hugetlb`` passed as xfail."""
        return self.variant == "hugetlb" and self.tid in VMSPLICE_TESTS

    @property
    def mthp(self) -> bool:
        return self.variant in THP_VARIANTS and self.size_kb not in (None, PMD_KB)


def kernel_tests(thp_kb=THP_KB, hugetlb_kb=HUGETLB_KB, pmd_kb: int | None = PMD_KB) -> list[KTest]:
    """cow.c's tests in its order for THP sizes ``thp_kb`` (the PMD size is
    added, as detect_thp_sizes() does; sorted ascending) and hugetlb sizes
    ``hugetlb_kb`` (in the order given: readdir's); ``pmd_kb`` None: no THP
    (read_pmd_pagesize() 0: no THP test, no collapse, no huge zeropage)."""
    thp = sorted(set(thp_kb) | {pmd_kb}) if pmd_kb else []
    out = []

    def add(name, tid, variant, size, title, section):
        out.append(KTest(name, tid, variant, size, cow_c.kernel_case_id(tid, variant, size), title, section))

    for tid, desc, _, _ in cow_c.TESTS:
        add(f"{desc} ... with base page", tid, "base", None, desc, "anon")
        add(f"{desc} ... with swapped out base page", tid, "swap", None, f"{desc} {cow_c.VARIANTS['swap'][0]}",
            "anon")
        for kb in thp:
            for v in THP_VARIANTS:
                if v in cow_c.PMD_ONLY and kb != pmd_kb:
                    continue
                suffix = cow_c.VARIANTS[v][0]
                add(f"{desc} ... {suffix} ({kb} kB)", tid, v, kb, f"{desc} {suffix}", "anon")
        for kb in hugetlb_kb:
            add(f"{desc} ... with hugetlb ({kb} kB)", tid, "hugetlb", kb, f"{desc} with hugetlb", "anon")
    if pmd_kb:
        for tid, desc in cow_c.COLLAPSE_TESTS:
            add(desc, tid, "thp", pmd_kb, desc, "anon-thp")
    for tid, desc, _ in cow_c.NON_ANON_TESTS:
        for v in ("zeropage", "memfd", "tmpfile") + (("huge-zeropage",) if pmd_kb else ()):
            suffix = cow_c.NON_ANON_VARIANTS[v][0]
            add(f"{desc} ... {suffix}", tid, v, None, f"{desc} {suffix}", "non-anon")
        for kb in hugetlb_kb:
            add(f"{desc} ... with memfd hugetlb ({kb} kB)", tid, "memfd-hugetlb", kb, f"{desc} with memfd hugetlb",
                "non-anon")
    return out


def plan(nr_thp: int, nr_hugetlb: int, thp: bool = True) -> int:
    """ksft_set_plan()'s count: tests_per_anon_test_case() etc."""
    anon = 2 + nr_hugetlb + 6 * nr_thp + (2 if thp else 0)
    non_anon = 3 + nr_hugetlb + (1 if thp else 0)
    return len(cow_c.TESTS) * anon + len(cow_c.COLLAPSE_TESTS) * (1 if thp else 0) + \
        len(cow_c.NON_ANON_TESTS) * non_anon


# ----------------------------------------------------------------------------- the host's sizes, as cow.c detects them
NR_ORDERS = 20          # thp_settings.h


def host_sizes(root: str = "/sys/kernel/mm") -> tuple[int | None, tuple, tuple]:
    """(PMD size kB or None, THP sizes kB, hugetlb sizes kB) as cow.c's
    main() detects them on this machine: read_pmd_pagesize()
    (transparent_hugepage/hpage_pmd_size), detect_thp_sizes() (the PMD size
    and every ``hugepages-<kB>kB`` whose ``enabled`` file reads:
    thp_supported_orders()), detect_hugetlb_page_sizes() (``hugepages/
    hugepages-<kB>kB`` directories in readdir order)."""
    page_kb = os.sysconf("SC_PAGE_SIZE") >> 10
    thp_dir = os.path.join(root, "transparent_hugepage")
    try:
        with open(os.path.join(thp_dir, "hpage_pmd_size")) as f:
            pmd_kb = int(f.read().strip()) >> 10 or None
    except (OSError, ValueError):
        pmd_kb = None
    thp = []
    if pmd_kb:
        for order in range(NR_ORDERS):
            kb = page_kb << order
            try:
                with open(os.path.join(thp_dir, f"hugepages-{kb}kB", "enabled")) as f:
                    if f.read():
                        thp.append(kb)
            except OSError:
                pass
        thp = sorted(set(thp) | {pmd_kb})
    huge = []
    try:
        for e in os.scandir(os.path.join(root, "hugepages")):
            if e.is_dir() and e.name.startswith("hugepages-") and e.name.endswith("kB") and e.name[10:-2].isdigit():
                huge.append(int(e.name[10:-2]))
    except OSError:
        pass
    return pmd_kb, tuple(thp), tuple(huge)


# ----------------------------------------------------------------------------- judging and running
def test_of(case):
    """-> (test id, variant) of a cow.c case (anon, mTHP ``-<kB>k``, hugetlb
    ``-1g``, collapse or non-anon); KeyError if it is none."""
    cid = case if isinstance(case, str) else case.id
    for tid, *_ in cow_c.TESTS:
        for v in cow_c.VARIANTS:
            base = cow_c.case_id(tid, v)
            if cid == base or (v == "hugetlb" and cid == base + "-1g") or \
                    (v in THP_VARIANTS and v not in cow_c.PMD_ONLY and cid.startswith(base + "-") and
                     cid[len(base) + 1:-1].isdigit() and cid.endswith("k")):
                return tid, v
    for tid, _ in cow_c.COLLAPSE_TESTS:
        if cid == tid:
            return tid, "thp"
    for tid, _, _ in cow_c.NON_ANON_TESTS:
        for v in cow_c.NON_ANON_VARIANTS:
            if cid in (f"{tid}-{v}", f"{tid}-{v}-1g"):
                return tid, v
    raise KeyError(cid)


def verdict_of(tid: str, variant: str, result) -> tuple[str, str]:
    """cow.c's judgement of a model run: (pass | fail | xfail, cow.c's message)."""
    what, ok, bad = JUDGES[kind_of(tid)]
    if result.status != "complete" or result.bugs:
        return "fail", f"model: {result.reason or 'inconclusive'}" + (f" ({result.bugs[0]})" if result.bugs else "")
    if result.outcomes[what] > 0:
        return ("xfail" if variant == "hugetlb" and tid in VMSPLICE_TESTS else "fail"), bad
    return "pass", ok


#: the call whose failure makes cow.c skip a collapse test ("MADV_COLLAPSE failed: %s")
COLLAPSE_CALL = "madvise(MADV_COLLAPSE)"


def skip_reason(case, result) -> str | None:
    """What cow.c prints when it skips this test, or None: a collapse test
    whose madvise(MADV_COLLAPSE) failed -- do_test_anon_thp_collapse():
    ``ksft_test_result_skip("MADV_COLLAPSE failed: %s\\n", strerror(errno))``,
    the errno from the case's ``Error`` effect (``Result.errors``)."""
    if case.id not in {t for t, _ in cow_c.COLLAPSE_TESTS}:
        return None
    for _, call, errno in getattr(result, "errors", ()):
        if call == COLLAPSE_CALL:
            return f"MADV_COLLAPSE failed: {os.strerror(errno)}"
    return None


def judge(case, result) -> str:
    """pass | fail | xfail | skip of a cow.c case's run, as cow.c judges it."""
    if result.status == "complete" and not result.bugs and skip_reason(case, result) is not None:
        return "skip"
    return verdict_of(*test_of(case), result)[0]


class Row(NamedTuple):
    n: int                  # the KTAP test number
    test: KTest
    case: object            # the model's Case, None when it has none
    result: object          # run.Result, None when nothing ran
    verdict: str            # pass | fail | xfail | skip | none
    message: str            # cow.c's message (a skip's reason, why the model has none)


def _key(case):
    """A case without its names: all mTHP sizes run the same model case at
    model geometry, apart from id and title."""
    return dataclasses.replace(case, id="", title="", source="", tags=())


def model_test(t: KTest, design, real: bool = False, memo: dict | None = None):
    """-> (case, result, verdict, message) of one cow.c test under
    ``design``; ``memo`` keeps the runs of identical cases."""
    if t.mthp and designs.anon_mthp(design) is False:
        return None, None, "skip", NO_THP_POPULATED          # do_run_with_thp(): the last subpage not populated
    c = cow_c.case_for(t.tid, t.variant, t.size_kb or PMD_KB, real=real)
    if c is None:
        return None, None, "none", f"model has none: {why_none(t)}"
    key = _key(c)
    r = memo.get(key) if memo is not None else None
    if r is None:
        r = run_sequential(CowModel(c, design))
        if memo is not None:
            memo[key] = r
    r = dataclasses.replace(r, case=c.id) if r.case != c.id else r
    why = skip_reason(c, r) if r.status == "complete" and not r.bugs else None
    if why is not None:
        return c, r, "skip", why
    v, msg = verdict_of(t.tid, t.variant, r)
    return c, r, v, msg


def why_none(t: KTest) -> str:
    if t.variant in cow_c.NON_ANON_VARIANTS and cow_c.NON_ANON_VARIANTS[t.variant][1]:
        return cow_c.NON_ANON_VARIANTS[t.variant][1]
    if t.section == "anon-thp":
        return f"no MADV_COLLAPSE case {t.id} in the catalog"
    if t.mthp:
        return f"no mTHP case {t.id} ({t.size_kb} kB folios) in the catalog"
    if t.variant == "hugetlb":
        return f"no hugetlb case of {t.size_kb} kB"
    return f"no case {t.id} in the catalog"


def run(design, tests: list[KTest] | None = None, progress=None, real: bool = False) -> list[Row]:
    """Every test of ``tests`` (default: kernel_tests()) under ``design``,
    numbered as KTAP numbers them; identical runs are made once."""
    memo: dict = {}
    rows = []
    for i, t in enumerate(kernel_tests() if tests is None else tests, 1):
        c, r, v, msg = model_test(t, design, real, memo)
        rows.append(Row(i, t, c, r, v, msg))
        if progress:
            progress()
    return rows


def totals(rows) -> dict:
    """ksft_print_cnts()'s counters (a test the model has none of is a skip)."""
    t = {"pass": 0, "fail": 0, "xfail": 0, "xpass": 0, "skip": 0, "error": 0}
    for row in rows:
        t["skip" if row.verdict == "none" else row.verdict] += 1
    return t


def _witness(r) -> str:
    return next((text for _, _, text in r.events), "") if r is not None else ""


def ktap(design, rows, sizes=None) -> str:
    """KTAP as cow.c (49850bd02658) prints it: the header, the [INFO] lines
    of the sizes, the plan, each test's ``# [RUN]`` line, cow.c's message on
    a failure or a skip (the model's witness after it), its result line;
    ``# Totals``.  ``sizes``: (pmd kB or None, THP kB, hugetlb kB)."""
    pmd_kb, thp_kb, huge_kb = sizes or (PMD_KB, THP_KB, HUGETLB_KB)
    out = ["TAP version 13",
           f"# cowlab model of {SRC} under design {design.name} ({design.kernel})"]
    if pmd_kb:
        out.append(f"# [INFO] detected PMD size: {pmd_kb} KiB")
        out += [f"# [INFO] detected THP size: {kb} KiB" for kb in sorted(set(thp_kb) | {pmd_kb})]
    out += [f"# [INFO] detected hugetlb page size: {kb} KiB" for kb in huge_kb]
    if pmd_kb:
        out.append("# [INFO] huge zeropage is enabled")        # the model's use_zero_page: its default, 1
    out.append(f"1..{len(rows)}")
    section = None
    for row in rows:
        t = row.test
        if t.section != section:
            section = t.section
            out.append(f"# {SECTIONS[section]}")
        out.append(f"# [RUN] {t.name}")
        if row.verdict == "none":
            out.append(f"ok {row.n} # SKIP {row.message}")
            continue
        if row.verdict in ("fail", "xfail", "skip"):
            out.append(f"# {row.message}")
            if row.verdict != "skip" and (w := _witness(row.result)):
                out.append(f"# model: {w}")
        out.append({"pass": "ok", "fail": "not ok", "xfail": "ok", "skip": "ok"}[row.verdict] + f" {row.n} " +
                   {"xfail": "# XFAIL ", "skip": "# SKIP "}.get(row.verdict, "") + t.name)
    c = totals(rows)
    out.append(f"# Totals: pass:{c['pass']} fail:{c['fail']} xfail:{c['xfail']} xpass:{c['xpass']} "
               f"skip:{c['skip']} error:{c['error']}")
    return "\n".join(out)


def as_json(design, rows, sizes=None) -> dict:
    pmd_kb, thp_kb, huge_kb = sizes or (PMD_KB, THP_KB, HUGETLB_KB)
    res = []
    for row in rows:
        d = {"n": row.n, "name": row.test.name, "id": row.test.id}
        if row.result is not None:
            d.update(row.result.as_json())
        else:
            d["case"] = row.case.id if row.case is not None else None
        d.update(selftest="skip" if row.verdict == "none" else row.verdict, message=row.message,
                 model="none" if row.verdict == "none" else "skip" if row.result is None else "run")
        res.append(d)
    return {"design": design.name, "kernel": design.kernel,
            "sizes": {"pmd_kb": pmd_kb, "thp_kb": sorted(set(thp_kb) | ({pmd_kb} if pmd_kb else set())),
                      "hugetlb_kb": list(huge_kb)},
            "plan": len(rows), "totals": totals(rows), "results": res}
