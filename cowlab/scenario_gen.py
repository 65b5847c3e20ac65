"""Random, valid sequential scenarios (``cowlab conformance --random``, and the
model-only tests).

A scenario is a script of steps ``(process, op, args)`` over a few pages:
the first process ("parent") maps memory and forks children; every process
writes and reads, vmsplices and reads the pipe, registers io_uring fixed
buffers and does READ_FIXED / WRITE_FIXED / unregister through them, does
O_DIRECT reads and writes, mprotect()s, madvise()s (DONTNEED, DONTFORK /
DOFORK, PAGEOUT), mremap()s, munmap()s and mmap()s again; a child exits; two
identical pages are merged by ksmd once.  The generator keeps a model of the
address spaces that a real program would have (mapped pages, protections,
VMA boundaries, pending pipes, registered buffers), so every step is one the
kernel accepts -- except, with a small probability, one step the kernel
refuses (``REFUSALS``: a SIGSEGV, an EFAULT, an EINVAL), which ends the
scenario; conformance compares the refusal with the model's (the errno, the
process killed at that step).  Those the model still gets wrong are known
false-verdict classes (``FAULT_CLASSES``).

Every scenario ends with an *observation sweep*: each live process reads
every page it can read, writes a fresh value at each still-attached
io_uring buffer and reads it back through the buffer (WRITE_FIXED), and
every pending pipe is read.  Whatever a COW decision did wrong is then seen
in data, which is what the random run checks verdicts against.

Generation draws through a ``chooser`` with ``randint(a, b)``,
``choice(seq)`` and ``random()``: a ``random.Random`` (the live run: the same
seed gives the same scenarios, in any Python and Hypothesis version) or
``HypothesisChooser`` (model-only property tests, which then shrink with
Hypothesis's own engine).

The known false-verdict classes can be left out by name (``exclude``) so a
run's other findings are visible; by default nothing is left out.

Huge-page kinds (``large``): "thp" (two PMD THPs of ``hpage_pmd_nr``
subpages; MADV_COLLAPSE steps of a whole PMD are put in after the body,
``_with_collapse``), "hugetlb", and "mthp": anonymous mTHP folios
(``thp_sizes`` (4,) or (4, 16): 16 kB, or 16 and 64 kB) below a PMD that is
not enabled (512 subpages by default, the kernel's), over two folios of the
largest size.  Its tracker models alloc_anon_folio() (mm/memory.c, 6.8+,
19eaf44954df): a write fault maps the largest enabled folio whose naturally
aligned range lies in the VMA with every pte none, a read fault the 4 KiB
zero page; partial munmap / mprotect / mremap / MADV_DONTNEED leave the rest
of a folio mapped.  Where the tracker cannot tell (it never merges VMAs, the
kernel may have; a collapse may or may not succeed) a page's ``faulted`` is
None.
"""
from __future__ import annotations

import dataclasses
import random as _random
from dataclasses import dataclass, field

from .scenario import compile_case

FIRST = "parent"

#: known false-verdict classes the generator can produce, by name (issue 11)
KNOWN_CLASSES = {
    "pageout-hugetlb": "MADV_PAGEOUT of a hugetlb mapping: the kernel returns EINVAL (the model too since issue 11; "
                       "compared as a refusal, kept here so that --exclude can leave it out)",
}
FAULT_CLASSES = ("pageout-hugetlb",)
#: the steps the kernel refuses that the generator makes (``Tracker.classify``): a CPU access answered with SIGSEGV
#: (an unmapped page, a PROT_NONE read, a write to PROT_READ), a GUP of an unmapped or PROT_NONE range (vmsplice,
#: O_DIRECT, io_uring register: EFAULT), a write GUP of a PROT_READ mapping (EFAULT), and the fault classes
REFUSALS = ("segfault", "efault", "write-gup-prot-read") + FAULT_CLASSES
#: classes after which the kernel and the model hold different page tables (later differences follow from them)
STATE_CLASSES = ()

#: ops the generator draws from, with their weights
WEIGHTS = {
    "write": 14, "read": 10, "fork": 5, "exit": 2, "mmap": 3, "munmap": 3, "mprotect": 4, "dontneed": 3,
    "dontfork": 2, "dofork": 1, "pageout": 5, "mremap": 3, "vmsplice": 4, "pipe_read": 6,
    "io_uring_register": 4, "io_uring_read_fixed": 4, "io_uring_write_fixed": 4, "io_uring_unregister": 2,
    "odirect_read": 3, "odirect_write": 3, "clear_refs": 1, "ksm": 2,
}
#: generator op -> the scenario operations it needs from the host
NEEDS = {"pageout": "pageout", "ksm": "ksm_merge", "odirect_read": "odirect_read", "odirect_write": "odirect_write",
         "io_uring_register": "io_uring_register", "vmsplice": "vmsplice"}
MAX_CHILDREN = 3
FAULT_P = 0.005


class HypothesisChooser:
    """The chooser interface over Hypothesis's ``data.draw`` (inside a
    ``@given(st.data())`` test), so Hypothesis shrinks the choices."""

    def __init__(self, data):
        from hypothesis import strategies as st
        self._d, self._st = data, st

    def randint(self, a: int, b: int) -> int:
        return self._d.draw(self._st.integers(a, b))

    def choice(self, seq):
        seq = list(seq)
        return seq[self.randint(0, len(seq) - 1)]

    def random(self) -> float:
        return self.randint(0, 999) / 1000


