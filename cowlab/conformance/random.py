"""Random differential testing against the live kernel
(``cowlab conformance --random N --seed S``) and the replay of scenario
files (``cowlab conformance FILE.toml``).

Each scenario (``cowlab.scenario_gen``) runs as a real program and in the
model under the host's design (or ``--design``); the two are compared step
by step as conformance compares catalog cases (``runner.compare``).  Then
the design's *verdicts* are checked against the data the real program saw
(``DataSpec``): every missed or wrong COW the model reports is a finding --
the host's design must show none outside what cow.c itself flags XFAIL
(hugetlb + FOLL_GET) -- and the report says whether the kernel's data bears
it out (a process or pipe saw another process's data; a pin read stale
data) or not (a false verdict); data the kernel showed that no verdict
explains is a finding too.

A steady disagreement (it is run up to three times: the kernel's background
work can change one run) is shrunk by a deterministic delta-debugging
shrinker over the scenario's steps (``shrink``), the candidates re-validated
by the generator's tracker and run live, and written as a TOML scenario
file; ``cowlab conformance FILE.toml`` replays it.  Why not Hypothesis's
engine here: its shrinker calls the test synchronously and raises ``Flaky``
when the same input gives two answers, and a live kernel's background work
does that now and then; it would also serialise the model runs that this run
computes ahead in a process pool, and "the same seed, the same scenarios"
would depend on Hypothesis's version.  The generator itself is
Hypothesis-ready (``scenario_gen.HypothesisChooser``): the model-only tests
use Hypothesis's generation and shrinking, where the oracle is the model and
deterministic.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .. import designs, scenario_gen
from ..model import CowModel
from ..verdict import MISSED, WRONG
from . import runner
from .runner import CaseResult, Prepared

#: steps of the shrinker's search, at most, per finding
SHRINK_BUDGET = 150


# ----------------------------------------------------------------------------- the model's verdicts
def model_verdicts(case, design) -> list:
    """The design's missed and wrong COW verdicts on the sequential schedule,
    each incident counted once (as ``run.run_sequential``): [(index of the
    operation, sync operations not counted, kind, text)]."""
    m = CowModel(case, design, check_invariants=False, oracle=True)
    s = m.init_state()
    out, seen = [], set()
    index, current = 0, None
    for _ in range(20000):
        if m.is_done(s):
            break
        order = [current] if current is not None else range(m.nthreads)
        tr = next((t for tid in order if (t := m.step(s, tid)) is not None), None)
        if tr is None:
            tr = next((t for tid in range(m.nthreads) if (t := m.step(s, tid)) is not None), None)
        if tr is None:
            break
        for e in tr.events:
            if e.kind in (MISSED, WRONG) and (e.key is None or e.key not in seen):
                if e.key is not None:
                    seen.add(e.key)
                out.append((index, e.kind, e.text))
        pc = s.threads[tr.tid].pc
        s = tr.state
        if s.threads[tr.tid].label is None:
            current = None
            if m.ops[tr.tid][pc].name not in ("signal", "wait"):
                index += 1
        else:
            current = tr.tid
    return out


def xfail(case) -> bool:
    """What cow.c flags XFAIL: a R/O FOLL_GET reference (vmsplice) on
    hugetlb, which the kernel still lets see later data."""
    ops = [op for t in case.threads for op in t.ops]
    return any(op.name == "mmap" and op.arg().get("hugetlb") for op in ops) and \
        any(op.name == "vmsplice" for op in ops)


# ----------------------------------------------------------------------------- what the kernel showed
class Cell:
    """What one process's page at one address holds by the specification
    (fork gives the child a copy; a long-term pin and the pages a pipe holds
    keep the cell they were taken on, whatever mremap or munmap does to the
    address): the current value and every value it ever held."""
    __slots__ = ("cur", "hist")

    def __init__(self, cur=0, hist=None):
        self.cur = cur
        self.hist = set(hist or {cur})

    def store(self, v):
        self.cur = v
        self.hist.add(v)


class DataSpec:
    """Replays a plan's steps with the data the real program returned and
    lists what the kernel showed: a *leak* (a read, a pipe, a pin or an
    O_DIRECT write returned data this page of this process never held -- a
    missed COW made visible) and a *stale* read (a coherent observer -- the
    CPU, a registered io_uring buffer, an O_DIRECT write -- returned an older
    value of the page than its current one -- a wrong COW made visible)."""

    def __init__(self, first: str, pages: int):
        self.pages = pages
        self.maps = {first: [None] * pages}
        self.dontfork = {first: set()}
        self.bufs: dict = {}
        self.pipes: dict = {}
        self.incidents: list = []     # (step index, "leak" | "stale", text)

    def _look(self, i, where, cell, got, coherent=True):
        if got == cell.cur:
            return
        if got not in cell.hist:
            self.incidents.append((i, "leak", f"{where} returned {got}, which that page never held "
                                              f"(it holds {cell.cur})"))
        elif coherent:
            self.incidents.append((i, "stale", f"{where} returned {got}, an older value than the page's {cell.cur}"))

    def feed(self, i: int, step: dict, value) -> None:
        proc, op, a = step["process"], step["op"], step["args"]
        m = self.maps.get(proc)
        if m is None:
            return
        addr, n = a.get("addr", 0), a.get("pages", 1)
        rng = range(addr, addr + n)
        vals = a.get("value")
        if op == "mmap":
            for x in rng:
                m[x] = Cell()
        elif op == "munmap":
            for x in rng:
                m[x] = None
        elif op == "madvise" and a.get("advice") == "dontneed":
            for x in rng:
                if m[x] is not None:
                    m[x] = Cell()
        elif op == "madvise" and a.get("advice") in ("dontfork", "dofork"):
            (self.dontfork[proc].update if a["advice"] == "dontfork" else self.dontfork[proc].difference_update)(rng)
        elif op == "mremap":
            moved = [m[x] for x in rng]
            for x in rng:
                m[x] = None
            for k, c in enumerate(moved):
                m[a["new_addr"] + k] = c
            self.dontfork[proc] = {x for x in self.dontfork[proc] if x not in rng}
        elif op == "fork":
            self.maps[a["child"]] = [None if c is None or x in self.dontfork[proc] else Cell(c.cur, c.hist)
                                     for x, c in enumerate(m)]
            self.dontfork[a["child"]] = set()
        elif op == "exit":
            del self.maps[proc]
        elif op in ("write", "odirect_read"):
            for k, x in enumerate(rng):
                if m[x] is not None and vals and k < len(vals):
                    m[x].store(vals[k])
        elif op == "io_uring_register":
            self.bufs[(proc, a.get("buf", "buf"))] = [m[x] for x in rng]
        elif op == "io_uring_unregister":
            self.bufs.pop((proc, a.get("buf", "buf")), None)
        elif op == "io_uring_read_fixed":
            cells = self.bufs.get((proc, a.get("buf", "buf")), [])
            for k, c in enumerate(cells):
                if c is not None and vals and k < len(vals):
                    c.store(vals[k])
        elif op == "vmsplice":
            self.pipes[(proc, a["pipe"])] = [m[x] for x in rng]
        elif op == "read" or op == "odirect_write":
            what = "a read" if op == "read" else "an O_DIRECT write"
            for k, x in enumerate(rng):
                if m[x] is not None and value and k < len(value):
                    self._look(i, f"{proc}'s {what} of page {x}", m[x], value[k])
        elif op == "io_uring_write_fixed":
            cells = self.bufs.get((proc, a.get("buf", "buf")), [])
            for k, c in enumerate(cells):
                if c is not None and value and k < len(value):
                    self._look(i, f"{proc}'s io_uring buffer {a.get('buf', 'buf')} (WRITE_FIXED, page {k})", c,
                               value[k])
        elif op == "pipe_read":
            cells = self.pipes.pop((proc, a["pipe"]), [])
            for k, c in enumerate(cells):
                if c is not None and value and k < len(value):
                    self._look(i, f"{proc}'s pipe {a['pipe']} (page {k} of its vmsplice)", c, value[k],
                               coherent=False)


def observed(plan: dict, lines: list) -> list:
    """The kernel's leaks and stale reads in one real run (see ``DataSpec``)."""
    spec = DataSpec(plan["processes"][0], plan["pages"])
    for i, (step, line) in enumerate(zip(plan["steps"], lines)):
        if not line.get("ok"):
            break
        spec.feed(i, step, line.get("value"))
    return spec.incidents


