"""Exploration benchmark (run on demand: `python benchmarks/bench_explore.py`).

Explores every race case under every design and prints states, transitions,
time and states/s; and, in the same run, a flat-tuple BFS over a trivial
model as the Python baseline, so figures are ratios measured side by side on
this (shared, noisy) machine."""
from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table

from explore import flat_bfs  # benchmarks/explore.py beside this file (it puts the checkout on sys.path)

from cowlab import catalog, designs  # noqa: E402
from cowlab.explore import explore
from cowlab.model import CowModel


def trivial_bfs(n=60):
    """BFS over a 3-counter grid with flat tuple states (the baseline), wall-clock seconds."""
    return flat_bfs(n, clock=time.perf_counter)


PAIRS = [("race-fork-gup-fast", "race-reclaim-pin"), ("race-thp-split", "race-swapin-mapcount")]


def main():
    from cowlab.scenario import combine
    con = Console()
    tab = Table(title="race catalog x designs, breadth-first: plain search vs partial-order reduction (POR)")
    for c in ("case", "design", "states", "POR states", "saved", "symmetry states", "saved", "seconds", "states/s",
              "found", "same verdicts"):
        tab.add_column(c)
    tot_s = tot_t = 0
    sym = [0, 0]
    t0 = time.perf_counter()
    for case in [c for c in catalog.all_cases() if "race" in c.tags]:
        for d in designs.names():
            m = CowModel(case, designs.load(d))
            r, p, y = explore(m), explore(m, por=True), explore(m, symmetry=True)
            tot_s += r.states
            tot_t += r.seconds
            sym[0] += r.states
            sym[1] += y.states
            tab.add_row(case.id, d, str(r.states), str(p.states), f"{1 - p.states / r.states:.0%}", str(y.states),
                        f"{1 - y.states / r.states:.0%}", f"{r.seconds:.3f}",
                        f"{r.states / max(r.seconds, 1e-9):,.0f}", " ".join(sorted(r.found)) or "-",
                        str(set(r.found) == set(p.found) == set(y.found)))
    wall = time.perf_counter() - t0
    con.print(tab)
    con.print(f"whole race catalog x {len(designs.names())} designs, plain, POR and symmetry: {wall:.2f}s wall; "
              f"symmetry over page frames and swap slots: {sym[0]} -> {sym[1]} states "
              f"({1 - sym[1] / sym[0]:.1%} fewer)")
    pt = Table(title="two independent process families in one scenario (several processes and pages)")
    for c in ("cases", "design", "states", "POR states", "ratio", "seconds", "POR seconds", "same verdicts"):
        pt.add_column(c)
    for a, b in PAIRS:
        case = combine(f"{a}+{b}", "pair", catalog.get(a), catalog.get(b))
        for d in ("linux-5.9", "linux-5.19"):
            m = CowModel(case, designs.load(d))
            r, p = explore(m), explore(m, por=True)
            pt.add_row(f"{a} + {b}", d, str(r.states), str(p.states), f"{r.states / p.states:.1f}x",
                       f"{r.seconds:.1f}", f"{p.seconds:.2f}", str(set(r.found) == set(p.found)))
    con.print(pt)
    bs, bt = trivial_bfs()
    rate = tot_s / tot_t
    con.print(f"plain search over the race catalog: {tot_s} states, {rate:,.0f} states/s")
    con.print(f"flat-tuple BFS baseline (trivial model): {bs} states in {bt:.2f}s = {bs / bt:,.0f} states/s; "
              f"cowlab runs at {rate / (bs / bt):.3f}x the baseline")


if __name__ == "__main__":
    sys.exit(main())
