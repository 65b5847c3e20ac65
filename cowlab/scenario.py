"""Scenarios: processes, their threads and the operations they run.

Python API (a sequential script; ``build()`` turns it into per-thread
operation lists that wait for each other in script order, as the cow.c tests
do with their sync pipes)::

    s = Script("cve-2020-29374", "vmsplice() + unmap in child", pages=1,
               source="cow.c; CVE-2020-29374")
    parent, child = s.process("parent"), s.process("child")
    parent.mmap(0, pages=1); parent.write(0)
    parent.fork(child)
    child.vmsplice(0, pipe="p"); child.munmap(0)
    parent.write(0)
    child.pipe_read("p")
    case = s.build()

Threads that run concurrently are added with ``s.thread(process, [ops])``
(ops as ``("write", {"addr": 0})``); they get no ordering.  The TOML format
is in ``cowlab.toml_format``.

The geometry travels with the case: ``Script(..., hpage_pmd_nr=8)`` gives
its THPs and hugetlb pages 8 subpages (default ``kernel.types.HPAGE_PMD_NR``,
2), and every user (the model, the oracle, traces, conformance) reads
``Case.hpage_pmd_nr``; cases of several sizes run side by side in one process.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .kernel import registry  # noqa: F401  (every operation registers itself)
from .kernel.paths import OPS
from .kernel.types import HPAGE_PMD_NR


class ScenarioError(Exception):
    pass


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple            # sorted (key, value) pairs, hashable
    line: int | None = None

    def arg(self) -> dict:
        return dict(self.args)

    def __str__(self):
        a = " ".join(f"{k}={v}" for k, v in self.args if k not in ("process", "child_mm", "mm_id"))
        return f"{self.name} {a}".strip()


@dataclass(frozen=True)
class ThreadSpec:
    name: str
    process: str
    ops: tuple


@dataclass(frozen=True)
class Case:
    """A compiled scenario: what the model runs."""
    id: str
    title: str
    source: str
    pages: int
    processes: tuple        # process names; index = mm id; the first exists at start
    threads: tuple          # ThreadSpec
    tags: tuple = ()
    #: model settings, (name, value) pairs (``Script(settings=...)``): ``swap_device`` is ``"zram"`` (the
    #: default: SWP_SYNCHRONOUS_IO, a swap-in of an entry one pte references skips the swap cache) or
    #: ``"disk"`` (every swap-in goes through the swap cache); ``thp_sizes`` is a tuple of the anonymous THP
    #: sizes in pages (powers of two, 4 .. hpage_pmd_nr) enabled in VM_HUGEPAGE vmas, as
    #: ``/sys/kernel/mm/transparent_hugepage/hugepages-<kB>kB/enabled = madvise`` (default ``(hpage_pmd_nr,)``:
    #: PMD THP only; the sizes below it are mTHP, allocated by designs with ``anon_mthp``)
    settings: tuple = ()

    def setting(self, name: str, default=None):
        return dict(self.settings).get(name, default)
    #: the case's geometry: subpages of a PMD-mapped THP and of a hugetlb page
    #: (a power of two >= 2; the kernel's is 512 on x86-64)
    hpage_pmd_nr: int = HPAGE_PMD_NR
    #: a thread waiting for ever (stuck: nobody signals what it waits for) is the expected end; otherwise a
    #: run or search that ends stuck is "inconclusive" (TOML: ``expect_stuck = true``)
    expect_stuck: bool = False

    def thread_mm(self, tid: int) -> int:
        return self.processes.index(self.threads[tid].process)


class _Proc:
    def __init__(self, script, name, thread=None):
        self._s = script
        self.name = name
        self.thread = thread or name

    def __getattr__(self, opname):
        if opname not in OPS:
            raise AttributeError(f"no operation {opname!r}")

        def call(*pos, **kw):
            if opname == "fork":
                child = pos[0] if pos else kw.pop("child")
                kw["child"] = child.name if isinstance(child, _Proc) else child
            elif pos:
                names = OPS[opname][2]
                for n, v in zip(names, pos):
                    kw[n] = v
            self._s._add(self.thread, opname, kw)
            return self
        return call


class Script:
    def __init__(self, id: str, title: str = "", pages: int = 1, source: str = "", tags=(),
                 hpage_pmd_nr: int = HPAGE_PMD_NR, settings: dict | None = None):
        self.id, self.title, self.pages, self.source, self.tags = id, title, pages, source, tuple(tags)
        settings = dict(settings or {})
        if "thp_sizes" in settings and isinstance(settings["thp_sizes"], list):
            settings["thp_sizes"] = tuple(settings["thp_sizes"])
        self.settings = tuple(sorted(settings.items()))
        self.hpage_pmd_nr = hpage_pmd_nr
        self._procs: list[str] = []
        self._threads: dict[str, str] = {}
        self._script: list[tuple] = []
        self._free: list[tuple] = []

    def process(self, name: str) -> _Proc:
        if name not in self._procs:
            self._procs.append(name)
        self._threads.setdefault(name, name)
        return _Proc(self, name)

    def cpu(self, process: str, thread: str) -> _Proc:
        """Another thread of ``process`` (running on its own CPU: its own
        LRU batch, its own IRQ state), still in script order."""
        self.process(process)
        self._threads[thread] = process
        return _Proc(self, process, thread)

    def _add(self, thread, opname, args, line=None):
        self._script.append((thread, opname, dict(args), line))

    def parallel(self, threads: dict):
        """Run these threads concurrently at this point of the script:
        ``{thread_name: [(op, {args}), ...]}`` (a thread name made with
        ``process()`` or ``cpu()``).  Each starts after the script's previous
        operation; the script's next operation waits for all of them."""
        for t in threads:
            if t not in self._threads:
                self.process(t)
        self._script.append(("__parallel__", None, {t: [(o, dict(a)) for o, a in ops]
                                                    for t, ops in threads.items()}, None))
        return self

    def thread(self, process: str, ops, name: str | None = None):
        """A concurrent thread of ``process`` running ``ops`` with no ordering
        against the script (issue: exploration)."""
        if process not in self._procs:
            self._procs.append(process)
        self._free.append((name or f"{process}.t{len(self._free) + 1}", process,
                           [(o, dict(a)) for o, a in ops]))
        return self

    def build(self) -> Case:
        c = compile_case(self.id, self.title, self.source, self.pages, self._procs, self._threads,
                         self._script, self._free, self.tags, hpage_pmd_nr=self.hpage_pmd_nr,
                         thp_sizes=dict(self.settings).get("thp_sizes", ()))
        if "thp_sizes" in dict(self.settings):
            err = thp_sizes_problem(dict(self.settings)["thp_sizes"], self.hpage_pmd_nr)
            if err:
                raise ScenarioError(f"{self.id}: thp_sizes: {err}")
        return replace(c, settings=self.settings) if self.settings else c


