"""Exploration benchmark (run on demand: `python benchmarks/bench_explore.py`).

Explores every race case under every design and prints states, transitions,
time and states/s; and, in the same run, a flat-tuple BFS over a trivial
model as the Python baseline, so figures are ratios measured side by side on
this (shared, noisy) machine."""
from __future__ import annotations

import sys
import time
from collections import deque

from rich.console import Console
from rich.table import Table

from cowlab import catalog, designs
from cowlab.explore import explore
from cowlab.model import CowModel


def trivial_bfs(n=60):
    """BFS over a 3-counter grid with flat tuple states (the baseline)."""
    start = (0, 0, 0)
    seen = {start}
    q = deque([start])
    t = time.perf_counter()
    while q:
        s = q.popleft()
        for i in range(3):
            if s[i] < n:
                ns = s[:i] + (s[i] + 1,) + s[i + 1:]
                if ns not in seen:
                    seen.add(ns)
                    q.append(ns)
    return len(seen), time.perf_counter() - t


def main():
    con = Console()
    tab = Table(title="race catalog x designs, breadth-first, no reduction")
    for c in ("case", "design", "states", "transitions", "seconds", "states/s", "found"):
        tab.add_column(c)
    tot_s = tot_t = 0
    t0 = time.perf_counter()
    for case in [c for c in catalog.all_cases() if "race" in c.tags]:
        for d in designs.names():
            r = explore(CowModel(case, designs.load(d)))
            tot_s += r.states
            tot_t += r.seconds
            tab.add_row(case.id, d, str(r.states), str(r.transitions), f"{r.seconds:.3f}",
                        f"{r.states / max(r.seconds, 1e-9):,.0f}", " ".join(sorted(r.found)) or "-")
    wall = time.perf_counter() - t0
    con.print(tab)
    bs, bt = trivial_bfs()
    rate = tot_s / tot_t
    con.print(f"whole race catalog x {len(designs.names())} designs: {wall:.2f}s wall, {tot_s} states, "
              f"{rate:,.0f} states/s")
    con.print(f"flat-tuple BFS baseline (trivial model): {bs} states in {bt:.2f}s = {bs / bt:,.0f} states/s; "
              f"cowlab runs at {rate / (bs / bt):.3f}x the baseline")


if __name__ == "__main__":
    sys.exit(main())