def check_verdicts(prep: Prepared, verdicts: list, lines: list) -> tuple[str, tuple] | None:
    """-> (reason, signature) of the first verdict the run does not allow, or None."""
    seen = observed(prep.plan, lines)
    ops = [st["op"] for st in prep.plan["steps"]]
    want = {MISSED: "leak", WRONG: "stale"}
    kind_of = {"leak": MISSED, "stale": WRONG}
    if xfail(prep.case):
        return None             # cow.c's XFAIL: the kernel may show the leak the model calls (counted, not judged)
    for i, kind, text in verdicts:
        shown = [x for x in seen if x[1] == want[kind] and x[0] >= i]
        if shown:
            j, _, what = shown[0]
            return (f"step {i + 1} ({ops[i]}): the model calls a {kind} COW ({text}); the kernel's data bears it out "
                    f"at step {j + 1}: {what}"), (f"verdict-{kind}", ops[i], "confirmed")
        return (f"step {i + 1} ({ops[i]}): the model calls a {kind} COW ({text}); the real program's data shows no "
                f"such thing (no {want[kind]} in its reads)"), (f"verdict-{kind}", ops[i], "unconfirmed")
    for j, what, text in seen:
        if not any(k == kind_of[what] and i <= j for i, k, _ in verdicts):
            return (f"step {j + 1} ({ops[j]}): the kernel showed a {what} that no verdict of the model explains: "
                    f"{text}"), (f"unflagged-{what}", ops[j])
    return None


# ----------------------------------------------------------------------------- one scenario
@dataclass
class Judged:
    result: CaseResult
    signature: tuple = ()
    verdicts: list = field(default_factory=list)


