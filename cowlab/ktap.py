"""A real run of tools/testing/selftests/mm/cow.c, read from its KTAP output,
and ``cowlab selftest --compare``: each kernel test paired by its ``[RUN]``
name with the model's verdict of the same test.

The KTAP is kselftest.h's (ksft_print_header(), ksft_set_plan() ``1..N``,
ksft_print_msg() ``# <msg>``, ksft_test_result_*() ``ok N <msg>``, ``not ok N
<msg>``, ``ok N # SKIP <msg>``, ``ok N # XFAIL <msg>``, ``not ok N # error
<msg>``, ksft_print_cnts() ``# Totals: ...``) in either of cow.c's forms:
109364fce504 puts cow.c's message on the result line (``ok 1 No leak from
parent into child``), 49850bd02658 the test's name (log_test_result(), the
message before it as ``# Leak from parent into child``).  The kselftest
runner (run_kselftest.sh, run_vmtests.sh) prefixes a test's output with
``# `` once per level; the level of cow.c's own lines is the one its ``#
[RUN]`` lines are one ``# `` below.  Other lines (the runner's own, at
other levels) are ignored.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from . import selftest as st
from .catalog import cow_c

RESULT = re.compile(r"(not ok|ok) (\d+)(?: (.*))?$")
DIRECTIVE = re.compile(r"#\s*(SKIP|XFAIL|XPASS|TODO|ERROR)\b\s*(.*)$", re.I)
SIZE = re.compile(r"\((\d+) kB\)$")
INFO_THP = re.compile(r"\[INFO\] detected THP size: (\d+) KiB")
INFO_PMD = re.compile(r"\[INFO\] detected PMD size: (\d+) KiB")
INFO_HUGETLB = re.compile(r"\[INFO\] detected hugetlb page size: (\d+) KiB")
TOTALS = re.compile(r"Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) error:(\d+)")

#: the headers cow.c prints with "[RUN]" that are no test
HEADERS = {st.SECTIONS["non-anon"][len("[RUN] "):]}


class KtapError(Exception):
    """A file that is not a cow.c KTAP run: ``FILE:LINE: what``."""


class KResult(NamedTuple):
    """One test of a kernel run."""
    n: int | None           # the result's number (None: no result line)
    name: str               # the [RUN] name
    status: str             # pass | fail | xfail | xpass | skip | error | none (no result line)
    text: str               # the result line's text (109364fce504: cow.c's message; 49850bd02658: the name)
    messages: tuple         # the "# ..." lines between [RUN] and the result
    line: int               # the [RUN] line's number

    @property
    def reason(self) -> str:
        """What the kernel said about it: its messages, else the result's text
        when it is not the test's name."""
        said = [m for m in self.messages if not m.startswith("[INFO]")]
        if self.text and self.text != self.name:
            said.append(self.text)
        return "; ".join(said)


class KRun(NamedTuple):
    path: str
    tests: list             # KResult, in the file's order
    plan: int | None
    totals: dict | None     # the file's own "# Totals" line
    pmd_kb: int | None
    thp_kb: tuple
    hugetlb_kb: tuple


def _depth(line: str) -> tuple[int, str]:
    """(the number of leading ``# `` prefixes, the rest)."""
    d = 0
    while True:
        if line.startswith("# "):
            line = line[2:]
        elif line == "#":
            line = ""
        else:
            return d, line
        d += 1


BANNER = re.compile(r"running (\S+)")


def _cow_section(lines: list) -> list:
    """The lines of cow's own run when the file is run_vmtests.sh's log of
    several programs (its "running ./cow" banners); the others blanked, so
    line numbers stay the file's."""
    marks = [(i, m.group(1)) for i, raw in enumerate(lines)
             if (m := BANNER.fullmatch(_depth(raw.strip())[1].strip()))]
    if not any(prog.rsplit("/", 1)[-1] == "cow" for _, prog in marks):
        return lines
    keep = [False] * len(lines)
    for (i, prog), nxt in zip(marks, [j for j, _ in marks[1:]] + [len(lines)]):
        if prog.rsplit("/", 1)[-1] == "cow":
            keep[i:nxt] = [True] * (nxt - i)
    return [x if k else "" for x, k in zip(lines, keep)]


