"""Exploration benchmark for issue 14 (run on demand, not in CI):

    python benchmarks/explore.py            # the default run (about two minutes on the 2-core machine)
    python benchmarks/explore.py --full     # the whole growth table (threads 2..5, processes 2..5, pages 1..4)

Prints, all measured in this one run (so the speeds are ratios on this shared,
noisy machine):

* states per CPU-second on the two-family case (race-fork-gup-fast +
  race-reclaim-pin combined, under linux-5.9, no reduction) and the ratio to a
  flat-tuple BFS over a trivial model (the Python baseline);
* bytes per stored state (tracemalloc's peak over the search, divided by the
  states stored), plain and with 64-bit fingerprints (frontier in memory and
  on disk);
* each reduction on and off (static POR, symmetry, DPOR, fingerprints) on the
  two-family case and on the single-family race catalog, with whether the
  verdicts equal plain search's;
* the growth table: threads, processes and pages, with and without a reclaim
  thread, each search limited in time (an inconclusive one says so);
* sequential runs of cow.c's PTE-mapped and swapped-out THP tests with large
  folios (64 subpages; 256 with --full) under linux-6.18, with the model's
  invariant checks on and off (what the checks cost per step grows with the
  folio);
* Spin end to end on the two Promela races (benchmarks/bench_spin.py: the
  same questions hand-written in Promela, spin -a + gcc + pan, against
  ``cowlab explore`` end to end), when ``spin`` is installed.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cowlab import catalog, designs  # noqa: E402
from cowlab.explore import Limits, explore  # noqa: E402
from cowlab.model import CowModel  # noqa: E402
from cowlab.scenario import Script, combine  # noqa: E402


def flat_bfs(n=60, clock=time.process_time):
    """BFS over a 3-counter grid with flat tuple states (the baseline):
    (states, seconds by ``clock``: CPU seconds by default), under the
    collector thresholds ``explore`` sets (``cowlab.explore.GC_THRESHOLD``),
    so that the ratio compares like with like."""
    from cowlab.explore import GC_THRESHOLD
    start = (0, 0, 0)
    seen = {start}
    q = deque([start])
    old = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        t = clock()
        while q:
            s = q.popleft()
            for i in range(3):
                if s[i] < n:
                    ns = s[:i] + (s[i] + 1,) + s[i + 1:]
                    if ns not in seen:
                        seen.add(ns)
                        q.append(ns)
        return len(seen), clock() - t
    finally:
        gc.set_threshold(*old)


def two_family():
    """The issue's two-family case: race-fork-gup-fast + race-reclaim-pin in one scenario."""
    return combine("race-fork-gup-fast+race-reclaim-pin", "two families",
                   catalog.get("race-fork-gup-fast"), catalog.get("race-reclaim-pin"))


# ----------------------------------------------------------------------------- growth scenarios

def threads_case(nthreads: int, reclaim: bool = False, pages: int = 1):
    """One process, ``nthreads`` concurrent threads on ``pages`` pages, each
    taking a write fault and a long-term pin (then dropping it) on every page;
    with ``reclaim`` one more thread runs MADV_PAGEOUT on page 0."""
    s = Script(f"grow-t{nthreads}-p{pages}{'-reclaim' if reclaim else ''}", pages=pages)
    p = s.process("p")
    names = ["p"] + [f"p.cpu{i}" for i in range(1, nthreads)]
    for n in names[1:]:
        s.cpu("p", n)
    p.mmap(0, pages=pages)
    for a in range(pages):
        p.write(a)
    p.lru_add_drain()
    par = {}
    for i, n in enumerate(names):
        ops = []
        for a in range(pages):
            ops += [("write", {"addr": a}), ("pin_longterm", {"addr": a, "pin": f"q{i}.{a}"}),
                    ("unpin", {"pin": f"q{i}.{a}"})]
        par[n] = ops
    if reclaim:
        s.cpu("p", "p.reclaim")
        par["p.reclaim"] = [("pageout", {"addr": 0})]
    s.parallel(par)
    return s.build()


