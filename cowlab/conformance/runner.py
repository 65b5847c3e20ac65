"""The comparison and the run of ``cowlab conformance`` (see the package docstring)."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

from .. import catalog, designs
from ..catalog import CatalogError
from ..kernel.effects import Error, Exit, Load, Store
from ..designs import design_for_release
from ..kernel.types import PG_huge_zero, PG_ksm, PTE_PRESENT, PTE_SWAP, ZERO_PFN
from ..model import CowModel
from ..schedule import in_operation, sequential
from .probe import die_with_parent

SUPPORTED = {"mmap", "write", "read", "fork", "exit", "munmap", "mprotect", "madvise", "clear_refs", "vmsplice",
             "mremap", "pipe_read", "signal", "wait", "pageout", "io_uring_register", "io_uring_read_fixed",
             "io_uring_write_fixed", "io_uring_unregister", "ksm_merge", "odirect_read", "odirect_write"}
#: why the probe cannot drive an operation from user space
NOT_DRIVEN = {
    "pin_longterm": "gup_test",
    "pin_read": "gup_test",
    "unpin": "gup_test",
    "get_user_pages": "gup_test",
    "put_user_pages": "gup_test",
    "lru_add_drain": "no system call drains one CPU's lru_add batch on demand",
    "migrate": "migrate_pages() of one page needs a second NUMA node (move_pages(2))",
    "speculative_get": "a speculative reference (page-cache or pfn walker) cannot be taken on demand",
    "speculative_put": "a speculative reference (page-cache or pfn walker) cannot be taken on demand",
    "split_pmd": "the real kernel splits a PMD only inside mprotect()/munmap(), not on its own",
    "free_swapcache": "try_to_free_swap() cannot be called on its own from user space",
    "khugepaged": "khugepaged scans on its own schedule (scan_sleep_millisecs); MADV_COLLAPSE is the synchronous way",
}
NEGATIVE_CONTROLS = ("basic-cow-fork", "vmsplice-unmap-child")


class Interrupted(Exception):
    """Ctrl-C: the run stopped; ``args`` = (release, design, note, the
    results so far, the machine changes made and restored)."""


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
    """The byte value a model content token is written as (1..251; the same
    in every process, unlike hash())."""
    if t == 0:
        return 0
    return (t if isinstance(t, int) else zlib.crc32(str(t).encode())) % 251 + 1


class Outcome(NamedTuple):
    """How one operation ended, for the process that ran it: ``"ok"``; the
    call failed with ``errno`` (``"error"``: GUP's -EFAULT, MADV_PAGEOUT's
    -EINVAL ...); the process was ``"killed"`` on it (a fault the kernel
    answers with SIGSEGV: the arch fault handler's force_sig_fault() and
    do_exit()); or it was ``"not_run"`` (its process had died before).
    ``pages``: the pages a vmsplice() left in its pipe (a short count when
    GUP took only part of the range).  ``errno`` of a kill: the signal's name."""
    kind: str = "ok"
    errno: int | str | None = None
    pages: int | None = None

    def text(self) -> str:
        if self.kind == "error":
            return f"failed with {_errno_name(self.errno)}"
        if self.kind == "killed":
            return f"killed the process by {self.errno or 'SIGSEGV'}"
        if self.kind == "not_run":
            return "was not run (the process had died)"
        return "succeeded" + (f" ({self.pages} pages in the pipe)" if self.pages is not None else "")


def _errno_name(e) -> str:
    import errno as _errno
    if e is None:
        return "an error"
    return f"{_errno.errorcode.get(e, 'errno')} ({e})"


