"""The comparison and the run of ``cowlab conformance`` (see the package docstring)."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field

from .. import catalog, designs
from ..kernel.types import PTE_PRESENT, PTE_SWAP, ZERO_PFN, HPAGE_PMD_NR
from ..model import CowModel

SUPPORTED = {"mmap", "write", "read", "fork", "exit", "munmap", "mprotect", "madvise", "clear_refs", "vmsplice", "mremap",
             "pipe_read", "signal", "wait", "pageout", "io_uring_register", "io_uring_read_fixed",
             "io_uring_write_fixed", "io_uring_unregister"}
DESIGN_VERSIONS = [((5, 7), "linux-5.7"), ((5, 8), "linux-5.8"), ((5, 9), "linux-5.9"), ((5, 11), "linux-5.11"),
                   ((5, 18), "linux-5.18"), ((5, 19), "linux-5.19"), ((6, 18), "linux-6.18")]
NEGATIVE_CONTROLS = ("basic-cow-fork", "vmsplice-unmap-child")


def design_for_release(release: str) -> tuple[str, str]:
    """The nearest older design for a kernel release (``uname -r``)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    v = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    older = [name for ver, name in DESIGN_VERSIONS if ver <= v]
    if not older:
        return "linux-5.7", f"{release} is older than every design; using linux-5.7"
    name = older[-1]
    return name, f"kernel {release}: nearest older design {name}"


@dataclass
class CaseResult:
    case: str
    result: str                  # agree | disagree | skip
    steps_compared: int = 0
    reason: str = ""
    control: bool = False
    details: list = field(default_factory=list)

    def as_json(self) -> dict:
        d = {"case": self.case, "result": self.result, "steps_compared": self.steps_compared, "reason": self.reason}
        if self.control:
            d["negative_control"] = True
            d["passed"] = self.result == "disagree"
        return d


def _token_byte(t) -> int:
    return 0 if t == 0 else (hash(t) % 251 + 1 if not isinstance(t, int) else t % 251 + 1)


def model_steps(case, design):
    """Run the model on the sequential schedule; per completed operation
    (sync operations dropped): (process, op, args, state after, tokens).
    Conformance compares states, not verdicts, so the oracle is off (it never
    changes a state).  With the kernel's THP size (512 subpages) the model's
    own invariant checks are off too, for speed: they run on the same paths
    at the model's size in the test suite."""
    m = CowModel(case, design, check_invariants=HPAGE_PMD_NR <= 64, oracle=False)
    s = m.init_state()
    out = []
    effects = []
    current = None
    for _ in range(20000):
        if m.is_done(s):
            break
        order = [current] if current is not None else range(m.nthreads)
        tr = next((t for tid in order if (t := m.step(s, tid)) is not None), None)
        if tr is None:
            tr = next((t for tid in range(m.nthreads) if (t := m.step(s, tid)) is not None), None)
        if tr is None:
            raise RuntimeError("the model deadlocked")
        if tr.bugs:
            raise RuntimeError(f"model bug: {tr.bugs[0]}")
        effects += list(tr.effects)
        pc = s.threads[tr.tid].pc
        s = tr.state
        if s.threads[tr.tid].label is None:
            op = m.ops[tr.tid][pc]
            current = None
            if op.name not in ("signal", "wait"):
                stores = [e[5] for e in effects if e[0] == "store"]
                loads = [e[7] for e in effects if e[0] == "load"]
                out.append((case.threads[tr.tid].process, op, s, stores, loads))
            effects = []
        else:
            current = tr.tid
    return m, out