def procs_case(nprocs: int):
    """A parent forks ``nprocs - 1`` children; then every process writes and
    reads the page concurrently."""
    s = Script(f"grow-procs{nprocs}", pages=1)
    p = s.process("p")
    kids = [s.process(f"c{i}") for i in range(1, nprocs)]
    p.mmap(0)
    p.write(0)
    p.lru_add_drain()
    for c in kids:
        p.fork(c)
    par = {"p": [("write", {"addr": 0}), ("read", {"addr": 0})]}
    for i in range(1, nprocs):
        par[f"c{i}"] = [("write", {"addr": 0}), ("read", {"addr": 0})]
    s.parallel(par)
    return s.build()


# ----------------------------------------------------------------------------- measuring

REDUCTIONS = {
    "plain": {},
    "POR (static groups)": {"por": True},
    "symmetry": {"symmetry": True},
    "symmetry (procs)": {"symmetry": "procs"},
    "symmetry (threads)": {"symmetry": "threads"},
}


def _extra_reductions():
    """Reductions the explorer has in this checkout (added as they land)."""
    import inspect
    params = inspect.signature(explore).parameters
    out = {}
    if "dpor" in params:
        out["DPOR (sleep + source sets)"] = {"dpor": True}
    if "fingerprints" in params:
        out["fingerprints (64-bit)"] = {"fingerprints": True}
    if "frontier" in params:
        out["fingerprints + disk frontier"] = {"fingerprints": True, "frontier": "disk"}
    return out


def run(case, design="linux-5.9", limits=Limits(), **kw):
    m = CowModel(case, designs.load(design))
    gc.collect()
    c0 = time.process_time()
    r = explore(m, limits=limits, **kw)
    cpu = time.process_time() - c0
    return r, cpu