def prepare(scn, design, have_swap, host):
    """-> (Prepared or a CaseResult, the model's verdicts); the model's part,
    run in the pool."""
    case = scn.case()
    prep = runner.prepare(case, design, False, have_swap, host)
    if isinstance(prep, CaseResult):
        return prep, []
    try:
        return prep, model_verdicts(case, design)
    except Exception as e:
        return CaseResult(case.id, "disagree", reason=f"the model failed: {type(e).__name__}: {e}"), []


def model_signature(reason: str) -> tuple:
    """The class of a model failure: the invariant a model bug broke, or the exception."""
    import re
    m = re.search(r"model bug: (\w+):", reason) or re.search(r"the model failed: (\w+)", reason)
    return ("model", m.group(1) if m else "failure")


def signature(reason: str) -> tuple:
    """The class of a state disagreement: what differs, at which operation."""
    import re
    m = re.match(r"step \d+ \((\S+): (\w+)", reason)
    op = m.group(2) if m else ""
    for key, kind in (("data:", "data"), (" alive:", "alive"), ("not anonymous", "anon"),
                      ("PG_anon_exclusive", "exclusive"), ("KSM page", "ksm"), ("mapcount", "mapcount"),
                      ("share a physical page", "sharing"), (": outcome:", "outcome"),
                      ("the real program failed", "failed"),
                      ("the real program stopped", "stopped"), ("the model failed", "model")):
        if key in reason:
            return (kind, op)
    if m and re.search(r"page \d+: kernel \w+, model \w+", reason):
        return ("entry", op)
    return ("other", op)


def _known(j: Judged, index: int, classes) -> Judged:
    """A disagreement at a step of a known false class, or after one that
    changes what the kernel and the model hold (``STATE_CLASSES``; for a
    verdict: after any): the class leads its signature and its reason says so."""
    if not classes:
        return j
    verdict = j.signature[0].startswith(("verdict-", "unflagged-"))
    earlier = [c for i, c in sorted(classes.items()) if i < index and (verdict or c in scenario_gen.STATE_CLASSES)]
    hit = classes.get(index) or (earlier[-1] if earlier else None)
    if hit:
        j.signature = (hit,) + tuple(j.signature)
        j.result.reason += f" [known class {hit}: {scenario_gen.KNOWN_CLASSES[hit]}]"
    return j


def judge(prep: Prepared, verdicts: list, lines: list, failure: str, design, classes=None) -> Judged:
    cid = prep.case.id
    if failure and not lines:
        return Judged(CaseResult(cid, "skip", reason=failure))
    n, diff = runner.compare(prep.m, prep.msteps, lines, design.anon_exclusive)
    if diff.startswith("SKIP: ") and "did not populate a huge page" in diff and any(
            i <= n and c in scenario_gen.STATE_CLASSES for i, c in (classes or {}).items()):
        # not a THP the kernel could not allocate: after a step of a class that leaves the kernel and the model
        # with different page tables, the model's huge page is that class's difference (it counts as one)
        diff = diff[len("SKIP: "):]
        return _known(Judged(CaseResult(cid, "disagree", n, diff), ("entry", prep.msteps[n][1].name), verdicts), n,
                      classes)
    if diff.startswith("SKIP: "):
        return Judged(CaseResult(cid, "skip", n, diff[len("SKIP: "):]), verdicts=verdicts)
    if diff:
        sig = signature(diff)
        if sig[0] == "stopped" and n < len(prep.msteps):
            sig = ("stopped", prep.msteps[n][1].name)       # the operation the real program did not survive
        return _known(Judged(CaseResult(cid, "disagree", n, diff), sig, verdicts), n, classes)
    bad = check_verdicts(prep, verdicts, lines)
    if bad:
        import re
        m = re.match(r"step (\d+)", bad[0])
        return _known(Judged(CaseResult(cid, "disagree", n, bad[0]), bad[1], verdicts),
                      int(m.group(1)) - 1 if m else n, classes)
    return Judged(CaseResult(cid, "agree", n, f"{n} operations compared"), verdicts=verdicts)


class Live:
    """Runs prepared scenarios as real programs, one at a time, on one server."""

    def __init__(self, design, have_swap, host, thp_knobs=None):
        self.design, self.have_swap, self.host = design, have_swap, host
        self.thp_knobs = thp_knobs      # a zram.ThpSizes: the per-size knobs set for an mthp scenario's thp_sizes
        self.server = runner.Server()

    def run(self, prep, verdicts, classes=None) -> Judged:
        if isinstance(prep, CaseResult):
            return Judged(prep, model_signature(prep.reason) if prep.result == "disagree" else ())
        sizes = runner.case_thp_sizes(prep.case)
        why = self.thp_knobs.apply(sizes) if self.thp_knobs is not None else \
            ("thp_sizes: the run sets no per-size THP knobs" if sizes else "")
        if why:
            return Judged(CaseResult(prep.case.id, "skip", reason=why))
        try:
            lines, failure = runner._launch(prep, self.server).collect()
        except Exception as e:
            self.server.close(kill=True)
            return Judged(CaseResult(prep.case.id, "skip", reason=f"the real program failed: {type(e).__name__}: {e}"))
        return judge(prep, verdicts, lines, failure, self.design, classes)

    def run_scenario(self, scn) -> Judged:
        return self.run(*prepare(scn, self.design, self.have_swap, self.host),
                        scenario_gen.classes(scn.steps, scn.pages, scn.large, scn.nr, scn.thp_sizes))

    def close(self, kill=False):
        self.server.close(kill=kill)