def parse(text: str, path: str = "<ktap>") -> KRun:
    """A cow.c KTAP run; KtapError naming the file and line when it is none."""
    lines = _cow_section(text.splitlines())
    runs = [(i, d) for i, raw in enumerate(lines, 1)
            for d, rest in [_depth(raw.rstrip("\r").lstrip())] if d > 0 and rest.startswith("[RUN] ")]
    if not runs:
        raise KtapError(f"{path}:1: not a cow.c KTAP run: no '# [RUN] <test>' line")
    level = min(d for _, d in runs) - 1          # cow.c's own lines; its messages are one "# " deeper
    tests: list[KResult] = []
    cur = None                                  # [name, line, messages]
    plan = totals = pmd = None
    thp, huge = [], []
    expect = 1

    def close(status="none", n=None, text=""):
        nonlocal cur
        if cur is not None:
            tests.append(KResult(n, cur[0], status, text, tuple(cur[2]), cur[1]))
        cur = None

    for i, raw in enumerate(lines, 1):
        d, rest = _depth(raw.rstrip("\r").lstrip())
        rest = rest.rstrip()
        if d == level + 1:
            if rest.startswith("[RUN] "):
                name = rest[6:].strip()
                if name in HEADERS:
                    close()
                    continue
                close()
                cur = [name, i, []]
                continue
            for rx, into in ((INFO_THP, thp), (INFO_HUGETLB, huge)):
                if (m := rx.match(rest)) and int(m.group(1)) not in into:
                    into.append(int(m.group(1)))
            if m := INFO_PMD.match(rest):
                pmd = int(m.group(1))
            if m := TOTALS.match(rest):
                totals = dict(zip(("pass", "fail", "xfail", "xpass", "skip", "error"), map(int, m.groups())))
            elif cur is not None and rest and not rest.startswith(("[INFO]", "Planned tests")):
                cur[2].append(rest)
        elif d == level:
            if m := re.fullmatch(r"1\.\.(\d+)(?:\s*#.*)?", rest):
                if plan is not None:
                    raise KtapError(f"{path}:{i}: a second plan line ({rest}); one cow.c run per file")
                plan = int(m.group(1))
                continue
            if rest.startswith("Bail out!"):
                close()
                continue
            if not rest.startswith(("ok", "not ok")):
                continue
            m = RESULT.fullmatch(rest)
            if m is None:
                raise KtapError(f"{path}:{i}: not a KTAP result line ('ok N ...' / 'not ok N ...'): {rest[:60]!r}")
            n = int(m.group(2))
            if n != expect:
                raise KtapError(f"{path}:{i}: test number {n}, expected {expect} (a KTAP run numbers its tests "
                                f"1, 2, 3 ...)")
            expect += 1
            if plan is not None and n > plan:
                raise KtapError(f"{path}:{i}: test {n}, more than the plan's {plan} ('1..{plan}')")
            if cur is None:
                raise KtapError(f"{path}:{i}: result '{m.group(1)} {n}' has no '# [RUN] <test>' line before it")
            desc = (m.group(3) or "").strip()
            status = "fail" if m.group(1) == "not ok" else "pass"
            text, dm = desc, None
            if desc.startswith("#"):                         # kselftest.h: "ok N # SKIP <msg>"
                if (dm := DIRECTIVE.match(desc)) is not None:
                    text = dm.group(2).strip()
            elif " # " in desc:                              # TAP's "ok N <desc> # SKIP <reason>"
                head, _, tail = desc.rpartition(" # ")
                if (dm := DIRECTIVE.match("# " + tail)) is not None:
                    text = head.strip()
                    if dm.group(2).strip():
                        cur[2].append(dm.group(2).strip())
            if dm is not None:
                status = {"SKIP": "skip", "XFAIL": "xfail", "XPASS": "xpass", "TODO": status,
                          "ERROR": "error"}[dm.group(1).upper()]
            close(status, n, text)
    close()
    if not any(t.n is not None for t in tests):
        raise KtapError(f"{path}:{runs[0][0]}: no test result ('ok N' / 'not ok N') after the '# [RUN]' lines")
    for t in tests:                              # the sizes the run's names show (older runs print no [INFO])
        if (m := SIZE.search(t.name)) is None:
            continue
        kb = int(m.group(1))
        into = huge if "hugetlb (" in t.name else thp
        if kb not in into:
            into.append(kb)
    if pmd is None and any(f"with THP ({kb} kB)" in t.name for t in tests for kb in thp):
        pmd = next(kb for kb in sorted(thp, reverse=True) if any(f"with THP ({kb} kB)" in t.name for t in tests))
    if pmd is None and thp:
        pmd = max(thp)
    return KRun(path, tests, plan, totals, pmd, tuple(sorted(thp)), tuple(huge))