def bytes_per_state(case, design="linux-5.9", **kw):
    m = CowModel(case, designs.load(design))
    gc.collect()
    tracemalloc.start()
    r = explore(m, **kw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / max(r.states, 1), r


def verdicts(r):
    return {k: len(v) for k, v in r.incidents.items()}, r.status


def table(title, head, rows):
    print(f"\n{title}")
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    print("  ".join(str(h).ljust(n) for h, n in zip(head, w)))
    for row in rows:
        print("  ".join(str(x).ljust(n) for x, n in zip(row, w)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the whole growth table (takes much longer)")
    ap.add_argument("--seconds", type=float, default=None, help="time limit of each growth search")
    ap.add_argument("--skip-growth", action="store_true")
    ap.add_argument("--skip-spin", action="store_true", help="leave out Spin end to end")
    a = ap.parse_args(argv)
    reds = dict(REDUCTIONS, **_extra_reductions())
    t_all = time.perf_counter()

    bs, bt = flat_bfs()
    base = bs / bt
    print(f"flat-tuple BFS baseline: {bs:,} states in {bt:.2f} CPU-s = {base:,.0f} states per CPU-second")

    # 1. the two-family case, each reduction on and off
    case = two_family()
    rows = []
    plain = None
    for name, kw in reds.items():
        if name == "symmetry" and not a.full:
            continue                 # (as slow as plain search here; --full runs it)
        r, cpu = run(case, **kw)
        if plain is None:
            plain = r
            plain_rate = r.states / cpu
        rows.append((name, f"{r.states:,}", f"{r.transitions:,}", f"{cpu:.2f}", f"{r.states / cpu:,.0f}",
                     f"{r.states / cpu / base:.4f}x", f"{plain.states / max(r.states, 1):.1f}x",
                     r.status + (f" ({r.reason})" if r.reason else ""), verdicts(r) == verdicts(plain)))
    table("two-family case (race-fork-gup-fast + race-reclaim-pin, linux-5.9)",
          ("search", "states", "transitions", "CPU-s", "states/CPU-s", "vs flat BFS", "fewer states", "status",
           "same verdicts"), rows)
    print(f"plain search: {plain_rate:,.0f} states per CPU-second = {plain_rate / base:.4f}x the flat baseline "
          f"(target 50,000/s, 0.08x)")

    # 2. bytes per stored state
    mrows = []
    mcase = case if a.full else threads_case(2, reclaim=True)
    for name, kw in [("plain", {})] + [(n, kw) for n, kw in reds.items() if "fingerprints" in kw]:
        b, r = bytes_per_state(mcase, **kw)
        mrows.append((name, f"{r.states:,}", f"{b:,.0f}"))
    table(f"bytes per stored state (tracemalloc peak / states stored), {mcase.id}", ("search", "states",
                                                                                    "bytes/state"), mrows)

    # 3. the single-family race catalog, each reduction on and off
    races = [c for c in catalog.all_cases() if "race" in c.tags]
    tot = {n: [0, 0.0, True] for n in reds}
    for c in races:
        for d in designs.names():
            base_v = None
            for name, kw in reds.items():
                r, cpu = run(c, d, **kw)
                tot[name][0] += r.states
                tot[name][1] += cpu
                if base_v is None:
                    base_v = verdicts(r)
                elif verdicts(r) != base_v:
                    tot[name][2] = False
    p0 = tot["plain"][0]
    table(f"single-family race catalog ({len(races)} cases x {len(designs.names())} designs)",
          ("search", "states", "CPU-s", "fewer states", "same verdicts everywhere"),
          [(n, f"{s:,}", f"{t:.2f}", f"{p0 / max(s, 1):.2f}x", ok) for n, (s, t, ok) in tot.items()])

    # 4. growth
    if not a.skip_growth:
        secs = a.seconds or (120.0 if a.full else 15.0)
        lim = Limits(max_seconds=secs)
        series = [("threads", n, threads_case(n)) for n in ((2, 3, 4, 5) if a.full else (2, 3, 4))]
        series += [("threads + reclaim", n, threads_case(n, reclaim=True)) for n in ((2, 3, 4) if a.full else (2,))]
        series += [("processes", n, procs_case(n)) for n in ((2, 3, 4, 5) if a.full else (2, 3, 4))]
        series += [("pages (2 threads)", n, threads_case(2, pages=n)) for n in ((1, 2, 3, 4) if a.full else (1, 2))]
        series += [("pages (2 threads) + reclaim", n, threads_case(2, reclaim=True, pages=n))
                   for n in ((1, 2, 3) if a.full else (1,))]
        grows = []
        gred = {n: kw for n, kw in reds.items()
                if n in ("plain", "DPOR (sleep + source sets)", "symmetry", "symmetry (procs)", "symmetry (threads)")}
        for what, n, c in series:
            row = [what, n]
            for name, kw in gred.items():
                r, cpu = run(c, "linux-5.9", limits=lim, **kw)
                row += [f"{r.states:,}", f"{cpu:.1f}" + ("" if r.status == "complete" else " (inconclusive)")]
            grows.append(tuple(row))
        head = ["series", "n"]
        for name in gred:
            head += [f"{name} states", "CPU-s"]
        table(f"growth under linux-5.9 (each search limited to {secs:g}s)", head, grows)
    # 5. sequential runs with large folios
    from cowlab.catalog import cow_c
    from cowlab.run import run_sequential
    srows = []
    for nr in ((64, 256) if a.full else (64,)):
        cases = cow_c.cases(["pte-thp", "thp-swap"], nr=nr)
        row = [nr, len(cases)]
        for checks in (True, False):
            gc.collect()
            c0 = time.process_time()
            steps = sum(run_sequential(CowModel(c, designs.load("linux-6.18"), check_invariants=checks)).steps
                        for c in cases)
            row += [f"{steps:,}", f"{time.process_time() - c0:.2f}"]
        srows.append(tuple(row))
    table("sequential cow.c THP tests (pte-thp, thp-swap) under linux-6.18", ("subpages", "cases", "steps",
          "CPU-s (checks on)", "steps", "CPU-s (checks off)"), srows)
    # 6. Spin end to end
    import shutil
    if a.skip_spin:
        pass
    elif shutil.which("spin") and shutil.which("gcc"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_spin
        print("\nSpin end to end on the two Promela races (benchmarks/bench_spin.py)")
        bench_spin.print_table(bench_spin.rows(runs=3))
    else:
        print("\nSpin end to end: skipped (spin or gcc not installed: apt-get install spin gcc)")
    print(f"\nbenchmark wall time {time.perf_counter() - t_all:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