def _outcome(op, proc_alive_before: bool, effects, s, pi, tr) -> Outcome:
    """The Outcome of ``op`` from the model's step: the skip transition of a
    process that has exited (label "exited"), an Exit effect of an operation
    that is not ``exit`` (the SIGSEGV path runs do_exit()), or an Error."""
    if tr.label == "exited" or not proc_alive_before:
        return Outcome("not_run")
    if op.name != "exit" and any(type(e) is Exit for e in effects):
        return Outcome("killed")
    errs = [e for e in effects if type(e) is Error]
    if errs:
        return Outcome("error", errs[0].errno or None)
    if op.name == "vmsplice":
        from ..kernel.fs.splice import pipe_owner
        owner = pipe_owner(dict(op.args))
        return Outcome(pages=sum(1 for r in s.refs if r.kind == "pipe" and r.owner == owner))
    return Outcome()


def model_steps(case, design):
    """Run the model on the sequential schedule; per completed operation
    (sync operations dropped): (process, op, args, state after, tokens,
    thread, Outcome).  Conformance compares states, not verdicts, so the
    oracle is off (it never changes a state).  With the kernel's THP size
    (512 subpages) the model's own invariant checks are off too, for speed:
    they run on the same paths at the model's size in the test suite."""
    m = CowModel(case, design, check_invariants=case.hpage_pmd_nr <= 64, oracle=False)
    out = []
    effects = []
    run = sequential(m, 20000)
    names = list(case.processes)
    alive_at_start = None
    for tr in run:
        if tr.bugs:
            raise RuntimeError(f"model bug: {tr.bugs[0]}")
        if alive_at_start is None:
            alive_at_start = run.before.mms[m.tmm[tr.tid]].alive
        effects += list(tr.effects)
        pc = run.before.threads[tr.tid].pc
        s = tr.state
        if not in_operation(s, tr.tid):
            op = m.ops[tr.tid][pc]
            if op.name not in ("signal", "wait"):
                stores = [e.data for e in effects if type(e) is Store]
                loads = [e.data for e in effects if type(e) is Load]
                proc = case.threads[tr.tid].process
                alive = True if op.name == "fork" else alive_at_start
                res = _outcome(op, alive, effects, s, names.index(proc), tr)
                out.append((proc, op, s, stores, loads, case.threads[tr.tid].name, res))
            effects = []
            alive_at_start = None
    if run.end == "stuck":
        raise RuntimeError("the model deadlocked")
    return m, out