def read(path: str) -> KRun:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KtapError(f"{path}: cannot read it: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise KtapError(f"{path}:{line}: not a text file (byte {e.start} is not UTF-8)") from None
    return parse(text, path)


# ----------------------------------------------------------------------------- the comparison
AGREE, DISAGREE, NONE, KSKIP, NORESULT, INCONCLUSIVE = ("agree", "disagree", "model has none", "kernel skipped",
                                                       "no kernel result", "model inconclusive")
#: several runs of the kernel gave a test different results, and the model's verdict is one of them
VARIES = "kernel varies"
OUTCOMES = (AGREE, DISAGREE, VARIES, NONE, KSKIP, NORESULT, INCONCLUSIVE)


class Pair(NamedTuple):
    kernel: KResult
    test: object            # st.KTest, None when the model's list has no test of that name
    model: str | None       # the model's verdict (pass | fail | xfail | skip | none)
    case: str | None        # the model's case id
    message: str            # the model's message
    outcome: str            # one of OUTCOMES
    result: object = None   # run.Result


def _names(tests) -> dict:
    """[RUN] name -> KTest; a PMD-size THP test also under its name without
    the size (cow.c before mTHP: "... with THP")."""
    out = {}
    for t in tests:
        out.setdefault(t.name, t)
        if t.variant in st.THP_VARIANTS and t.size_kb == cow_c.PMD_KB:
            out.setdefault(SIZE.sub("", t.name).rstrip(), t)
    return out


def compare(run: KRun, design, real: bool = False, select=None) -> tuple[list[Pair], list]:
    """-> (a Pair per kernel test, the model's tests the kernel did not run).
    The model's list is kernel_tests() at the run's sizes; ``select``
    (a set of KTest ids) keeps only those tests."""
    tests = st.kernel_tests(run.thp_kb, run.hugetlb_kb, run.pmd_kb)
    by = _names(tests)
    memo: dict = {}
    pairs, seen = [], set()
    for k in run.tests:
        t = by.get(k.name)
        if select is not None and (t is None or t.id not in select):
            continue
        if t is not None:
            seen.add(t)
        if k.status == "none":
            pairs.append(Pair(k, t, None, None, "", NORESULT))
            continue
        if t is None:
            pairs.append(Pair(k, None, "none", None, "model has none: not a cow.c test the model knows", NONE))
            continue
        c, r, v, msg = st.model_test(t, design, real, memo)
        cid = c.id if c is not None else None
        if k.status == "skip":
            outcome = KSKIP
        elif v == "none":
            outcome = NONE
        elif r is not None and (r.status != "complete" or r.bugs):
            outcome = INCONCLUSIVE
        else:
            outcome = AGREE if v == k.status else DISAGREE
        pairs.append(Pair(k, t, v, cid, msg, outcome, r))
    missing = [t for t in tests if t not in seen and (select is None or t.id in select)]
    return pairs, missing


def across_runs(per_run: list) -> list:
    """Several kernel runs' comparisons (``compare()``'s pairs, one list per
    run) as one: a test every run gave the same result keeps its outcome
    (the first run's pair); a test the runs disagree on is VARIES when the
    model's verdict is one of the kernel's results (the kernel's own
    behaviour differs from run to run: cow.c's 1 GiB hugetlb vmsplice() tests
    leak in some runs only), else DISAGREE.  A varying test's status reads
    like ``xfail in 2 of 3 runs, pass in 1``; its outcome is computed from the
    kernel's results, never assumed.  Tests are keyed by [RUN] name, in the
    first run's order; one only some runs have counts with the runs that have it."""
    by: dict = {}
    for pairs in per_run:
        for p in pairs:
            by.setdefault(p.kernel.name, []).append(p)
    out = []
    for name, ps in by.items():
        statuses = [p.kernel.status for p in ps]
        if len(set(statuses)) == 1:
            out.append(ps[0])
            continue
        seen = {}
        for x in statuses:
            seen[x] = seen.get(x, 0) + 1
        text = ", ".join(f"{k} in {v}" + (f" of {len(ps)} runs" if i == 0 else "") for i, (k, v) in
                         enumerate(sorted(seen.items(), key=lambda kv: -kv[1])))
        first = ps[0]
        outcome = VARIES if first.model in seen else DISAGREE
        if first.model == "none":
            outcome = NONE
        out.append(first._replace(kernel=first.kernel._replace(status=text), outcome=outcome))
    return out


def counts(pairs) -> dict:
    out = {o: 0 for o in OUTCOMES}
    for p in pairs:
        out[p.outcome] += 1
    return out


def as_json(run: KRun, design, pairs, missing) -> dict:
    return {"file": run.path, "design": design.name, "kernel": design.kernel,
            "kernel_run": {"plan": run.plan, "results": sum(1 for k in run.tests if k.n is not None),
                           "totals": run.totals, "pmd_kb": run.pmd_kb, "thp_kb": list(run.thp_kb),
                           "hugetlb_kb": list(run.hugetlb_kb)},
            "totals": counts(pairs),
            "tests": [{"n": p.kernel.n, "name": p.kernel.name, "line": p.kernel.line, "kernel": p.kernel.status,
                       "kernel_reason": p.kernel.reason, "model": p.model, "case": p.case,
                       "id": p.test.id if p.test is not None else None, "model_message": p.message,
                       "outcome": p.outcome} for p in pairs],
            "not_in_kernel_run": [t.name for t in missing]}