def check_hpage_pmd_nr(nr) -> None:
    """A THP/hugetlb size the model can run: a power of two >= 2."""
    if isinstance(nr, bool) or not isinstance(nr, int) or nr < 2 or nr & (nr - 1):
        raise ScenarioError(f"hpage_pmd_nr must be a power of two >= 2, not {nr!r}")


def thp_sizes_problem(sizes, hpage_pmd_nr: int) -> str:
    """What is wrong with a ``thp_sizes`` setting ("" if nothing): a non-empty
    tuple of distinct powers of two from 4 (order 2, the smallest anonymous
    mTHP: thp_vma_allowable_orders() never offers order 1) to the case's
    hpage_pmd_nr (the PMD size)."""
    if not isinstance(sizes, (tuple, list)) or not sizes:
        return f"must be a non-empty list of folio sizes in pages, not {sizes!r}"
    if hpage_pmd_nr < 4:
        return f"no THP size of 4 pages or more fits hpage_pmd_nr = {hpage_pmd_nr}; set hpage_pmd_nr >= 4"
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 4 or n > hpage_pmd_nr or n & (n - 1):
            return f"{n!r} is not a power of two in 4..{hpage_pmd_nr} (hpage_pmd_nr)"
    if len(set(sizes)) != len(sizes):
        return f"{list(sizes)} names a size twice"
    return ""