def _model_view(m, s, proc_index, pages):
    """Per page of one process: (kind, identity key, exclusive, mapcount)."""
    mm = s.mms[proc_index]
    view = []
    for a in range(pages):
        pmd = mm.pmds[a // HPAGE_PMD_NR]
        if pmd is not None:
            f = s.folios[pmd.pfn]
            view.append(("present", (pmd.pfn, a % HPAGE_PMD_NR), f.anon_exclusive[a % HPAGE_PMD_NR],
                         f.mapcount[a % HPAGE_PMD_NR] + f.entire_mapcount, False, f.anon_exclusive[0]))
            continue
        p = mm.ptes[a]
        if p is None:
            view.append(("none", None, None, None, False, None))
        elif p.kind == PTE_SWAP:
            view.append(("swap", None, None, None, False, None))
        elif p.kind == PTE_PRESENT:
            if p.pfn == ZERO_PFN:
                view.append(("present", "zero", None, None, True, None))
            else:
                f = s.folios[p.pfn]
                view.append(("present", (p.pfn, p.idx), f.anon_exclusive[p.idx], f.mapcount[p.idx] + f.entire_mapcount,
                             False, f.anon_exclusive[0] if f.nr > 1 else None))
        else:
            view.append(("present", (p.pfn, p.idx), None, None, False, None))   # migration: not compared further
    return view


def _partition(keys: dict) -> set:
    groups = {}
    for where, k in keys.items():
        groups.setdefault(k, set()).add(where)
    return {frozenset(g) for g in groups.values()}


def compare(m, msteps, real_lines, check_exclusive: bool, check_anon: bool = True) -> tuple[int, str]:
    """-> (steps compared, '' or the first difference)."""
    pages = m.case.pages
    names = list(m.case.processes)
    for i, ((proc, op, s, stores, loads), real) in enumerate(zip(msteps, real_lines)):
        where = f"step {i + 1} ({proc}: {op})"
        if not real.get("ok"):
            if op.name == "mmap" and dict(op.args).get("hugetlb"):
                return i, f"SKIP: no free huge page for the mmap ({real.get('error')})"
            return i, f"{where}: the real program failed: {real.get('error')}"
        # data
        if op.name == "read":
            want = [_token_byte(t) for t in loads]
            if real["value"] != want:
                return i, f"{where}: data: the kernel read {real['value']}, the model {want}"
        if op.name == "io_uring_write_fixed":
            want = [_token_byte(t) for t in loads]
            if real["value"] != want:
                return i, f"{where}: data: the file got {real['value']} from the fixed buffer, the model {want}"
        if op.name == "pipe_read":
            want = [_token_byte(t) for t in loads]
            if real["value"] != want:
                return i, f"{where}: data: the pipe held {real['value']}, the model {want}"
        mkeys, rkeys = {}, {}
        for pi, name in enumerate(names):
            alive = s.mms[pi].alive
            if alive != (name in real["snapshot"]):
                return i, f"{where}: process {name} alive: kernel {name in real['snapshot']}, model {alive}"
            if not alive:
                continue
            mv = _model_view(m, s, pi, pages)
            rv = real["snapshot"][name]
            for h, pmd in enumerate(s.mms[pi].pmds):
                if pmd is None:
                    continue
                lo = h * HPAGE_PMD_NR
                pf = [rv[a].get("pfn") for a in range(lo, lo + HPAGE_PMD_NR)]
                if None in pf or pf[0] % HPAGE_PMD_NR or any(pf[j] != pf[0] + j for j in range(len(pf))):
                    # as cow.c: "Did not get a THP populated" is a SKIP, not a failure
                    return i, f"SKIP: the kernel did not populate a huge page where the model has one ({where})"
            for a in range(pages):
                kind, key, excl, mapc, zero, _ = mv[a]
                r = rv[a]
                rkind = "present" if r["present"] else ("swap" if r["swapped"] else "none")
                if kind != rkind:
                    return i, f"{where}: {name} page {a}: kernel {rkind}, model {kind}"
                if kind != "present" or zero or key is None:
                    continue
                if check_anon and not r.get("anon"):
                    return i, f"{where}: {name} page {a}: kernel page is not anonymous"
                mkeys[(name, a)] = key
                rkeys[(name, a)] = r["pfn"]
                if check_exclusive and excl is not None and mv[a][5] is not None:
                    excl = mv[a][5]     # kpageflags reports a large folio's flag (the head page's) for every subpage
                if check_exclusive and excl is not None and bool(excl) != r["exclusive"]:
                    return i, (f"{where}: {name} page {a}: PG_anon_exclusive kernel {r['exclusive']}, "
                               f"model {bool(excl)}")
                if mapc is not None and mapc != r["count"]:
                    return i, f"{where}: {name} page {a}: mapcount kernel {r['count']}, model {mapc}"
        if _partition(mkeys) != _partition(rkeys):
            return i, f"{where}: which pages share a physical page differs: kernel {sorted(map(sorted, _partition(rkeys)))}, model {sorted(map(sorted, _partition(mkeys)))}"
    if len(real_lines) < len(msteps):
        return len(real_lines), f"the real program stopped after {len(real_lines)} of {len(msteps)} steps"
    return len(msteps), ""


def swap_active() -> bool:
    try:
        with open("/proc/swaps") as f:
            return len(f.read().strip().splitlines()) > 1
    except OSError:
        return False


THP_TAGS = ("thp", "thp-swap", "pte-thp", "pte-thp-swap", "single-pte-thp", "single-pte-thp-swap",
            "partial-mremap-thp", "partial-shared-thp")


def kernel_thp_nr() -> int:
    """Subpages of the kernel's PMD THP (0 when THP is unavailable)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") as f:
            return int(f.read()) // os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _large(case) -> bool:
    return any(t in case.tags for t in THP_TAGS + ("hugetlb",))


def free_hugepages() -> int:
    try:
        with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def unsupported(case, have_swap: bool) -> str:
    if "hugetlb" in case.tags and free_hugepages() < 4:
        return "hugetlb variant: fewer than 4 free 2 MiB huge pages (run with --thp, which raises nr_hugepages)"
    if _large(case) and HPAGE_PMD_NR != kernel_thp_nr():
        return f"THP variant: the model's THP has {HPAGE_PMD_NR} subpages, the kernel's {kernel_thp_nr()}"
    procs = list(case.processes)
    for t in case.threads:
        if t.name != t.process:
            return "several threads in one process: the probe drives one thread per process"
        for op in t.ops:
            if op.name not in SUPPORTED:
                return f"operation {op.name}: not driven by the probe (gup_test pins, KSM, migration ...)"
            if op.name == "fork" and t.process != procs[0]:
                return "a fork by a forked process: the probe forks from the first process only"
            if op.name == "pageout" and not have_swap:
                return "needs swap (run with --swap to set up a temporary zram device)"
            if op.name == "exit" and t.process == procs[0]:
                return "the first process exits"
    if "race" in case.tags:
        return "a race: the kernel's interleaving cannot be chosen"
    return ""


def run_case(case, design, shared: bool = False, have_swap: bool = False) -> CaseResult:
    why = unsupported(case, have_swap)
    if why:
        return CaseResult(case.id, "skip", reason=why)
    m, msteps = model_steps(case, design)
    plan = {"pages": case.pages, "shared": shared, "processes": list(case.processes),
            "align": HPAGE_PMD_NR if _large(case) else 1, "steps": []}
    for proc, op, s, stores, loads in msteps:
        a = {k: v for k, v in op.args if k not in ("process", "child_mm", "mm_id")}
        if op.name == "write":
            a["value"] = [_token_byte(t) for t in stores]
        if op.name == "io_uring_read_fixed":
            a["value"] = [_token_byte(t) for t in stores]
        plan["steps"].append({"process": proc, "op": op.name, "args": a})
    p = subprocess.run([sys.executable, "-m", "cowlab.conformance.worker"], input=json.dumps(plan),
                       capture_output=True, text=True, timeout=600)
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    if p.returncode != 0 and not lines:
        return CaseResult(case.id, "skip", reason=f"the real program failed: {p.stderr.strip()[-300:]}")
    # a control compares what COW decides (data, sharing, counts), not the page type
    n, diff = compare(m, msteps, lines, design.anon_exclusive and not shared, check_anon=not shared)
    if diff.startswith("SKIP: "):
        return CaseResult(case.id, "skip", n, diff[len("SKIP: "):], control=shared)
    if diff:
        return CaseResult(case.id, "disagree", n, diff, control=shared)
    return CaseResult(case.id, "agree", n, f"{n} operations compared", control=shared)


def run(case_ids=None, swap: bool = False, controls: bool = True, log=None, thp: bool = False):
    """-> (release, design name, note, [CaseResult], changes made and restored)"""
    release = platform.release()
    dname, note = design_for_release(release)
    design = designs.load(dname)
    changed = []
    if os.geteuid() != 0:
        cs = [catalog.get(c) for c in case_ids] if case_ids else catalog.all_cases()
        return release, dname, note, [CaseResult(c.id, "skip", reason="needs root (PFNs, kpageflags)") for c in cs], []
    from .zram import temporary_swap
    with temporary_swap(swap, changed) as have_swap:
        cases = [catalog.get(c) for c in case_ids] if case_ids else catalog.all_cases()
        results = []
        sized = []
        for c in cases:
            if _large(c) and kernel_thp_nr() and HPAGE_PMD_NR != kernel_thp_nr():
                if thp:
                    sized.append(c)
                else:
                    results.append(CaseResult(c.id, "skip", reason="THP variant: run with --thp (the model at the "
                                                                      "kernel's THP size is slow: about 1 min a case)"))
                continue
            results.append(run_case(c, design, have_swap=have_swap or swap_active()))
            if log:
                log(results[-1])
        if sized:
            # the THP variants again, with the model's THP at the kernel's size (a separate interpreter)
            env = dict(os.environ, COWLAB_HPAGE_PMD_NR=str(kernel_thp_nr()))
            args = [sys.executable, "-m", "cowlab.conformance.sized"] + [c.id for c in sized]
            if have_swap or swap_active():
                args.append("--swap")
            from .zram import temporary_sysctl
            # a vmsplice() of a whole THP needs a pipe that holds it (F_SETPIPE_SZ up to pipe-max-size);
            # the hugetlb variants need free huge pages (cow.c wants two per test)
            with temporary_sysctl("/proc/sys/fs/pipe-max-size", kernel_thp_nr() * os.sysconf("SC_PAGE_SIZE"),
                                  changed), \
                    temporary_sysctl("/proc/sys/vm/nr_hugepages", 8, changed):
                p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3000)
            got = {}
            for line in p.stdout.splitlines():
                d = json.loads(line)
                got[d["case"]] = CaseResult(d["case"], d["result"], d["steps_compared"], d["reason"])
            for c in sized:
                r = got.get(c.id) or CaseResult(c.id, "skip", reason=f"the sized run failed: {p.stderr[-300:]}")
                results.append(r)
                if log:
                    log(r)
        if controls:
            for cid in NEGATIVE_CONTROLS:
                r = run_case(catalog.get(cid), design, shared=True, have_swap=have_swap)
                r.case = f"{cid} (MAP_SHARED control)"
                results.append(r)
                if log:
                    log(r)
    return release, dname, note, results, changed