def _model_view(m, s, proc_index, pages):
    """Per page of one process: (kind, identity key, exclusive, mapcount)."""
    mm = s.mms[proc_index]
    nr = m.case.hpage_pmd_nr
    view = []
    for a in range(pages):
        pmd = mm.pmds[a // nr]
        if pmd is not None:
            f = s.folios[pmd.pfn]
            if f.flags & PG_huge_zero:      # the huge zero page: present, not compared further (as the zero page)
                view.append(("present", "zero", None, None, True, None))
                continue
            view.append(("present", (pmd.pfn, a % nr), f.anon_exclusive[a % nr],
                         f.mapcount[a % nr] + f.entire_mapcount, False, f.anon_exclusive[0]))
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


#: operations whose result is data the model loaded, and how the report names what the kernel gave
DATA_READ_BY = {"read": "the kernel read {}", "io_uring_write_fixed": "the file got {} from the fixed buffer",
                "odirect_write": "the file got {} by O_DIRECT", "pipe_read": "the pipe held {}"}


def real_outcome(line: dict) -> Outcome | None:
    """The Outcome of a failed step of the real program (worker.py's line:
    ``killed`` names the signal, ``not_run``, ``errno``), or None when the
    program itself failed (no answer of the kernel to compare)."""
    if line.get("killed"):
        return Outcome("killed", line["killed"])
    if line.get("not_run"):
        return Outcome("not_run")
    if line.get("errno"):
        return Outcome("error", line["errno"])
    return None


def same_outcome(real: Outcome, model: Outcome) -> bool:
    """The kernel's and the model's outcomes agree: the same kind; the same
    errno (where the model names one); SIGSEGV for a kill (the only signal
    the model sends); the same pages in the pipe after a vmsplice."""
    if real.kind != model.kind:
        return False
    if real.kind == "error":
        return model.errno is None or real.errno == model.errno
    if real.kind == "killed":
        return real.errno == "SIGSEGV"
    return real.pages is None or model.pages is None or real.pages == model.pages


def large_folio_problem(nr: int, mapped: list) -> str:
    """'' when the kernel's pages at the addresses where the model maps the
    subpages of one large folio of ``nr`` pages are one folio of ``nr``
    pages; else what they are.  ``mapped``: [(where, subpage index, the
    snapshot's entry)].  The kernel's folio is naturally aligned in physical
    memory (the buddy allocator's order-``n`` block), so subpage ``i`` is at
    head pfn + ``i``; its head page has kpageflags' compound head bit, the
    others the tail bit, and the page after its last is no tail page."""
    for w, i, r in mapped:
        if not r.get("present"):
            return f"{w} (subpage {i}) is not populated"
    heads = {r["pfn"] - i for _, i, r in mapped}
    if len(heads) > 1:
        return "its subpages are not at one folio's pfns (" + ", ".join(
            f"{w} subpage {i}: pfn {r['pfn']}" for w, i, r in mapped[:4]) + ")"
    head = heads.pop()
    if head % nr:
        return f"its pfns start at {head}, not at a multiple of {nr}"
    for w, i, r in mapped:
        want = "head" if i == 0 else "tail"
        if r.get("compound") != want:
            got = r.get("compound") or "no page of a large folio"
            return f"{w} (subpage {i}) is {got}, not the {want}"
        if i == nr - 1 and not r.get("last"):
            return f"{w} (subpage {i}) is not its folio's last page: the kernel's folio is larger than {nr} pages"
    return ""


def compare(m, msteps, real_lines, check_exclusive: bool, check_anon: bool = True) -> tuple[int, str]:
    """-> (steps compared, '' or the first difference).  A step is compared
    by its outcome first (``same_outcome``: a call refused with the same
    errno, a process killed by SIGSEGV at the same step, an operation of a
    dead process not run), then by what every live process holds.  In a
    case with ``thp_sizes`` every large folio the model maps with ptes
    (mTHP, alloc_anon_folio()) must be one folio of that size in the kernel
    (``large_folio_problem``): where the kernel never gave it one, the case
    is a SKIP, as cow.c's "Did not get a THP populated"; where it had one and
    no longer has, a difference."""
    pages, nr = m.case.pages, m.case.hpage_pmd_nr
    names = list(m.case.processes)
    folios_checked = bool(case_thp_sizes(m.case))
    seen_large = set()          # model folios the kernel was seen to have as one folio
    for i, ((proc, op, s, stores, loads, thread, mres), real) in enumerate(zip(msteps, real_lines)):
        where = f"step {i + 1} ({proc}: {op})"
        if not real.get("ok"):
            if real.get("skip"):
                return i, f"SKIP: {real['skip']}"
            if op.name == "mmap" and dict(op.args).get("hugetlb"):
                return i, f"SKIP: no free huge page for the mmap ({real.get('error')})"
            rres = real_outcome(real)
            if rres is None:
                return i, f"{where}: the real program failed: {real.get('error')}"
        else:
            rres = Outcome(pages=real.get("value") if op.name == "vmsplice" else None)
        if not same_outcome(rres, mres):
            return i, f"{where}: outcome: the kernel's call {rres.text()}, the model's {mres.text()}"
        # data
        if real.get("ok") and op.name in DATA_READ_BY:
            want = [_token_byte(t) for t in loads]
            if real["value"] != want:
                return i, f"{where}: data: {DATA_READ_BY[op.name].format(real['value'])}, the model {want}"
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
                lo = h * nr
                pf = [rv[a].get("pfn") for a in range(lo, lo + nr)]
                if None in pf or pf[0] % nr or any(pf[j] != pf[0] + j for j in range(len(pf))):
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
                if "ksm" in r and isinstance(key, tuple) and bool(s.folios[key[0]].flags & PG_ksm) != r["ksm"]:
                    return i, (f"{where}: {name} page {a}: KSM page (kpageflags bit 21) kernel {r['ksm']}, "
                               f"model {not r['ksm']}")
                if mapc is not None and mapc != r["count"]:
                    return i, f"{where}: {name} page {a}: mapcount kernel {r['count']}, model {mapc}"
        if folios_checked:
            large = {}
            for pi, name in enumerate(names):
                if not s.mms[pi].alive:
                    continue
                rv = real["snapshot"][name]
                for a in range(pages):
                    p = s.mms[pi].ptes[a] if s.mms[pi].pmds[a // nr] is None else None
                    if p is None or p.kind != PTE_PRESENT or p.pfn == ZERO_PFN or not rv[a]["present"]:
                        continue
                    f = s.folios[p.pfn]
                    if f.nr > 1 and not f.flags & PG_huge_zero:
                        large.setdefault(p.pfn, (f.nr, []))[1].append((f"{name} page {a}", p.idx, rv[a]))
            for fpfn, (fnr, mapped) in sorted(large.items()):
                why = large_folio_problem(fnr, mapped)
                if not why:
                    seen_large.add(fpfn)
                elif fpfn in seen_large:
                    return i, f"{where}: the model's {fnr}-page folio is no longer one folio in the kernel: {why}"
                else:
                    return i, (f"SKIP: the kernel did not populate a {fnr}-page folio where the model has one "
                               f"({where}: {why})")
        if _partition(mkeys) != _partition(rkeys):
            return i, (f"{where}: which pages share a physical page differs: "
                       f"kernel {sorted(map(sorted, _partition(rkeys)))}, "
                       f"model {sorted(map(sorted, _partition(mkeys)))}")
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
            "partial-mremap-thp", "partial-shared-thp", "anon-thp", "mthp")


@functools.lru_cache(maxsize=None)
def kernel_thp_nr() -> int:
    """Subpages of the kernel's PMD THP (0 when THP is unavailable); fixed
    while the kernel runs, so read once."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") as f:
            return int(f.read()) // os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _large(case) -> bool:
    return any(t in case.tags for t in THP_TAGS + ("hugetlb",))


def case_thp_sizes(case) -> tuple | None:
    """The case's ``thp_sizes`` setting (anonymous THP sizes in pages enabled in VM_HUGEPAGE vmas), or None
    when it has none (the PMD size only: the machine's knobs as they are)."""
    sizes = dict(getattr(case, "settings", ()) or ()).get("thp_sizes")
    return tuple(sizes) if sizes else None


def case_align(case) -> int:
    """Pages the real program aligns the case's range to: a THP or hugetlb variant to the PMD size, an mTHP
    case (``thp_sizes`` without the PMD size) to its largest size, as cow.c's do_run_with_thp() maps twice the
    THP size and aligns to it, so the fault can allocate a folio of that order (alloc_anon_folio() takes an
    order only where the naturally aligned range fits in the vma)."""
    if not _large(case):
        return 1
    sizes = case_thp_sizes(case)
    if sizes and case.hpage_pmd_nr not in sizes:
        return max(sizes)
    return case.hpage_pmd_nr


def free_hugepages() -> int:
    try:
        with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def gup_test_reason() -> str:
    """Why gup_test's PIN_LONGTERM_TEST_* / GUP_*_TEST ioctls are not used."""
    config = ""
    try:
        import gzip
        with gzip.open("/proc/config.gz", "rt") as f:
            config = f.read()
    except OSError:
        pass
    if "# CONFIG_GUP_TEST is not set" in config:
        return "needs gup_test: this kernel is built without CONFIG_GUP_TEST (/proc/config.gz)"
    return "needs gup_test (/sys/kernel/debug/gup_test): the probe does not drive its ioctls"


def ksm_reason() -> str:
    """'' when the probe may drive ksmd for the run."""
    if not os.path.isdir("/sys/kernel/mm/ksm"):
        return "KSM: no /sys/kernel/mm/ksm (CONFIG_KSM)"
    try:
        with open("/sys/kernel/mm/ksm/run") as f:
            run = f.read().strip()
    except OSError as e:
        return f"KSM: {e}"
    if run != "0":
        return f"KSM: ksmd is already running on this machine (run={run}); the probe will not take it over"
    return ""


def host_facts() -> dict:
    """What the host permits, read once before any real program runs (a
    prepare() running beside a KSM case would see ksmd switched on)."""
    return {"ksm": ksm_reason(), "cpus": len(os.sched_getaffinity(0)), "gup_test": gup_test_reason()}


def unsupported(case, have_swap: bool, host: dict | None = None) -> str:
    host = host or host_facts()
    if "race" in case.tags:
        return "a race: the kernel's interleaving cannot be chosen"
    if dict(getattr(case, "settings", ()) or ()).get("swap_device", "zram") != "zram":
        return ("a disk swap device (every swap-in through the swap cache): the machine swaps to zram "
                "(SWP_SYNCHRONOUS_IO), where a swap-in can skip the swap cache")
    if "hugetlb" in case.tags and free_hugepages() < 4:
        return "hugetlb variant: fewer than 4 free 2 MiB huge pages (run with --thp, which raises nr_hugepages)"
    if _large(case) and case.hpage_pmd_nr != kernel_thp_nr():
        return f"THP variant: the case's THP has {case.hpage_pmd_nr} subpages, the kernel's {kernel_thp_nr()}"
    procs = list(case.processes)
    for t in case.threads:
        if t.name != t.process and (t.process != procs[0] or host["cpus"] < 2):
            return ("a second thread: the probe runs one only in the first process, on another CPU "
                    "(this needs two CPUs)")
        for op in t.ops:
            if op.name not in SUPPORTED:
                why = NOT_DRIVEN.get(op.name, "not driven by the probe")
                return f"operation {op.name}: {host['gup_test'] if why == 'gup_test' else why}"
            if op.name == "ksm_merge" and host["ksm"]:
                return host["ksm"]
            if op.name == "fork" and t.process != procs[0]:
                return "a fork by a forked process: the probe forks from the first process only"
            if op.name == "pageout" and not have_swap:
                return "needs swap (run with --swap to set up a temporary zram device)"
            if op.name == "exit" and t.process == procs[0]:
                return "the first process exits"
    return ""


@dataclass
class Prepared:
    """A case whose model run is done and whose real program is planned."""
    case: object
    shared: bool
    m: object
    msteps: list
    plan: dict


def prepare(case, design, shared: bool = False, have_swap: bool = False, host: dict | None = None):
    """-> a Prepared case, or the CaseResult of a skip."""
    why = unsupported(case, have_swap, host)
    if why:
        return CaseResult(case.id, "skip", reason=why, control=shared)
    try:
        m, msteps = model_steps(case, design)
    except Exception as e:      # the model cannot predict the case: that is a failure, not a skip
        return CaseResult(case.id, "disagree", reason=f"the model failed: {type(e).__name__}: {e}", control=shared)
    plan = {"pages": case.pages, "shared": shared, "processes": list(case.processes),
            "align": case_align(case), "steps": []}
    if case_thp_sizes(case):
        plan["thp_sizes"] = list(case_thp_sizes(case))
    for proc, op, s, stores, loads, thread, _ in msteps:
        a = {k: v for k, v in op.args if k not in ("process", "child_mm", "mm_id")}
        if op.name in ("write", "io_uring_read_fixed", "odirect_read"):
            a["value"] = [_token_byte(t) for t in stores]
        step = {"process": proc, "op": op.name, "args": a}
        if thread != proc:
            step["thread"] = thread
        plan["steps"].append(step)
    return Prepared(case, shared, m, msteps, plan)


class Server:
    """The real programs' server (``worker --serve``): one interpreter for the
    run, each case in a fork()ed process of it, one case at a time."""

    TIMEOUT = 600

    def __init__(self):
        self.p = None

    def _start(self):
        import tempfile
        self.err = tempfile.TemporaryFile("w+")       # (a pipe nobody reads could fill up)
        self.p = subprocess.Popen([sys.executable, "-m", "cowlab.conformance.worker", "--serve"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  bufsize=1, env=dict(os.environ, COWLAB_PARENT_PID=str(os.getpid())))
        # a thread reads the lines: select() cannot see what a text stream has already buffered
        import queue
        import threading
        self.lines = queue.Queue()

        def pump(stream, q):
            for line in stream:
                q.put(line)
            q.put(None)
        threading.Thread(target=pump, args=(self.p.stdout, self.lines), daemon=True).start()

    def submit(self, plan: dict) -> "Server":
        if self.p is None or self.p.poll() is not None:
            self._start()
        self.p.stdin.write(json.dumps(plan) + "\n")
        self.p.stdin.flush()
        return self

    def collect(self) -> tuple[list, str]:
        """-> (the step lines, '' or why the program failed)."""
        import queue
        import time
        lines = []
        deadline = time.monotonic() + self.TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close(kill=True)
                return lines, f"the real program timed out after {self.TIMEOUT} s"
            if line is None:
                self.close(kill=True)
                self.err.seek(0)
                return lines, f"the real program failed: {self.err.read().strip()[-300:]}"
            try:
                d = json.loads(line)
            except ValueError:
                self.close(kill=True)
                return lines, f"the real program wrote a broken line: {line[:120]!r}"
            if "done" in d:
                return lines, ""
            lines.append(d)

    def close(self, kill: bool = False) -> None:
        if self.p is None:
            return
        if kill:
            self.p.kill()
        else:
            self.p.stdin.close()
        self.p.wait()
        self.p = None


def _launch(prep: Prepared, server: Server) -> Server:
    """The plan goes with its CPUs: the case's processes on one, each further
    thread of the first process on the next one (a script's ``cpu()``).  A case
    with mTHP sizes that pages out starts on a fresh swap allocator
    (``zram.restart_swap``): the kernel hands out swap offsets in order from
    where the last case left them, and from 6.12 an mTHP is swapped in only
    where the offsets agree with the addresses (the model starts at offset 1)."""
    if case_thp_sizes(prep.case) and any(op.name == "pageout" for t in prep.case.threads for op in t.ops):
        from .zram import restart_swap
        why = restart_swap()
        if why:        # (the case still runs; its swap offsets go on from the last case's, so it may disagree)
            print(f"machine: {why} before {prep.case.id}: its swap offsets continue from the last case's",
                  file=sys.stderr)
    allowed = sorted(os.sched_getaffinity(0))
    threads = sorted({st["thread"] for st in prep.plan["steps"] if "thread" in st})
    return server.submit(dict(prep.plan, cpu=allowed[0],
                              thread_cpus={t: allowed[(i + 1) % len(allowed)] for i, t in enumerate(threads)}))


def _judge(prep: Prepared, server: Server, design) -> CaseResult:
    lines, failure = server.collect()
    if failure and not lines:
        return CaseResult(prep.case.id, "skip", reason=failure, control=prep.shared)
    # a control compares what COW decides (data, sharing, counts), not the page type
    n, diff = compare(prep.m, prep.msteps, lines, design.anon_exclusive and not prep.shared,
                      check_anon=not prep.shared)
    cid = prep.case.id
    if diff.startswith("SKIP: "):
        return CaseResult(cid, "skip", n, diff[len("SKIP: "):], control=prep.shared)
    if diff:
        return CaseResult(cid, "disagree", n, diff, control=prep.shared)
    return CaseResult(cid, "agree", n, f"{n} operations compared", control=prep.shared)


ATTEMPTS = 3


def cpus() -> tuple[int, set]:
    """(the CPU real programs run on, the CPUs left for model runs).  A real
    program stays on one CPU, so per-CPU state (the lru_add batch) is the
    same one for all its steps."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[0], set(allowed[1:])


def default_jobs() -> int:
    """Model runs in parallel: every CPU (measured here with 2 CPUs: the
    --thp run takes 16 s with 2 model processes, 23 s with one on the CPU
    the real programs do not use); ``COWLAB_CONFORMANCE_JOBS`` overrides."""
    return int(os.environ.get("COWLAB_CONFORMANCE_JOBS") or len(os.sched_getaffinity(0)))


def _pin_model_worker(cpu_set) -> None:
    import signal
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the run's to handle
    if cpu_set:
        os.sched_setaffinity(0, cpu_set)


def _preparations(cases, design, shared, have_swap, jobs, host):
    """Yield prepare() of every case in order.  With ``jobs`` >= 1 the model
    runs go to a process pool (kept off the real programs' CPU when there
    are enough others), while the caller runs real programs and compares;
    with 0 each is computed when the caller asks for the next one, i.e.
    while the previous real program runs."""
    if jobs < 1 or len(cases) < 3:
        for c in cases:
            yield prepare(c, design, shared, have_swap, host)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                             initializer=_pin_model_worker,
                             initargs=(cpus()[1] if jobs <= len(cpus()[1]) else set(),)) as pool:
        futures = [pool.submit(prepare, c, design, shared, have_swap, host) for c in cases]
        try:
            for f in futures:
                yield f.result()
        finally:
            for f in futures:
                f.cancel()


def run_cases(cases, design, have_swap: bool = False, shared: bool = False, log=None,
              attempts: int = ATTEMPTS, jobs: int | None = None, into: list | None = None,
              host: dict | None = None, thp_knobs=None) -> list:
    """Run cases in order; the models are computed ahead (see
    ``_preparations``) while real programs run one at a time (they share the
    machine's swap, huge pages and ksmd).  A disagreeing case runs again,
    up to ``attempts`` times in all, since the kernel's background work
    (khugepaged, deferred splits, ksmd) can change one run: only an agreement
    replaces the disagreement, and it keeps the disagreement in its reason.
    A control (shared) is run once: it must disagree.  Results go to
    ``into`` as they come (so an interrupted run keeps them); a case whose
    run fails in an unexpected way is reported as a skip with the error.
    Before each real program the per-size THP knobs are set for the case's
    ``thp_sizes`` (``thp_knobs``, a zram.ThpSizes; the machine's own for a
    case without); without ``thp_knobs`` and with such cases, this call
    sets them and puts them back itself (the caller holds the machine lock)."""
    cases = list(cases)
    if thp_knobs is None and any(case_thp_sizes(c) for c in cases):
        from .zram import temporary_thp_sizes
        with temporary_thp_sizes([]) as knobs:
            return run_cases(cases, design, have_swap, shared, log, attempts, jobs, into, host, knobs)
    if jobs is None:
        jobs = default_jobs()
    host = host or host_facts()
    results = [] if into is None else into
    pending = None
    server = Server()

    def report(r):
        results.append(r)
        if log:
            log(r)

    def attempt(prep, handle):
        try:
            return _judge(prep, handle, design)
        except Exception as e:        # (a broken pipe, a server that died): this case only
            server.close(kill=True)
            return CaseResult(prep.case.id, "skip", reason=f"the real program failed: {type(e).__name__}: {e}",
                              control=prep.shared)

    def finish(prep, handle):
        first = r = attempt(prep, handle)
        tries = 1
        while r.result != "agree" and first.result == "disagree" and not prep.shared and tries < attempts:
            tries += 1
            r = attempt(prep, _launch(prep, server))
        if tries > 1 and r.result == "agree":
            r.reason += f" (on attempt {tries} of {attempts}; attempt 1 disagreed: {first.reason})"
        elif tries > 1:
            r = first
            r.reason += f" (no agreement in {tries} attempts)"
        report(r)

    try:
        for prep in _then_none(_preparations(list(cases), design, shared, have_swap, jobs, host)):
            if pending is not None:
                finish(*pending)
                pending = None
            if isinstance(prep, CaseResult):
                report(prep)
            elif prep is not None:
                why = thp_knobs.apply(case_thp_sizes(prep.case)) if thp_knobs is not None else ""
                if why:
                    report(CaseResult(prep.case.id, "skip", reason=why, control=prep.shared))
                else:
                    pending = (prep, _launch(prep, server))
    finally:
        server.close(kill=pending is not None)
    return results


def _then_none(it):
    yield from it
    yield None


def run_case(case, design, shared: bool = False, have_swap: bool = False) -> CaseResult:
    return run_cases([case], design, have_swap, shared)[0]


def host_design(design_spec: str | None = None):
    """-> (release, design name, note, design): the design for this kernel
    (``design_for_release``), or ``design_spec`` (a name or file) in its
    place, the note saying which and what the host's own would be."""
    release = platform.release()
    dname, note = design_for_release(release)
    if not design_spec:
        return release, dname, note, designs.load(dname)
    design = designs.load(design_spec)
    return (release, design.name, f"kernel {release}: design {design.name} as asked (this kernel's own would be "
            f"{dname})", design)


def run(case_ids=None, swap: bool = False, controls: bool = True, log=None, thp: bool = False,
        design_spec: str | None = None):
    """-> (release, design name, note, [CaseResult], changes made and restored).
    ``design_spec`` (a design name or file) replaces the host's design: where
    an older design disagrees is where the kernel changed."""
    release, dname, note, design = host_design(design_spec)
    changed = []
    if os.geteuid() != 0:
        cs = [catalog.get(c) for c in case_ids] if case_ids else catalog.all_cases()
        return release, dname, note, [CaseResult(c.id, "skip", reason="needs root (PFNs, kpageflags)") for c in cs], []
    import contextlib
    from .zram import machine_lock, temporary_ksm, temporary_swap, temporary_thp_sizes
    cases = [catalog.get(c) for c in case_ids] if case_ids else catalog.all_cases()
    uses_ksm = any(op.name == "ksm_merge" for c in cases for t in c.threads for op in t.ops)
    results = []
    try:    # (the host is read once the lock is held: another run's ksmd settings are not the machine's)
        with machine_lock(), temporary_swap(swap, changed) as have_swap, \
                (temporary_ksm(changed) if not (host := host_facts())["ksm"] and uses_ksm
                 else contextlib.nullcontext()), \
                temporary_thp_sizes(changed) as thp_knobs:
            sized = []
            base = []
            for c in cases:
                if _large(c) and kernel_thp_nr() and c.hpage_pmd_nr != kernel_thp_nr():
                    why = "THP variant: run with --thp (the model runs at the kernel's THP size)"
                    if thp:
                        try:    # the same case built at the kernel's size, in this process
                            sized.append(catalog.sized(c, kernel_thp_nr()))
                            continue
                        except CatalogError as e:
                            why = f"THP variant: {e}"
                    results.append(CaseResult(c.id, "skip", reason=why))
                    if log:
                        log(results[-1])
                    continue
                base.append(c)
            run_cases(base, design, have_swap or swap_active(), log=log, into=results, host=host,
                      thp_knobs=thp_knobs)
            if sized:
                from .zram import temporary_sysctl
                # a vmsplice() of a whole THP needs a pipe that holds it (F_SETPIPE_SZ up to pipe-max-size);
                # the hugetlb variants need free huge pages (cow.c wants two per test)
                with temporary_sysctl("/proc/sys/fs/pipe-max-size", kernel_thp_nr() * os.sysconf("SC_PAGE_SIZE"),
                                      changed), \
                        temporary_sysctl("/proc/sys/vm/nr_hugepages", 8, changed):
                    run_cases(sized, design, have_swap or swap_active(), log=log, into=results, host=host,
                              thp_knobs=thp_knobs)
            if controls:
                def named(r):
                    r.case = f"{r.case} (MAP_SHARED control)"
                    if log:
                        log(r)
                run_cases([catalog.get(cid) for cid in NEGATIVE_CONTROLS], design, have_swap, shared=True, into=results,
                          host=host, log=named, thp_knobs=thp_knobs)
    except KeyboardInterrupt:
        # the context managers above have put the machine back by now
        raise Interrupted(release, dname, note, results, changed) from None
    return release, dname, note, results, changed