def compile_case(id, title, source, pages, procs, thread_proc, script, free=(), tags=(),
                 hpage_pmd_nr: int = HPAGE_PMD_NR, thp_sizes=()) -> Case:
    """Per-thread operation lists from a sequential script: between two
    consecutive operations of different threads, the first signals an event
    the second waits for.  ``hpage_pmd_nr`` is the case's THP/hugetlb size."""
    check_hpage_pmd_nr(hpage_pmd_nr)
    procs = list(procs)
    thread_proc = dict(thread_proc)
    for thread, opname, args, line in script:
        if thread == "__parallel__":
            for t, ops in args.items():
                thread_proc.setdefault(t, t)
                if thread_proc[t] not in procs:
                    procs.append(thread_proc[t])
                for o, a in ops:
                    if o == "fork" and a.get("child") not in procs:
                        procs.append(a.get("child"))
                        thread_proc.setdefault(a.get("child"), a.get("child"))
            continue
        if thread not in thread_proc:
            thread_proc[thread] = thread
        if thread_proc[thread] not in procs:
            procs.append(thread_proc[thread])
        if opname == "fork" and args.get("child") not in procs:
            procs.append(args.get("child"))
            thread_proc.setdefault(args.get("child"), args.get("child"))
    for name, proc, ops in free:              # a concurrent thread may fork too
        for o, a in ops:
            if o == "fork" and a.get("child") not in procs:
                procs.append(a.get("child"))
    for p in procs:
        thread_proc.setdefault(p, p)
    # (with ``thp_sizes`` below the PMD size only, in an address space smaller than one PMD, a THP mapping holds
    # mTHPs and never a PMD range, as in the random generator's mthp scenarios: it need not be whole huge pages)
    mthp_only = bool(thp_sizes) and hpage_pmd_nr not in thp_sizes and pages < hpage_pmd_nr
    if pages % hpage_pmd_nr and any(t != "__parallel__" and ((a.get("thp") and not mthp_only) or a.get("hugetlb"))
                                    for t, _, a, _ in script):
        raise ScenarioError(f"{id}: pages must be a multiple of {hpage_pmd_nr} for THP/hugetlb")
    order = list(procs) + [t for t in thread_proc if t not in procs]
    tops: dict[str, list] = {t: [] for t in order}
    last = None
    pending: list = []        # (thread, event) of a parallel block the next step waits for
    for i, (thread, opname, args, line) in enumerate(script):
        if thread == "__parallel__":
            ev = f"p{i}"
            if last is not None:
                tops[last].append(Op("signal", (("event", ev),)))
            for t, ops in args.items():
                if last is not None:
                    tops[t].append(Op("wait", (("event", ev),)))
                for o, a in ops:
                    if o not in OPS:
                        raise ScenarioError(f"{id}: unknown operation {o!r}")
                    tops[t].append(_mk(o, a, thread_proc[t], procs, line))
                tops[t].append(Op("signal", (("event", f"{ev}.{t}"),)))
                pending.append(f"{ev}.{t}")
            last = None
            continue
        if opname not in OPS:
            raise ScenarioError(f"{id}: unknown operation {opname!r}")
        for ev in pending:
            tops[thread].append(Op("wait", (("event", ev),)))
        pending = []
        if last is not None and last != thread:
            ev = f"s{i}"
            tops[last].append(Op("signal", (("event", ev),)))
            tops[thread].append(Op("wait", (("event", ev),)))
        tops[thread].append(_mk(opname, args, thread_proc[thread], procs, line))
        last = thread
    threads = [ThreadSpec(t, thread_proc[t], tuple(tops[t])) for t in order]
    for name, proc, ops in free:
        if proc not in procs:
            raise ScenarioError(f"{id}: thread {name!r}: no process {proc!r}")
        for o, _ in ops:
            if o not in OPS:
                raise ScenarioError(f"{id}: unknown operation {o!r}")
        threads.append(ThreadSpec(name, proc, tuple(_mk(o, a, proc, procs, None) for o, a in ops)))
    names = [t.name for t in threads]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ScenarioError(f"{id}: thread names used twice: {', '.join(map(str, dup))}")
    return Case(id, title, source, pages, tuple(procs), tuple(threads), tuple(tags), hpage_pmd_nr=hpage_pmd_nr)


def _mk(opname, args, proc, procs, line) -> Op:
    args = dict(args)
    args["process"] = proc
    if opname == "fork":
        if args.get("child") not in procs:
            raise ScenarioError(f"operation fork: no process {args.get('child')!r}")
        args["child_mm"] = procs.index(args["child"])
    if "of" in args:
        if args["of"] not in procs:
            raise ScenarioError(f"operation {opname}: no process {args['of']!r}")
        args["mm_id"] = procs.index(args["of"])
    for k, v in list(args.items()):
        if isinstance(v, list):
            args[k] = tuple(v)
    return Op(opname, tuple(sorted(args.items())), line)


def combine(id: str, title: str, *cases: Case) -> Case:
    """Run several cases side by side as one scenario: their processes,
    threads and events are kept apart (prefixed), so they share nothing but
    the machine (page frames, swap slots).  Used to measure partial-order
    reduction on scenarios with several independent process families.  The
    cases must have one geometry (``hpage_pmd_nr``)."""
    sizes = {c.hpage_pmd_nr for c in cases}
    if len(sizes) > 1:
        raise ScenarioError(f"{id}: the cases have different THP sizes {sorted(sizes)}")
    procs, threads = [], []
    for n, c in enumerate(cases):
        pre = f"{chr(ord('a') + n)}."
        base = len(procs)
        procs += [pre + p for p in c.processes]
        for t in c.threads:
            ops = []
            for op in t.ops:
                a = dict(op.args)
                if "event" in a:
                    a["event"] = pre + a["event"]
                for k in ("process", "child", "of"):
                    if k in a:
                        a[k] = pre + a[k]
                for k in ("child_mm", "mm_id"):
                    if k in a:
                        a[k] = a[k] + base
                ops.append(Op(op.name, tuple(sorted(a.items())), op.line))
            threads.append(ThreadSpec(pre + t.name, pre + t.process, tuple(ops)))
    pages = max(c.pages for c in cases)
    tags = tuple(sorted({t for c in cases for t in c.tags} | {"combined"}))
    return Case(id, title, " + ".join(c.source for c in cases), pages, tuple(procs), tuple(threads), tags,
                hpage_pmd_nr=sizes.pop() if sizes else HPAGE_PMD_NR)
