"""What a large folio costs the model (run on demand: `python benchmarks/folio_size.py [repeats]`).

Side by side in one run, on this machine: a base page, a 2 MiB folio (512 subpages, the kernel's geometry)
mapped by a PMD, and the same folio mapped by 512 ptes (as a PTE-mapped THP or an mTHP is).  Each scenario maps
its memory, writes it, forks, and the child reads its first page.  For the state just before that read: its
pickle size, and the time of one model step (the child's read, with the model's invariants on and off; the
invariants walk every pte and subpage) -- the median of ``repeats`` runs of the same step.  Ratios are against
the base page.  Finally the profile of the PTE-mapped step says where the time goes."""
from __future__ import annotations

import cProfile
import io
import os
import pickle
import pstats
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cowlab import designs  # noqa: E402
from cowlab.model import CowModel  # noqa: E402
from cowlab.scenario import Script  # noqa: E402

NR = 512


def scenario(kind: str):
    if kind == "base page":
        s = Script(kind.replace(" ", "-"), pages=1)
        n = 1
    else:
        s = Script(kind.replace(" ", "-"), pages=NR, hpage_pmd_nr=NR)
        n = NR
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=n, thp=n > 1)
    p.write(0, pages=n)
    if kind == "2 MiB folio, 512 ptes":
        p.split_pmd(0)
    p.fork(c)
    c.read(0)
    c.exit()
    return s.build()


def state_before_child_read(m):
    """Run the schedule until the child's thread is about to read (its first step after the fork)."""
    s = m.init_state()
    child = m.case.threads.index(next(t for t in m.case.threads if t.name == "child"))
    while True:
        t = s.threads[child]
        if t.pc < len(m.ops[child]) and m.ops[child][t.pc].name == "read" and not t.stack and \
                m.step(s, child) is not None:
            return s, child
        s = next(tr for tid in range(m.nthreads) if (tr := m.step(s, tid)) is not None).state


def step_time(m, s, tid, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m.step(s, tid)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    d = designs.load("linux-6.18")
    rows = []
    for kind in ("base page", "2 MiB folio, PMD", "2 MiB folio, 512 ptes"):
        case = scenario(kind)
        m = CowModel(case, d)
        s, tid = state_before_child_read(m)
        size = len(pickle.dumps(s))
        on = step_time(m, s, tid, repeats)
        off = step_time(CowModel(case, d, check_invariants=False), s, tid, repeats)
        rows.append((kind, size, on, off, m, s, tid))
    base = rows[0]
    print(f"{'':24} {'pickle bytes':>12} {'x base':>8} {'step ms':>9} {'x base':>8} {'no-inv ms':>10} {'x base':>8}")
    for kind, size, on, off, *_ in rows:
        print(f"{kind:24} {size:12,} {size / base[1]:8.1f} {on * 1e3:9.3f} {on / base[2]:8.1f} {off * 1e3:10.3f} "
              f"{off / base[3]:8.1f}")
    kind, size, on, off, m, s, tid = rows[2]
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeats):
        m.step(s, tid)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(8)
    print(f"\nwhere a step of '{kind}' spends its time (tottime, {repeats} steps):")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip()
                    and not line.startswith(("   Ordered", "         ")))[:3000])


if __name__ == "__main__":
    main()
