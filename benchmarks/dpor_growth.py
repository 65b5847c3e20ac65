"""DPOR on the growth cases, side by side with another checkout (run on demand, not in CI):

    python benchmarks/dpor_growth.py                          # this checkout
    git worktree add --detach /tmp/base <commit>
    python benchmarks/dpor_growth.py --against /tmp/base      # and that one, pair by pair

Each search runs in a process of its own (a search's garbage would otherwise
slow the next one's collections), the two checkouts alternating row by row,
so the CPU seconds are comparable within a row on this shared, noisy machine;
MB is the growth of the process's peak resident set during the search(es).
Rows: DPOR under linux-5.9 on threads 3, 4, 5 (``benchmarks.explore.threads_case``),
threads 2 and 3 with a reclaim thread, 2 threads on 3 pages with reclaim,
4 processes (``procs_case``), the two-family case, and the single-family race
catalog (every race case x design, summed). The figures of the README's
"Measured at stop 25" came from these searches.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROWS = ["threads 3", "threads 4", "threads 5", "threads 2 + reclaim", "threads 3 + reclaim",
        "pages 3 + reclaim (2 threads)", "processes 4", "two-family", "race catalog"]


def one(row: str, seconds: float) -> dict:
    """The DPOR search(es) of one row, in this process (whose sys.path is the checkout's)."""
    from benchmarks.explore import procs_case, threads_case, two_family
    from cowlab import catalog, designs
    from cowlab.explore import Limits, explore
    from cowlab.model import CowModel
    lim = Limits(max_seconds=seconds)
    if row == "race catalog":
        cases = [(c, d) for c in catalog.all_cases() if "race" in c.tags for d in designs.names()]
    else:
        make = {"threads 3": lambda: threads_case(3), "threads 4": lambda: threads_case(4),
                "threads 5": lambda: threads_case(5), "threads 2 + reclaim": lambda: threads_case(2, reclaim=True),
                "threads 3 + reclaim": lambda: threads_case(3, reclaim=True),
                "pages 3 + reclaim (2 threads)": lambda: threads_case(2, reclaim=True, pages=3),
                "processes 4": lambda: procs_case(4), "two-family": two_family}[row]
        cases = [(make(), "linux-5.9")]
    states, status, kinds = 0, "complete", {}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.process_time()
    for c, d in cases:
        r = explore(CowModel(c, designs.load(d)), limits=lim, dpor=True)
        states += r.states
        if r.status != "complete":
            status = r.status
        for k, v in r.incidents.items():
            kinds[k.value] = kinds.get(k.value, 0) + len(v)
    return {"states": states, "cpu": time.process_time() - t, "status": status, "incidents": kinds,
            "mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024}


def run_in(root: str, row: str, seconds: float) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", row, "--root", root,
                          "--seconds", str(seconds)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv=None) -> int:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", metavar="CHECKOUT", help="another checkout to run side by side")
    ap.add_argument("--seconds", type=float, default=60.0, help="time limit of each search")
    ap.add_argument("--rows", nargs="*", default=ROWS, choices=ROWS, metavar="ROW")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=here, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        sys.path.insert(0, a.root)
        print(json.dumps(one(a.one, a.seconds)))
        return 0
    from rich.console import Console
    from rich.table import Table
    roots = [("this checkout", here)] + ([("against", os.path.abspath(a.against))] if a.against else [])
    table = Table(title=f"DPOR under linux-5.9, one process per search, {a.seconds:g} s limit")
    table.add_column("case")
    for name, root in roots:
        table.add_column(f"{name}: states (CPU-s, MB)", justify="right")
    table.add_column("same incidents" if a.against else "incidents")
    for row in a.rows:
        res = [run_in(root, row, a.seconds) for _, root in roots]
        cells = [f"{r['states']:,} ({r['cpu']:.1f}, {r['mb']:.0f})" + ("" if r["status"] == "complete" else
                                                                         f" {r['status']}") for r in res]
        last = str(all(r["incidents"] == res[0]["incidents"] for r in res)) if a.against else str(res[0]["incidents"])
        table.add_row(row, *cells, last)
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