def steady(live: Live, prep, verdicts, first: Judged, attempts: int = runner.ATTEMPTS, classes=None) -> Judged:
    """Rerun a disagreement (the kernel's background work can change one run):
    an agreement replaces it, keeping the disagreement in its reason."""
    tries, r = 1, first
    while r.result.result != "agree" and tries < attempts:
        tries += 1
        r = live.run(prep, verdicts, classes)
    if tries > 1 and r.result.result == "agree":
        r.result.reason += f" (on attempt {tries} of {attempts}; attempt 1 disagreed: {first.result.reason})"
        return r
    if tries > 1:
        first.result.reason += f" (no agreement in {tries} attempts)"
    return first


# ----------------------------------------------------------------------------- shrinking
def shrink(scn, still, budget: int = SHRINK_BUDGET, sweep_too: bool = True):
    """A deterministic delta-debugging shrinker (ddmin over the scenario's
    steps, then smaller ranges and a smaller address space).  ``still(s)``
    says whether scenario ``s`` still fails the same way; every candidate is
    re-validated first (``scenario_gen.normalize``: steps made impossible by
    a removal go too, and the observation sweep is made anew).  With
    ``sweep_too`` the sweep's own steps are then removed one by one where the
    failure does not need them.  -> (the smallest failing scenario, tests run)."""
    from ..scenario_gen import Scenario, normalize
    tests = 0
    best = scn

    def attempt(pages, body, sweep=None):
        nonlocal best, tests
        b, sw = normalize(pages, body, best.exclude, best.large, best.nr, best.thp_sizes)
        if sweep is not None:
            sw = sweep
        cand = Scenario(best.id, pages, b, sw, best.origin, best.exclude, best.large, best.hpage_pmd_nr,
                        best.thp_sizes)
        if (b, sw, pages) == (best.body, best.sweep, best.pages) or tests >= budget:
            return False
        tests += 1
        if still(cand):
            best = cand
            return True
        return False

    # 1. ddmin over the body
    n = 2
    while len(best.body) >= 2 and tests < budget:
        body = best.body
        chunk = max(1, (len(body) + n - 1) // n)
        done = False
        for start in reversed(range(0, len(body), chunk)):
            if attempt(best.pages, body[:start] + body[start + chunk:]):
                n = max(n - 1, 2)
                done = True
                break
        if not done:
            if chunk == 1:
                break
            n = min(len(body), n * 2)
    # 2. single pages instead of ranges
    for k in range(len(best.body)):
        if k >= len(best.body):
            break
        proc, op, args = best.body[k]
        if args.get("pages", 1) > 1:
            a = dict(args)
            del a["pages"]
            attempt(best.pages, best.body[:k] + [(proc, op, a)] + best.body[k + 1:])
    # 3. a smaller address space
    while best.pages > 1:
        top = max([a.get("addr", 0) + a.get("pages", 1) for _, _, a in best.body] +
                  [a.get("new_addr", 0) + a.get("pages", 1) for _, _, a in best.body] +
                  [a.get("other_addr", 0) + 1 for _, _, a in best.body])
        if best.large == "mthp":
            top = -(-top // max(best.thp_sizes)) * max(best.thp_sizes)      # whole folios of the largest size
        elif best.large:
            top = -(-top // best.nr) * best.nr       # whole huge pages
        if top >= best.pages or not attempt(top, best.body):
            break
    # 4. the sweep's steps that the failure does not need
    if sweep_too:
        k = len(best.sweep) - 1
        while k >= 0:
            if k < len(best.sweep):
                attempt(best.pages, best.body, best.sweep[:k] + best.sweep[k + 1:])
            k -= 1
    return best, tests


# ----------------------------------------------------------------------------- the run
@dataclass
class Finding:
    signature: tuple
    scenario: str               # the first scenario that showed it
    reason: str
    file: str = ""
    steps: int = 0              # steps of the shrunk reproducer
    from_steps: int = 0
    tests: int = 0
    count: int = 1              # scenarios that showed it
    reproduced: str = ""        # replays of the shrunk scenario that showed it, right after shrinking
    at_end: str = ""            # ... and at the end of the run (a kernel condition that passed shows here)
    small: object = field(default=None, repr=False, compare=False)


@dataclass
class RandomReport:
    seed: int
    count: int
    results: list = field(default_factory=list)         # [CaseResult]
    findings: dict = field(default_factory=dict)        # signature -> Finding
    not_generated: dict = field(default_factory=dict)   # generator op -> why the host cannot run it
    excluded: list = field(default_factory=list)
    verdicts: dict = field(default_factory=lambda: {"missed": 0, "wrong": 0, "confirmed": 0, "xfail": 0})
    seconds: float = 0.0
    interrupted: bool = False

    def counts(self) -> dict:
        res = self.results
        skips: dict = {}
        for r in res:
            if r.result == "skip":
                skips[r.reason] = skips.get(r.reason, 0) + 1
        return {"scenarios": len(res), "steps_compared": sum(r.steps_compared for r in res),
                "agree": sum(r.result == "agree" for r in res), "disagree": sum(r.result == "disagree" for r in res),
                "skip": sum(r.result == "skip" for r in res), "skipped_scenarios_by_reason": skips,
                "ops_not_generated_by_reason": dict(self.not_generated),
                "scenarios_per_minute": round(len(res) / self.seconds * 60, 1) if self.seconds else None,
                "seconds": round(self.seconds, 1), "design_verdicts": dict(self.verdicts)}

    def as_json(self) -> dict:
        return {"seed": self.seed, "requested": self.count, "excluded": self.excluded, **self.counts(),
                "findings": [{"class": list(f.signature), "scenario": f.scenario, "scenarios": f.count,
                              "file": f.file, "steps": f.steps, "shrunk_from": f.from_steps, "shrink_runs": f.tests,
                              "reproduced": f.reproduced, "reproduced_at_end": f.at_end, "reason": f.reason}
                             for f in self.findings.values()]}


def host_unavailable(host: dict, have_swap: bool) -> dict:
    """Generator op -> why this host cannot run it."""
    from .probe import Unsupported, odirect_dir
    why = {}
    if not have_swap:
        why["pageout"] = "no swap (run with --swap)"
    if host.get("ksm"):
        why["ksm"] = host["ksm"]
    try:
        odirect_dir()
    except Unsupported as e:
        why["odirect_read"] = why["odirect_write"] = str(e)
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            if f.read().strip() != "0":
                why["io_uring_register"] = "io_uring is disabled here (kernel.io_uring_disabled)"
    except OSError:
        pass
    if "io_uring_register" in why:
        for g in ("io_uring_read_fixed", "io_uring_write_fixed", "io_uring_unregister"):
            why[g] = why["io_uring_register"]
    return why


def _models_ahead(scns, design, have_swap, host, jobs):
    """Yield (scenario, prepare()) in order, the models computed ahead in a
    process pool (as ``runner._preparations``), a bounded window at a time."""
    if jobs < 1:
        for s in scns:
            yield s, prepare(s, design, have_swap, host)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    cpu_set = runner.cpus()[1] if jobs <= len(runner.cpus()[1]) else set()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                             initializer=runner._pin_model_worker, initargs=(cpu_set,)) as pool:
        window = deque()
        it = iter(scns)
        try:
            while True:
                while len(window) < 4 * jobs + 4:
                    s = next(it, None)
                    if s is None:
                        break
                    window.append((s, pool.submit(prepare, s, design, have_swap, host)))
                if not window:
                    return
                s, f = window.popleft()
                yield s, f.result()
        finally:
            for _, f in window:
                f.cancel()


def _header(f: Finding, scn, design, command, release) -> str:
    import re
    m = re.search(r"--design (\S+)", command)
    spec = m.group(1) if m else ""
    return (f"cowlab conformance --random: a shrunk reproducer ({f.steps} steps, from {f.from_steps}; "
            f"{f.tests} live runs to shrink)\n"
            f"found by: {command} (scenario {f.scenario}) on kernel {release}, design {design.name}\n"
            f"class: {' / '.join(f.signature)}\n"
            f"what differs: {f.reason}\n"
            f"replay: sudo cowlab conformance THIS_FILE.toml{spec and ' --design ' + spec}"
            f"   (the model alone: cowlab run THIS_FILE.toml -d {spec or design.name})")


def run_random(count: int, seed: int, design, have_swap: bool, host: dict, out_dir: str | None,
               exclude=(), log=None, jobs: int | None = None, shrink_budget: int = SHRINK_BUDGET,
               release: str = "", report: RandomReport | None = None, command: str = "", large=(),
               part: str = "all", nr: int | None = None, thp_knobs=None) -> RandomReport:
    """The random run itself (the machine already set up): ``count``
    scenarios from ``seed``; steady disagreements shrunk, one reproducer
    per class, written to ``out_dir``.  ``large``: the huge-page kinds to
    generate, built at ``nr`` subpages (the kernel's THP size; default the
    model's); ``part``: "base" or "large" runs only those scenarios (see
    ``scenario_gen.scenarios``)."""
    rep = report or RandomReport(seed, count)
    command = command or f"cowlab conformance --random {count} --seed {seed}"
    rep.excluded = sorted(exclude)
    rep.not_generated.update(host_unavailable(host, have_swap))
    gen_unavailable = dict(rep.not_generated)
    jobs = runner.default_jobs() if jobs is None else jobs
    live = Live(design, have_swap, host, thp_knobs)
    t0 = time.monotonic()
    scns = scenario_gen.scenarios(seed, count, exclude, gen_unavailable, large=large, part=part, nr=nr)
    try:
        for scn, (prep, verdicts) in _models_ahead(scns, design, have_swap, host, jobs):
            classes = scenario_gen.classes(scn.steps, scn.pages, scn.large, scn.nr, scn.thp_sizes)
            j = live.run(prep, verdicts, classes)
            if j.result.result == "disagree" and not isinstance(prep, CaseResult):
                j = steady(live, prep, verdicts, j, classes=classes)
            for _, kind, _ in j.verdicts:
                rep.verdicts[kind] += 1
            if j.verdicts and j.result.result != "skip":
                if xfail(scn.case()):
                    rep.verdicts["xfail"] += len(j.verdicts)
                elif "bears it out" in j.result.reason:
                    rep.verdicts["confirmed"] += 1
            if j.result.result == "disagree" and j.signature:
                if scn.large:
                    j.signature = (scn.large,) + tuple(j.signature)      # (its own file, its own class)
                f = rep.findings.get(j.signature)
                if f is not None:
                    f.count += 1
                    j.result.reason += f" (class {' / '.join(j.signature)}: see {f.scenario})"
                else:
                    f = rep.findings[j.signature] = Finding(j.signature, scn.id, j.result.reason,
                                                            from_steps=len(scn.steps))
                    _shrink_and_write(f, scn, live, j.signature, out_dir, shrink_budget, design, command, release)
                    j.result.reason += f" -> {f.file or 'not written'}"
            j.result.case = scn.id
            rep.results.append(j.result)
            rep.seconds = time.monotonic() - t0
            if log:
                log(j.result)
    except KeyboardInterrupt:
        rep.interrupted = True
        live.close(kill=True)
        rep.seconds = time.monotonic() - t0
        raise
    _recheck(rep, live)
    live.close()
    rep.seconds = time.monotonic() - t0
    return rep


def _recheck(rep: RandomReport, live: Live) -> None:
    """Replay every reproducer at the end of the run: one that no longer
    disagrees was a passing state of the machine (its reason says so)."""
    for f in rep.findings.values():
        if f.small is None:
            continue
        n = 0
        for _ in range(3):
            got = live.run_scenario(f.small).signature
            n += ((f.small.large,) + tuple(got) if f.small.large else got) == f.signature
        f.at_end = f"{n}/3"
        f.small = None


def _shrink_and_write(f: Finding, scn, live: Live, sig, out_dir, budget, design, command, release) -> None:
    def still(cand) -> bool:
        got = live.run_scenario(cand).signature
        return ((cand.large,) + tuple(got) if cand.large else got) == sig

    verdict_class = any(str(x).startswith(("verdict-", "unflagged-")) for x in sig)
    small, f.tests = shrink(scn, still, budget, sweep_too=not verdict_class)
    f.small = small
    f.steps = len(small.steps)
    ok = sum(still(small) for _ in range(3))
    f.reproduced = f"{ok}/3"
    j = live.run_scenario(small)
    if ((small.large,) + tuple(j.signature) if small.large else j.signature) == sig:
        f.reason = j.result.reason
    small.origin = f"{command}: scenario {scn.id}, shrunk; class {' / '.join(sig)}"
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        name = "-".join(str(x) for x in sig).replace("_", "-")
        path = os.path.join(out_dir, f"{name}.toml")
        # (a scenario id is a name, at most toml_format.MAX_NAME characters: a long class is cut, with a hash of
        # the whole so that two long classes keep apart; the file name keeps the whole class)
        small.id = _finding_id(name)
        with open(path, "w") as fh:
            fh.write(scenario_gen.to_toml(small, _header(f, small, design, command, release)
                                          + f"\nreproduced {f.reproduced} times on replay") + "\n")
        f.file = path


def _finding_id(name: str) -> str:
    """The id of a reproducer of class ``name``: ``random-NAME``, cut to the
    scenario format's name limit with a short hash of the whole."""
    import hashlib
    from ..toml_format import MAX_NAME
    cid = f"random-{name}".lower()
    if len(cid) <= MAX_NAME:
        return cid
    h = hashlib.sha256(cid.encode()).hexdigest()[:8]
    return cid[:MAX_NAME - 9].rstrip("-") + "-" + h


# ----------------------------------------------------------------------------- scenario files
def run_files(paths, design, have_swap: bool, host: dict, log=None, thp_knobs=None) -> list:
    """Replay scenario files: state comparison and the verdict check, as for
    a random scenario (a disagreement is run up to three times)."""
    from ..toml_format import load_case
    live = Live(design, have_swap, host, thp_knobs)
    out = []
    try:
        for p in paths:
            case = load_case(p)
            prep = runner.prepare(case, design, False, have_swap, host)
            verdicts = [] if isinstance(prep, CaseResult) else model_verdicts(case, design)
            j = live.run(prep, verdicts)
            if j.result.result == "disagree" and not isinstance(prep, CaseResult):
                j = steady(live, prep, verdicts, j)
            j.result.case = p
            out.append(j.result)
            if log:
                log(j.result)
    finally:
        live.close()
    return out


def main_live(files=(), count=None, seed=1, design_spec=None, swap=True, exclude=(), out_dir=None, log=None,
              report=None):
    """Set the machine up (swap on zram, ksmd's knobs), run, put it back.
    -> (release, design name, note, results, changed, RandomReport or None)."""
    import contextlib
    release, dname, note, design = runner.host_design(design_spec)
    changed: list = []
    rep = report
    if os.geteuid() != 0:
        if files:
            return release, dname, note, [CaseResult(p, "skip", reason="needs root (PFNs, kpageflags)")
                                          for p in files], [], None
        rep = rep or RandomReport(seed, count)
        rep.results = [CaseResult(f"random-s{seed}-{i}", "skip", reason="needs root (PFNs, kpageflags)")
                       for i in range(count)]
        return release, dname, note, rep.results, [], rep
    from .zram import machine_lock, temporary_ksm, temporary_swap, temporary_thp_sizes
    results: list = []
    kinds, no_large = large_kinds(exclude)
    large = any(is_large_file(p) for p in files) if files else bool(kinds)
    t0 = time.monotonic()
    try:
        with machine_lock(), temporary_swap(swap, changed) as have_swap, \
                (temporary_ksm(changed) if not (host := runner.host_facts())["ksm"] else contextlib.nullcontext()), \
                (huge_page_room(changed) if large else contextlib.nullcontext()), \
                temporary_thp_sizes(changed) as thp_knobs:
            have_swap = have_swap or runner.swap_active()
            if files:
                results = run_files(files, design, have_swap, host, log, thp_knobs)
            else:
                rep = rep or RandomReport(seed, count)
                for k, why in no_large.items():
                    rep.not_generated[k] = why
                command = f"cowlab conformance --random {count} --seed {seed}" + \
                    (f" --design {design_spec}" if design_spec else "") + "".join(f" --exclude {e}" for e in exclude)
                # the huge-page scenarios are built at the kernel's THP size (Case.hpage_pmd_nr)
                run_random(count, seed, design, have_swap, host, out_dir, exclude, log, release=release, report=rep,
                           command=command, large=kinds, nr=runner.kernel_thp_nr() or None, thp_knobs=thp_knobs)
                results = rep.results
            if files:
                order = {p: i for i, p in enumerate(files)}
                results.sort(key=lambda r: order.get(r.case, len(order)))
            else:
                rep.results.sort(key=lambda r: _index(r.case))
                rep.seconds = time.monotonic() - t0
                results = rep.results
    except KeyboardInterrupt:
        results = rep.results if rep is not None else results
        raise runner.Interrupted(release, dname, note, results, changed) from None
    return release, dname, note, results, changed, rep



# ----------------------------------------------------------------------------- huge pages
def huge_page_room(changed: list):
    """What the huge-page scenarios need of the machine, as ``cowlab
    conformance --thp`` sets it (``runner.run``) and puts it back: a pipe
    that holds a whole THP (a vmsplice() of one; F_SETPIPE_SZ up to
    fs/pipe-max-size) and free 2 MiB hugetlb pages (vm/nr_hugepages)."""
    import contextlib

    from .zram import temporary_sysctl
    stack = contextlib.ExitStack()
    nr = runner.kernel_thp_nr()
    if nr:
        stack.enter_context(temporary_sysctl("/proc/sys/fs/pipe-max-size", nr * os.sysconf("SC_PAGE_SIZE"), changed))
    if os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        stack.enter_context(temporary_sysctl("/proc/sys/vm/nr_hugepages", 8, changed))
    return stack


def large_kinds(exclude=()) -> tuple[tuple, dict]:
    """(the huge-page kinds this host can run, kind -> why not)."""
    why = {}
    if not runner.kernel_thp_nr():
        why["thp"] = why["hugetlb"] = why["mthp"] = "this kernel has no PMD THP"
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        why.setdefault("hugetlb", "no 2 MiB hugetlb pages here")
    from .zram import anon_thp_knobs
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    knobs = anon_thp_knobs()
    missing = sorted({n * page_kb for s in scenario_gen.MTHP_SIZES for n in s} - set(knobs))
    if missing:
        why.setdefault("mthp", "no anonymous mTHP of " + ", ".join(f"{kb} kB" for kb in missing) +
                       " here (no transparent_hugepage/hugepages-<kB>kB/enabled: before 6.8)")
    for k in scenario_gen.LARGE_KINDS:
        if k in exclude:
            why[k] = "left out by --exclude"
    return tuple(k for k in scenario_gen.LARGE_KINDS if k not in why), why


def is_large_file(path: str) -> bool:
    """A scenario file over huge pages (tagged thp or hugetlb): its run needs
    ``huge_page_room`` (it runs at its own ``hpage_pmd_nr``, which must be
    the kernel's THP size, or it is skipped saying so)."""
    import tomllib
    try:
        with open(path, "rb") as f:
            tags = tomllib.load(f).get("tags", [])
    except (OSError, ValueError):
        return False
    return isinstance(tags, list) and bool(set(scenario_gen.LARGE_KINDS) & set(map(str, tags)))


def _index(case_id: str) -> int:
    tail = case_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


# ----------------------------------------------------------------------------- the command
def cli_main(cases, count, seed, exclude, out_dir, swap, fmt, quiet, design_spec, progress, out, user_error):
    """``cowlab conformance FILE.toml ...`` and ``cowlab conformance --random N``."""
    import json
    import sys

    import click
    from rich.table import Table

    from ..toml_format import load_case
    if count is not None and cases:
        raise user_error("--random runs generated scenarios: give no cases or files with it")
    files = list(cases)
    for p in files:
        if not (p.endswith(".toml") or "/" in p):
            raise user_error(f"{p}: scenario files and catalog ids cannot be mixed in one run")
        load_case(p)                    # a bad file is a one-line error before the machine is touched
    ex = set()
    for e in exclude:
        if e == "known":
            ex |= set(scenario_gen.KNOWN_CLASSES)
        elif e in scenario_gen.KNOWN_CLASSES or e in scenario_gen.REFUSALS or \
                e in scenario_gen.LARGE_KINDS + ("collapse",):
            ex.add(e)
        else:
            raise user_error(f"--exclude {e}: unknown class; known: {', '.join(scenario_gen.KNOWN_CLASSES)}, known "
                             f"(all of those), {', '.join(scenario_gen.REFUSALS[:3])} (steps "
                             "the kernel refuses), thp, hugetlb, mthp (no scenarios over huge pages / mTHPs), "
                             "collapse (no MADV_COLLAPSE in thp scenarios)")
    if design_spec:
        designs.load(design_spec)
    rep = None if files else RandomReport(seed, count)
    interrupted = False
    try:
        with progress(quiet, len(files) or count, "conformance") as prog:
            rel, dname, note, results, changed, rep = main_live(files, count, seed, design_spec, swap, sorted(ex),
                                                                out_dir, lambda r: prog.advance(), rep)
    except runner.Interrupted as e:
        rel, dname, note, results, changed = e.args
        interrupted = True
    if rep is not None:
        rep.interrupted = interrupted
    if fmt == "json":
        d = {"kernel": rel, "design": dname, "note": note, "interrupted": interrupted,
             "cases": [r.as_json() for r in results], "changed": changed}
        if rep is not None:
            d["random"] = rep.as_json()
        click.echo(json.dumps(d, indent=2))
    else:
        out.print(note)
        shown = [r for r in results if r.result != "agree"] if rep is not None else results
        if shown:
            t = Table()
            for col in ("scenario" if rep is not None else "file", "result", "steps compared", "detail"):
                t.add_column(col, overflow="fold")
            from rich.markup import escape
            for r in shown:
                style = {"agree": "green", "disagree": "red", "skip": "yellow"}[r.result]
                t.add_row(escape(r.case), f"[{style}]{r.result}[/]", str(r.steps_compared), escape(r.reason))
            out.print(t)
        if rep is not None:
            c = rep.counts()
            out.print(f"{c['scenarios']} scenarios (seed {seed}), {c['steps_compared']} steps compared: agree "
                      f"{c['agree']}, disagree {c['disagree']}, skip {c['skip']}; {c['scenarios_per_minute']} "
                      f"scenarios per minute ({c['seconds']} s)")
            v = c["design_verdicts"]
            out.print(f"{dname}'s verdicts: {v['missed']} missed, {v['wrong']} wrong COW "
                      f"({v['confirmed']} scenarios where the kernel's data bears one out, {v['xfail']} XFAIL "
                      f"hugetlb + FOLL_GET)")
            for why, n in sorted(c["skipped_scenarios_by_reason"].items()):
                out.print(f"skipped scenarios: {n} x {why}")
            for op, why in sorted(c["ops_not_generated_by_reason"].items()):
                out.print(f"not generated: {op}: {why}")
            if rep.excluded:
                out.print(f"left out by --exclude: {', '.join(rep.excluded)}")
            for f in rep.findings.values():
                gone = " -- NOT AT THE END OF THE RUN: a passing state of the machine?" if f.at_end == "0/3" else ""
                out.print(f"finding ({' / '.join(f.signature)}) in {f.count} scenario(s), first {f.scenario}: "
                          f"shrunk to {f.steps} steps (from {f.from_steps}, {f.tests} runs, reproduced "
                          f"{f.reproduced}, at the end {f.at_end or '-'}){gone} -> {f.file or 'not written'}")
        else:
            n = {k: sum(r.result == k for r in results) for k in ("agree", "disagree", "skip")}
            out.print(f"agree {n['agree']}, disagree {n['disagree']}, skip {n['skip']}")
        for line in changed:
            out.print(f"machine: {line}")
    if interrupted:
        raise user_error(f"interrupted after {len(results)} scenarios: the result is inconclusive "
                         f"(the machine was put back: {len(changed)} changes listed)")
    if any(r.result == "disagree" for r in results):
        sys.exit(1)