@dataclass
class Page:
    prot: str = "rw"
    vma: int = 0                # pages with the same id are one VMA (conservative: never merged back)
    dontfork: bool = False
    mergeable: bool = False
    tag: str | None = None      # the explicit value last written (KSM twins)
    hugetlb: bool = False       # a MAP_HUGETLB mapping (whole huge pages only)
    thp: bool = False           # mapped with MADV_HUGEPAGE
    faulted: bool | None = False    # something was faulted in at this page since it was mapped (None: maybe)
    anon_vma: bool = False      # the VMA has an anon_vma (an anonymous page was faulted in it)
    zero: bool = False          # read-faulted without an anon_vma: the zero page may be mapped


@dataclass
class Proc:
    name: str
    alive: bool = True
    pages: list = field(default_factory=list)     # Page | None per address


@dataclass
class Buf:
    proc: str
    addr: int
    pages: int
    attached: bool = True       # the registered pages are still mapped at the address range


class Tracker:
    """What a real program's address spaces look like after each step: the
    generator's (and the shrinker's) check that a step is one the kernel
    accepts.  ``classify`` -> "ok", "impossible" (the step makes no sense
    here: a process that does not exist, a pipe nobody filled) or the name
    of a fault class (the kernel refuses it)."""

    def __init__(self, pages: int, large: str | None = None, nr: int = 0, sizes=()):
        self.npages = pages
        # "thp" | "hugetlb" | "mthp" | None; the huge page's size in pages (mthp: the largest folio size, the
        # scenario's unit)
        self.large, self.nr = large, nr
        #: mthp: the folio sizes a write fault may allocate, largest first (empty: a kernel without anonymous
        #: mTHP, before 6.8: base pages)
        self.sizes = tuple(sorted(sizes, reverse=True))
        #: the large folios (first page, pages) the last step's write faults mapped, where the tracker is sure
        self.births: list = []
        self.procs = {FIRST: Proc(FIRST, True, [None] * pages)}
        self.bufs: dict[str, Buf] = {}
        self.pipes: dict[str, str] = {}         # pipe -> the process that vmspliced into it
        self.pipe_at: dict[str, range] = {}     # pipe -> the addresses its pages were taken at
        self.next_vma = 1
        self.ksm_done = False
        self.ended = False          # a faulting step ended the scenario
        self.counter = {"c": 0, "b": 0, "p": 0, "k": 0}

    # ----------------------------------------------------------------- helpers
    def live(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.alive]

    def _new_vma(self) -> int:
        self.next_vma += 1
        return self.next_vma

    def _range(self, args) -> range:
        a = args.get("addr", 0)
        return range(a, a + args.get("pages", 1))

    def _in_bounds(self, args) -> bool:
        for k in ("addr", "new_addr", "other_addr"):
            if k in args and not 0 <= args[k] <= args[k] + args.get("pages", 1) - 1 < self.npages:
                return False
        return True

    def _detach(self, proc: str, rng) -> None:
        for b in self.bufs.values():
            if b.proc == proc and any(a in rng for a in range(b.addr, b.addr + b.pages)):
                b.attached = False

    def pinned(self, proc: str, rng) -> bool:
        return any(b.proc == proc and b.attached and any(a in rng for a in range(b.addr, b.addr + b.pages))
                   for b in self.bufs.values())

    # ----------------------------------------------------------------- checks
    def classify(self, proc: str, op: str, args: dict) -> str:
        if self.ended:
            return "impossible"
        p = self.procs.get(proc)
        if p is None or not p.alive or not self._in_bounds(args):
            return "impossible"
        pg = [p.pages[a] for a in self._range(args)] if "addr" in args else []
        if op in ("munmap", "mprotect", "madvise", "mremap", "mmap", "pageout") and self.large == "hugetlb":
            rng = self._range(args)
            huge = [a for a in rng if p.pages[a] is not None and p.pages[a].hugetlb]
            if op == "pageout" and huge:
                return "pageout-hugetlb"
            whole = rng.start % self.nr == 0 and len(rng) % self.nr == 0
            if (huge or args.get("hugetlb")) and (op == "mremap" or not whole):
                return "impossible"         # the kernel's EINVAL for a part of a huge page (not generated)
            for h in {a // self.nr for a in rng}:
                # nor a hugetlb mapping cut into by a range that covers other pages
                span = range(h * self.nr, min(self.npages, (h + 1) * self.nr))
                if any(p.pages[a] is not None and p.pages[a].hugetlb for a in span) and not set(span) <= set(rng):
                    return "impossible"
        if op == "read":
            return "ok" if all(x is not None and x.prot != "none" for x in pg) else "segfault"
        if op == "write":
            return "ok" if all(x is not None and x.prot == "rw" for x in pg) else "segfault"
        if op in ("vmsplice", "odirect_write"):
            if op == "vmsplice" and args["pipe"] in self.pipes:
                return "impossible"
            return "ok" if all(x is not None and x.prot != "none" for x in pg) else "efault"
        if op in ("odirect_read", "io_uring_register"):
            if op == "io_uring_register" and args.get("buf", "buf") in self.bufs:
                return "impossible"
            if any(x is None or x.prot == "none" for x in pg):
                return "efault"
            return "ok" if all(x.prot == "rw" for x in pg) else "write-gup-prot-read"
        if op == "fork":
            if proc != FIRST or args["child"] in self.procs or any(o == FIRST for o in self.pipes.values()):
                return "impossible"        # (a child holding the pipe's write end would never let it end)
            return "ok"
        if op == "exit":
            return "impossible" if proc == FIRST else "ok"
        if op in ("mprotect", "madvise", "pageout"):
            return "ok" if pg and all(x is not None for x in pg) else "impossible"
        if op == "mremap":
            src, dst = self._range(args), range(args["new_addr"], args["new_addr"] + args.get("pages", 1))
            if set(src) & set(dst) or any(x is None for x in pg) or len({x.vma for x in pg}) != 1:
                return "impossible"
            return "ok"
        if op in ("munmap", "mmap", "clear_refs"):
            return "ok"
        if op == "pipe_read":
            return "ok" if self.pipes.get(args["pipe"]) == proc else "impossible"
        if op in ("io_uring_read_fixed", "io_uring_write_fixed", "io_uring_unregister"):
            b = self.bufs.get(args.get("buf", "buf"))
            return "ok" if b is not None and b.proc == proc else "impossible"
        if op == "ksm_merge":
            q = self.procs.get(args["of"])
            b = args.get("other_addr", args["addr"])
            if q is None or not q.alive or self.ksm_done or (q is p and b == args["addr"]):
                return "impossible"
            x, y = p.pages[args["addr"]], q.pages[b]
            if x is None or y is None or not (x.mergeable and y.mergeable) or x.tag is None or x.tag != y.tag:
                return "impossible"
            return "ok"
        return "impossible"


    def _unfaulted_thp(self, p: Proc, a: int) -> bool:
        """Is the aligned huge page holding ``a`` inside one THP mapping (VMA) that nothing has faulted in
        (the kernel's pmd_none() there: a fault maps a whole PMD, do_huge_pmd_anonymous_page())?"""
        span = range(a - a % self.nr, a - a % self.nr + self.nr)
        return span.stop <= self.npages and all(
            p.pages[x] is not None and p.pages[x].thp and not p.pages[x].faulted
            and p.pages[x].vma == p.pages[span.start].vma for x in span)

    def _touch(self, p: Proc, rng, write: bool = False) -> None:
        if self.large == "mthp":
            for a in rng:
                self._fault_mthp(p, a, write)
            return
        huge = set()
        for a in rng:
            if self.large == "thp" and self.nr and p.pages[a] is not None and p.pages[a].thp:
                huge.add(a // self.nr)
            elif p.pages[a] is not None:
                p.pages[a].faulted = True
        for h in huge:
            for x in range(h * self.nr, min(self.npages, h * self.nr + self.nr)):
                if p.pages[x] is not None:
                    p.pages[x].faulted = True

    @staticmethod
    def _vm_flags(pg: Page) -> tuple:
        return (pg.prot, pg.dontfork, pg.mergeable, pg.thp, pg.hugetlb)

    def _span(self, p: Proc, a: int, n: int):
        """Is the naturally aligned ``n``-page range holding ``a`` inside a's VMA with every pte none
        (alloc_anon_folio(): thp_vma_suitable_order() and pte_range_none())?  True, False, or None when the
        tracker cannot tell (a pte it is unsure of; or two of its VMAs with the same flags, which the kernel
        may have merged into one: vma_merge, which the tracker never does)."""
        base = a - a % n
        if base + n > self.npages:
            return False
        span = p.pages[base:base + n]
        if any(x is None or x.faulted or not x.thp or self._vm_flags(x) != self._vm_flags(p.pages[a])
               for x in span):
            return False
        if all(x.faulted is False and x.vma == p.pages[a].vma for x in span):
            return True
        return None

    def _fault_mthp(self, p: Proc, a: int, write: bool) -> None:
        """A fault at ``a`` of an mthp scenario: a read fault on a none pte maps the 4 KiB zero page (never a
        large folio: do_anonymous_page()); a write fault maps a folio of the largest enabled size whose aligned
        range lies in the VMA with every pte none (alloc_anon_folio(), 6.8+, 19eaf44954df), else one page; a
        fault on a pte already there maps nothing new (do_wp_page() copies one page)."""
        pg = p.pages[a]
        if pg is None or pg.faulted:
            return
        unsure = pg.faulted is None          # (the kernel may have a pte here already)
        if not write or not pg.thp or not self.sizes:
            pg.faulted = True
            return
        maybe = []
        for n in self.sizes:
            st = self._span(p, a, n)
            if st is None or (st and unsure):
                maybe.append(n)
            elif st:
                base = a - a % n
                for x in range(base, base + n):
                    p.pages[x].faulted = True
                if not maybe:
                    self.births.append((base, n))
                break
        pg.faulted = True
        for n in maybe:                      # the kernel may have mapped these pages too
            for x in range(a - a % n, a - a % n + n):
                if p.pages[x] is not None and p.pages[x].faulted is False:
                    p.pages[x].faulted = None

    def _split(self, p: Proc, rng) -> None:
        """A VMA that [rng) cuts: the part after the range becomes a VMA of its
        own (the part before keeps the id; the range gets its own from the
        operation).  Split VMAs keep their anon_vma."""
        for v in {p.pages[a].vma for a in rng if p.pages[a] is not None}:
            nv = self._new_vma()
            for a in range(rng.stop, self.npages):
                if p.pages[a] is not None and p.pages[a].vma == v:
                    p.pages[a].vma = nv

    def _renumber(self, p: Proc, rng) -> dict:
        """New VMA ids for the pages of ``rng`` (an mprotect or madvise splits
        each VMA it covers part of; the VMAs it covers stay apart)."""
        new: dict = {}
        return {a: new.setdefault(p.pages[a].vma, self._new_vma()) for a in rng if p.pages[a] is not None}

    def _fault_anon(self, p: Proc, rng) -> None:
        """An anonymous page faulted in: its whole VMA gets an anon_vma."""
        vmas = {p.pages[a].vma for a in rng if p.pages[a] is not None}
        for pg in p.pages:
            if pg is not None and pg.vma in vmas:
                pg.anon_vma = True

    # ----------------------------------------------------------------- effects
    def apply(self, proc: str, op: str, args: dict) -> None:
        cls = self.classify(proc, op, args)
        if cls == "impossible":
            raise ValueError(f"impossible step {proc}: {op} {args}")
        if cls != "ok":
            self.ended = True
            return
        p = self.procs[proc]
        rng = self._range(args)
        self.births = []
        if op in ("mmap", "munmap", "mprotect", "mremap") or \
                (op == "madvise" and args["advice"] not in ("dontneed", "collapse")):
            self._split(p, rng)
        if op == "mmap":
            self._detach(proc, rng)
            v = self._new_vma()
            for a in rng:
                p.pages[a] = Page(args.get("prot", "rw"), v, hugetlb=bool(args.get("hugetlb")),
                                  thp=bool(args.get("thp")))
        elif op == "munmap":
            self._detach(proc, rng)
            for a in rng:
                p.pages[a] = None
        # a read fault where a whole THP could go maps the huge zero page, and prepares the VMA's anon_vma
        # first (do_huge_pmd_anonymous_page(): anon_vma_prepare() for a read fault too)
        huge_read = [a for a in rng if op in ("read", "vmsplice", "odirect_write") and self.large == "thp"
                     and self._unfaulted_thp(p, a)]
        if huge_read:
            self._fault_anon(p, huge_read)
        if op in ("write", "read", "vmsplice", "odirect_read", "odirect_write", "io_uring_register"):
            self._touch(p, rng, write=op in ("write", "odirect_read", "io_uring_register"))
        if op == "write":
            self._fault_anon(p, rng)
            for a in rng:
                p.pages[a].tag = args.get("value")
        elif op in ("odirect_read", "io_uring_register"):
            self._fault_anon(p, rng)
            for a in rng:
                if op == "odirect_read":
                    p.pages[a].tag = None
        elif op in ("read", "vmsplice", "odirect_write"):
            for a in rng:
                if not p.pages[a].anon_vma:
                    p.pages[a].zero = True
            if op == "vmsplice":
                self.pipes[args["pipe"]] = proc
                self.pipe_at[args["pipe"]] = rng
        elif op == "mprotect":
            v = self._renumber(p, rng)
            for a in rng:
                p.pages[a].prot, p.pages[a].vma = args["prot"], v[a]
        elif op == "madvise":
            adv = args["advice"]
            if adv == "collapse":
                # MADV_COLLAPSE (madvise_collapse(): no vma flag changes, no split): where it succeeds every pte
                # of the PMD range is replaced by the new THP's PMD; whether it does (a pin, a pipe's reference:
                # SCAN_PAGE_COUNT) the tracker does not know
                for a in rng:
                    if p.pages[a].faulted is False:
                        p.pages[a].faulted = None
            elif adv == "dontneed":
                self._detach(proc, rng)
                for a in rng:
                    p.pages[a].tag = None
                    p.pages[a].zero = p.pages[a].faulted = False
            elif adv in ("dontfork", "dofork", "mergeable"):
                v = self._renumber(p, rng)
                for a in rng:
                    pg = p.pages[a]
                    pg.vma = v[a]
                    if adv == "mergeable":
                        pg.mergeable = True
                    else:
                        pg.dontfork = adv == "dontfork"
        elif op == "mremap":
            dst = range(args["new_addr"], args["new_addr"] + args.get("pages", 1))
            self._detach(proc, dst)
            v = self._new_vma()
            moved = [p.pages[a] for a in rng]
            for a in rng:
                p.pages[a] = None
            for a, pg in zip(dst, moved):
                pg.vma = v
                p.pages[a] = pg
            shift = args["new_addr"] - args["addr"]
            for b in self.bufs.values():      # the fixed buffer holds the pages: it goes with them
                if b.proc == proc and b.attached and all(a in rng for a in range(b.addr, b.addr + b.pages)):
                    b.addr += shift
        elif op == "fork":
            child = Proc(args["child"], True, [None] * self.npages)
            for a, pg in enumerate(p.pages):
                if pg is not None and not pg.dontfork:
                    child.pages[a] = dataclasses.replace(pg, dontfork=False, zero=pg.zero and pg.anon_vma)
                    if self.large == "mthp" and not pg.anon_vma:
                        # vma_needs_copy(): no pte of a vma without an anon_vma is copied (the tracker keeps the
                        # VMAs apart that the kernel may have merged, and a merged vma keeps its anon_vma when
                        # split again: a faulted page of a vma the tracker has without one is unsure)
                        child.pages[a].faulted = None if pg.faulted is not False else False
            self.procs[args["child"]] = child
        elif op == "exit":
            p.alive = False
            for name in [n for n, o in self.pipes.items() if o == proc]:
                del self.pipes[name]
            for name in [n for n, b in self.bufs.items() if b.proc == proc]:
                del self.bufs[name]
        elif op == "pipe_read":
            del self.pipes[args["pipe"]]
        if op == "io_uring_register":
            self.bufs[args.get("buf", "buf")] = Buf(proc, args["addr"], args.get("pages", 1))
        elif op == "io_uring_unregister":
            del self.bufs[args.get("buf", "buf")]
        elif op == "ksm_merge":
            self.ksm_done = True

    def sweep(self, exclude=()) -> list:
        """The observation sweep (see the module docstring); a buffer whose
        pages were unmapped is read back too (it still holds its pages)."""
        if self.ended:
            return []
        out = []
        for name, pipe_owner in list(self.pipes.items()):
            out.append((pipe_owner, "pipe_read", {"pipe": name}))
        for name, b in self.bufs.items():
            p = self.procs[b.proc]
            rng = range(b.addr, b.addr + b.pages)
            if b.attached and all(p.pages[a] is not None and p.pages[a].prot == "rw" for a in rng):
                out.append((b.proc, "write", {"addr": b.addr, "pages": b.pages} if b.pages > 1 else {"addr": b.addr}))
            out.append((b.proc, "io_uring_write_fixed", {"buf": name}))
        for name in self.live():
            p = self.procs[name]
            if self.nr and self.large:
                for a in offsets(self.npages, self.nr):
                    if p.pages[a] is not None and p.pages[a].prot != "none":
                        out.append((name, "read", {"addr": a}))
                continue
            a = 0
            while a < self.npages:
                if p.pages[a] is None or p.pages[a].prot == "none":
                    a += 1
                    continue
                b = a
                while b + 1 < self.npages and p.pages[b + 1] is not None and p.pages[b + 1].prot != "none":
                    b += 1
                out.append((name, "read", {"addr": a, "pages": b - a + 1} if b > a else {"addr": a}))
                a = b + 1
        return out


@dataclass
class Scenario:
    """A generated scenario: ``body`` (the random steps) and the sweep that
    ends it; ``steps`` is both."""
    id: str
    pages: int
    body: list
    sweep: list
    origin: str = ""
    exclude: tuple = ()         # the known classes left out (the sweep leaves them out too)
    large: str | None = None    # "thp" | "hugetlb": over huge pages of hpage_pmd_nr subpages; "mthp": over mTHPs
    hpage_pmd_nr: int = 0       # the THP / hugetlb size the scenario is built at (0: the model's default)
    thp_sizes: tuple = ()       # mthp: the anonymous THP sizes (pages) enabled, below the PMD size

    @property
    def nr(self) -> int:
        from .kernel.types import HPAGE_PMD_NR
        return self.hpage_pmd_nr or HPAGE_PMD_NR

    @property
    def steps(self) -> list:
        return list(self.body) + list(self.sweep)

    def case(self):
        procs = [FIRST] + [a["child"] for _, op, a in self.body if op == "fork"]
        script = [(p, op, dict(a), None) for p, op, a in self.steps]
        c = compile_case(self.id, f"random scenario {self.id}", self.origin or "cowlab scenario_gen",
                         self.pages, procs, {p: p for p in procs}, script, (), self.tags, hpage_pmd_nr=self.nr,
                         thp_sizes=tuple(self.thp_sizes))
        if self.thp_sizes:
            c = dataclasses.replace(c, settings=(("thp_sizes", tuple(self.thp_sizes)),))
        return c

    @property
    def tags(self) -> tuple:
        return ("random",) + ((self.large,) if self.large else ())

    def uses(self, op: str) -> bool:
        return any(o == op for _, o, _ in self.steps)


def _size(nr: int | None) -> int:
    from .kernel.types import HPAGE_PMD_NR
    return nr or HPAGE_PMD_NR


def tracker(pages: int, large: str | None = None, nr: int | None = None, sizes=()) -> Tracker:
    """The tracker of a scenario: huge pages of ``nr`` subpages, or (mthp) units of its largest folio size."""
    if large == "mthp":
        return Tracker(pages, large, max(sizes), sizes)
    return Tracker(pages, large, _size(nr))


def normalize(pages: int, body: list, exclude=(), large: str | None = None, nr: int | None = None, sizes=()
              ) -> tuple[list, list]:
    """Drop the steps that are impossible after the steps before them (the
    shrinker removes steps freely), and everything after a faulting step;
    -> (body, sweep).  ``nr``: the huge-page size (default the model's);
    ``sizes``: an mthp scenario's folio sizes."""
    t = tracker(pages, large, nr, sizes)
    out = []
    for proc, op, args in body:
        if t.ended:
            break
        if t.classify(proc, op, args) == "impossible":
            continue
        t.apply(proc, op, args)
        out.append((proc, op, args))
    return out, t.sweep(exclude)


def classes(steps: list, pages: int, large: str | None = None, nr: int | None = None, sizes=()) -> dict:
    """Step index -> the known false-verdict class of that step (a fault
    class, or a valid step of a known class), for the steps that have one."""
    t = tracker(pages, large, nr, sizes)
    out = {}
    for i, (proc, op, args) in enumerate(steps):
        k = t.classify(proc, op, args)
        if k == "impossible":
            continue
        if k in KNOWN_CLASSES:
            out[i] = k
        t.apply(proc, op, args)
    return out


# ----------------------------------------------------------------------------- generation
def host_ops(host: dict | None) -> dict:
    """Generator op -> why the host cannot run it (left out of every
    scenario); ``host`` maps scenario operation names to a reason."""
    host = host or {}
    return {g: host[o] for g, o in NEEDS.items() if host.get(o)}


def generate(chooser, index: int = 0, exclude=(), unavailable=None, max_body: int = 16, prefix: str = "random",
             large: str | None = None, nr: int | None = None) -> Scenario:
    """One scenario.  ``exclude``: known classes (``KNOWN_CLASSES``) never
    to produce; ``unavailable``: generator ops (``WEIGHTS``) -> reason, left
    out; ``large``: "thp" or "hugetlb" for a scenario over two huge pages of
    ``nr`` subpages (default the model's ``HPAGE_PMD_NR``; conformance
    passes the kernel's), its operations on whole huge pages, half of one,
    or one of the subpages ``offsets`` names: the same choices at every
    size, so a seed gives the same scenario scaled (and, for one size,
    always the same scenario).  A base-page scenario does not depend on
    ``nr``.  ``large="mthp"``: ``nr`` is the PMD (default ``MTHP_PMD_NR``),
    the folio sizes are drawn (``MTHP_SIZES``, those below ``nr``)."""
    exclude = set(exclude)
    unavailable = unavailable or {}
    c = chooser
    sizes = ()
    if large == "mthp":
        # folios of 16 kB (or 16 and 64 kB) below a PMD of nr (default the kernel's 512) that is not enabled;
        # the scenario's range is two of its largest folios (aligned to that size in the real program)
        nr = nr or MTHP_PMD_NR
        sizes = tuple(n for n in c.choice(MTHP_SIZES) if n < nr)
        if not sizes:
            raise ValueError(f"mthp: no folio size of {MTHP_SIZES} below a PMD of {nr} pages")
        pages = 2 * max(sizes)
        t = Tracker(pages, large, max(sizes), sizes)
    else:
        nr = _size(nr)
        pages = 2 * nr if large else c.randint(2, 6)
        t = Tracker(pages, large, nr)
    body = []

    def add(proc, op, args):
        t.apply(proc, op, args)
        body.append((proc, op, args))

    if large in ("thp", "mthp"):
        add(FIRST, "mmap", {"addr": 0, "pages": pages, "thp": True})
    elif large == "hugetlb":
        for h in range(0, pages if c.random() < 0.5 else nr, nr):
            add(FIRST, "mmap", {"addr": h, "pages": nr, "hugetlb": True})
    else:
        n = c.randint(1, pages)
        a0 = c.randint(0, pages - n)
        add(FIRST, "mmap", {"addr": a0, "pages": n} if n > 1 else {"addr": a0})
    target = c.randint(min(6, max_body), max_body)
    tries = 0
    while len(body) < target and not t.ended and tries < 200:
        tries += 1
        live = t.live()
        proc = FIRST if c.random() < 0.5 else c.choice(live)
        if c.random() < FAULT_P:
            step = _faulting(c, t, proc, exclude)
            if step is not None:
                add(*step)
            continue
        ops = [o for o in WEIGHTS if o not in unavailable]
        total = sum(WEIGHTS[o] for o in ops)
        r = c.randint(1, total)
        for g in ops:
            r -= WEIGHTS[g]
            if r <= 0:
                break
        steps = _draw(c, t, proc, g)
        if not steps:
            continue
        ok, probe = True, None
        for k, s in enumerate(steps):
            # check the whole group (the KSM preamble) before taking any of it (one step: checked on t itself)
            probe = probe or (t if len(steps) == 1 else _copy_tracker(t))
            if probe.classify(*s) != "ok":
                ok = False
                break
            if k < len(steps) - 1:
                probe.apply(*s)
        if ok:
            for s in steps:
                add(*s)
    if large == "thp" and "collapse" not in unavailable and "collapse" not in exclude:
        body, t = _with_collapse(c, body, pages, nr)
    return Scenario(f"{prefix}-{index}", pages, body, t.sweep(exclude), exclude=tuple(sorted(exclude)), large=large,
                    hpage_pmd_nr=nr, thp_sizes=sizes)


#: the share of thp scenarios that get MADV_COLLAPSE steps, and how many at most
COLLAPSE_P, COLLAPSE_MAX = 0.5, 2


def _with_collapse(c, body: list, pages: int, nr: int) -> tuple[list, Tracker]:
    """A thp scenario's body with up to COLLAPSE_MAX ``madvise(MADV_COLLAPSE)`` steps of a whole PMD range put in
    at drawn places, by a process alive there (khugepaged.madvise_collapse(); the kernel's answer -- 0, or
    EINVAL / EAGAIN / ... -- is compared with the model's).  Drawn after the body, so the body's own draws, and
    a scenario that gets none, are what they were before collapse was drawn; a collapse changes nothing the
    later steps' validity depends on (no vma split, no mapping).  -> (body, its tracker)."""
    body = list(body)
    if c.random() < COLLAPSE_P:
        for _ in range(c.randint(1, COLLAPSE_MAX)):
            ends = bool(body) and _ends_refused(body, pages, nr)
            j = c.randint(1, max(1, len(body) - (1 if ends else 0)))
            probe = Tracker(pages, "thp", nr)
            for st_ in body[:j]:
                probe.apply(*st_)
            step = (c.choice(probe.live()), "madvise",
                    {"addr": c.choice(range(0, pages, nr)), "pages": nr, "advice": "collapse"})
            if probe.classify(*step) == "ok":
                body.insert(j, step)
    t = Tracker(pages, "thp", nr)
    for st_ in body:
        t.apply(*st_)
    return body, t


def _ends_refused(body: list, pages: int, nr: int) -> bool:
    """Does the body end with a step the kernel refuses (nothing may follow it)?"""
    t = Tracker(pages, "thp", nr)
    for st_ in body[:-1]:
        t.apply(*st_)
    return t.classify(*body[-1]) != "ok"


def _copy_tracker(t: Tracker) -> Tracker:
    import copy
    return copy.deepcopy(t)


def _mapped_runs(p: Proc, want) -> list[range]:
    """Maximal runs of pages whose Page satisfies ``want``."""
    out, a, n = [], 0, len(p.pages)
    while a < n:
        if p.pages[a] is None or not want(p.pages[a]):
            a += 1
            continue
        b = a
        while b + 1 < n and p.pages[b + 1] is not None and want(p.pages[b + 1]):
            b += 1
        out.append(range(a, b + 1))
        a = b + 1
    return out


def offsets(npages: int, nr: int) -> list:
    """The subpages of each huge page a large scenario works on: its first
    two, its middle and its last."""
    return sorted({h * nr + o for h in range(npages // nr) for o in (0, 1, nr // 2, nr - 1)})


def _sub(c, runs, maxlen=3, t=None) -> tuple[int, int] | None:
    if not runs:
        return None
    if t is not None and t.large:
        # a whole huge page, its first half, or one of its interesting subpages
        nr = t.nr
        cands = [(a, n) for a in offsets(t.npages, nr) for n in (1, nr // 2, nr)
                 if (n == 1 or a % nr == 0) and any(a >= r.start and a + n <= r.stop for r in runs)]
        return c.choice(cands) if cands else None
    r = c.choice(runs)
    n = c.randint(1, min(maxlen, len(r)))
    a = c.randint(r.start, r.stop - n)
    return a, n


def _ra(a, n, **kw) -> dict:
    d = {"addr": a}
    if n > 1:
        d["pages"] = n
    d.update(kw)
    return d


def _draw(c, t: Tracker, proc: str, g: str) -> list:
    """Candidate steps for generator op ``g`` by ``proc`` ([] when none fits)."""
    p = t.procs[proc]
    readable = _mapped_runs(p, lambda x: x.prot != "none")
    writable = _mapped_runs(p, lambda x: x.prot == "rw")
    mapped = _mapped_runs(p, lambda x: True)
    if g in ("write", "read", "vmsplice", "odirect_read", "odirect_write", "io_uring_register"):
        sub = _sub(c, writable if g in ("write", "odirect_read", "io_uring_register") else readable, t=t)
        if sub is None:
            return []
        a, n = sub
        if g == "vmsplice":
            t.counter["p"] += 1
            return [(proc, g, _ra(a, n, pipe=f"p{t.counter['p']}"))]
        if g == "io_uring_register":
            t.counter["b"] += 1
            return [(proc, g, _ra(a, n, buf=f"b{t.counter['b']}"))]
        return [(proc, g, _ra(a, n))]
    if g == "fork":
        t.counter["c"] += 1
        if sum(1 for n in t.procs if n != FIRST) >= MAX_CHILDREN:
            return []
        return [(FIRST, "fork", {"child": f"c{t.counter['c']}"})]
    if g == "exit":
        return [] if proc == FIRST else [(proc, "exit", {})]
    if g == "clear_refs":
        return [(proc, "clear_refs", {})]
    if g in ("mmap", "munmap") and t.large:
        a, n = c.choice(range(0, t.npages, t.nr)), t.nr
        if g == "munmap":
            sub = _sub(c, mapped, t=t)
            return [(proc, g, _ra(*sub))] if sub is not None and c.random() < 0.7 else [(proc, g, _ra(a, n))]
        return [(proc, g, _ra(a, n, **{"hugetlb" if t.large == "hugetlb" else "thp": True}))]
    if g in ("mmap", "munmap"):
        n = c.randint(1, min(3, t.npages))
        a = c.randint(0, t.npages - n)
        if g == "munmap":
            sub = _sub(c, mapped)
            if sub is None or c.random() < 0.2:
                return [(proc, g, _ra(a, n))]
            return [(proc, g, _ra(*sub))]
        prot = c.choice(["rw"] * 8 + ["r", "none"])
        return [(proc, g, _ra(a, n, **({} if prot == "rw" else {"prot": prot})))]
    if g == "mprotect":
        sub = _sub(c, mapped, t=t)
        return [] if sub is None else [(proc, g, _ra(*sub, prot=c.choice(["r", "r", "rw", "rw", "none"])))]
    if g in ("dontneed", "dontfork", "dofork"):
        sub = _sub(c, mapped, t=t)
        return [] if sub is None else [(proc, "madvise", _ra(*sub, advice=g))]
    if g == "pageout" and t.large == "mthp":
        # a whole mTHP, half of one or a subpage: madvise_cold_or_pageout_pte_range() splits a folio the range
        # covers part of (or, before 6.10, every PTE-mapped large folio) and swaps the rest out
        sub = _sub(c, readable, t=t)
        return [] if sub is None else [(proc, g, _ra(*sub))]
    if g == "pageout" and t.large:
        # a whole huge page (the model swaps out the folio at addr as one unit; MADV_PAGEOUT of part of a THP
        # would split it first)
        h = c.choice(range(0, t.npages, t.nr))
        return [(proc, g, {"addr": h, "pages": t.nr})] if any(r.start <= h and h + t.nr <= r.stop for r in readable) \
            else []
    if g == "pageout":
        sub = _sub(c, readable, 1)         # the model swaps out the folio at addr: one base page
        return [] if sub is None else [(proc, g, {"addr": sub[0]})]
    if g == "mremap" and t.large:
        sub = _sub(c, mapped, t=t)
        if sub is None:
            return []
        a, n = sub
        if n == t.nr:            # a whole THP to the other one (the PMD moves as it is)
            return [(proc, g, _ra(a, n, new_addr=(a + t.nr) % t.npages))]
        free = [b for b in offsets(t.npages, t.nr) if not set(range(b, b + n)) & set(range(a, a + n))
                and b + n <= t.npages]
        return [(proc, g, _ra(a, n, new_addr=c.choice(free)))] if free else []
    if g == "mremap":
        sub = _sub(c, mapped, 2)
        if sub is None:
            return []
        a, n = sub
        free = [b for b in range(t.npages - n + 1) if not set(range(b, b + n)) & set(range(a, a + n))]
        if not free:
            return []
        return [(proc, g, _ra(a, n, new_addr=c.choice(free)))]
    if g == "pipe_read":
        mine = [name for name, o in t.pipes.items() if o == proc]
        return [(proc, g, {"pipe": c.choice(mine)})] if mine else []
    if g in ("io_uring_read_fixed", "io_uring_write_fixed", "io_uring_unregister"):
        mine = [name for name, b in t.bufs.items() if b.proc == proc]
        return [(proc, g, {"buf": c.choice(mine)})] if mine else []
    if g == "ksm":
        if t.ksm_done or t.large:          # (ksmd splits a THP first: not modelled here)
            return []
        other = c.choice(t.live())
        q = t.procs[other]
        mine = [a for r in _mapped_runs(p, lambda x: x.prot == "rw") for a in r]
        theirs = [a for r in _mapped_runs(q, lambda x: x.prot == "rw") for a in r]
        if not mine or not theirs:
            return []
        a, b = c.choice(mine), c.choice(theirs)
        if other == proc and a == b:
            return []
        t.counter["k"] += 1
        tag = f"k{t.counter['k']}"
        steps = [(proc, "write", {"addr": a, "value": tag}), (other, "write", {"addr": b, "value": tag}),
                 (proc, "madvise", {"addr": a, "advice": "mergeable"})]
        if other != proc or a != b:
            steps.append((other, "madvise", {"addr": b, "advice": "mergeable"}))
        steps.append((proc, "ksm_merge", {"addr": a, "of": other, "other_addr": b}))
        return steps
    return []


def _faulting(c, t: Tracker, proc: str, exclude) -> tuple | None:
    """A step the kernel refuses (a fault class not excluded), or None."""
    p = t.procs[proc]
    cands = []
    for a in (offsets(t.npages, t.nr) if t.large else range(t.npages)):     # (huge pages: the same at every size)
        pg = p.pages[a]
        if "segfault" not in exclude:
            if pg is None or pg.prot == "none":
                cands.append((proc, "read", {"addr": a}))
            if pg is None or pg.prot != "rw":
                cands.append((proc, "write", {"addr": a}))
        if "efault" not in exclude and (pg is None or pg.prot == "none"):
            t.counter["p"] += 1
            cands += [(proc, "vmsplice", {"addr": a, "pipe": f"p{t.counter['p']}"}),
                      (proc, "odirect_write", {"addr": a})]
        if "pageout-hugetlb" not in exclude and pg is not None and pg.hugetlb and a % t.nr == 0:
            cands.append((proc, "pageout", {"addr": a, "pages": t.nr}))
        if "write-gup-prot-read" not in exclude and pg is not None and pg.prot == "r":
            t.counter["b"] += 1
            cands += [(proc, "odirect_read", {"addr": a}),
                      (proc, "io_uring_register", {"addr": a, "buf": f"b{t.counter['b']}"})]
    cands = [s for s in cands if t.classify(*s) not in ("ok", "impossible")]
    return c.choice(cands) if cands else None


#: the share of a run's scenarios over huge pages, where the host has them (mthp: taken from the base-page share,
#: so a run without mthp draws the same kinds, and the same scenarios, as before the kind existed)
LARGE_SHARE = (("thp", 0.10), ("hugetlb", 0.05), ("mthp", 0.10))
#: the huge-page kinds
LARGE_KINDS = tuple(k for k, _ in LARGE_SHARE)
#: an mthp scenario's folio sizes (pages), one drawn per scenario: 16 kB, or 16 kB and 64 kB
MTHP_SIZES = ((4,), (4, 16))
#: an mthp scenario's PMD size by default: the kernel's on x86-64 (the PMD size is not enabled)
MTHP_PMD_NR = 512


def large_kind(seed: int, i: int, kinds=()) -> str | None:
    """Whether scenario i of a run is over huge pages ("thp", "hugetlb"),
    mTHPs ("mthp") or base pages (None); ``kinds``: the ones the host allows."""
    r = _random.Random(f"{seed}:{i}:large").random()
    for k, share in LARGE_SHARE:
        if r < share:
            return k if k in kinds else None
        r -= share
    return None


def scenarios(seed: int, count: int, exclude=(), unavailable=None, start: int = 0, large=(), part: str = "all",
              nr: int | None = None):
    """The run's scenarios: scenario i comes from its own generator seeded
    with (seed, i), so one can be made again on its own.  ``large``: the
    huge-page kinds the host allows; ``nr``: their size in subpages (the
    kernel's in a live run; default the model's); ``part``: "base" or
    "large" yields only those."""
    for i in range(start, start + count):
        kind = large_kind(seed, i, large)
        if part == "all" or (part == "large") == (kind is not None):
            yield generate(_random.Random(f"{seed}:{i}"), i, exclude, unavailable, prefix=f"random-s{seed}",
                           large=kind, nr=nr)


# ----------------------------------------------------------------------------- TOML
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def to_toml(scn: Scenario, header: str = "", title: str = "") -> str:
    """A scenario file (``cowlab.toml_format``) that ``cowlab run`` and
    ``cowlab conformance FILE.toml`` read; ``header`` becomes comment lines."""
    lines = [f"# {ln}".rstrip() for ln in header.splitlines()] if header else []
    lines += [f"id = {_toml_value(scn.id)}", f"title = {_toml_value(title or 'random scenario ' + scn.id)}",
              f"source = {_toml_value(scn.origin or 'cowlab scenario_gen')}", f"pages = {scn.pages}",
              "tags = [" + ", ".join(_toml_value(x) for x in scn.tags) + "]"]
    if scn.large:
        lines.append(f"hpage_pmd_nr = {scn.nr}")
    if scn.thp_sizes:
        lines.append(f"thp_sizes = {_toml_value(list(scn.thp_sizes))}")
    lines.append("")
    nbody = len(scn.body)
    for i, (proc, op, args) in enumerate(scn.steps):
        if i == nbody and scn.sweep:
            lines.append("# the observation sweep: every live process reads what it can, every buffer is read back")
            lines.append("")
        lines.append("[[step]]")
        lines.append(f"thread = {_toml_value(proc)}")
        lines.append(f"op = {_toml_value(op)}")
        for k, v in args.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)
