"""``cowlab plots``: pictures of two measurements (matplotlib, PNG and SVG).

1. Unnecessary COWs per design as background reference load grows: a
   process takes write faults on pages made R/O (fork + child exit,
   mprotect) while 0..N background agents on other CPUs take speculative
   references, push pages into the swap cache (reclaim) and leave fresh
   pages in LRU batches; seeded random schedules; mean and 95% interval.
2. State-space size of the race catalog with and without each reduction
   (partial-order reduction, symmetry), and of a two-family scenario.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

from . import catalog, designs
from .explore import explore
from .model import CowModel
from .scenario import Script
from .schedule import random_walk
from .verdict import UNNECESSARY

PLOT_DESIGNS = ("linux-5.7", "linux-5.9", "linux-5.18", "linux-5.19", "linux-6.18", "rfc-mapcount")


def workload(load: int):
    """The write-fault workload with ``load`` background agents."""
    s = Script(f"load-{load}", f"write faults with {load} background agents", pages=2)
    s.process("parent")
    s.process("child")
    main = [("mmap", {"addr": 0, "pages": 2}), ("write", {"addr": 0}), ("write", {"addr": 1}),
            ("fork", {"child": "child"}), ("write", {"addr": 0}), ("mprotect", {"addr": 1, "prot": "r"}),
            ("mprotect", {"addr": 1, "prot": "rw"}), ("write", {"addr": 1}), ("write", {"addr": 0})]
    s.thread("parent", main, name="parent.main")
    s.thread("child", [("exit", {})], name="child.main")
    kinds = [[("speculative_get", {"addr": 0}), ("speculative_put", {})] * 3,
             [("pageout", {"addr": 1})] * 2,
             [("speculative_get", {"addr": 1}), ("speculative_put", {})] * 3,
             [("speculative_get", {"addr": 0}), ("speculative_put", {}), ("lru_add_drain", {})] * 2]
    for i in range(load):
        s.thread("parent", kinds[i % len(kinds)], name=f"parent.cpu{i + 1}")
    return s.build()


def walk_unnecessary(model, rng: random.Random, max_steps: int = 3000) -> int:
    """Unnecessary COWs on one seeded random schedule."""
    return sum(1 for tr in random_walk(model, rng, max_steps) for e in tr.events if e.kind == UNNECESSARY)


def unnecessary_vs_load(loads=(0, 1, 2, 3, 4), walks: int = 40, seed: int = 1) -> dict:
    out = {}
    for d in PLOT_DESIGNS:
        rows = []
        for load in loads:
            m = CowModel(workload(load), designs.load(d))
            xs = [walk_unnecessary(m, random.Random(seed * 100003 + load * 1009 + w)) for w in range(walks)]
            mean = sum(xs) / len(xs)
            sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / max(1, len(xs) - 1))
            rows.append((load, mean, 1.96 * sd / math.sqrt(len(xs))))
        out[d] = rows
    return out


def state_space() -> list:
    from .catalog.races import two_families
    rows = []
    cases = [c for c in catalog.all_cases() if "race" in c.tags] + [two_families()]
    for c in cases:
        tot = [0, 0, 0]
        for d in ("linux-5.9", "linux-5.19", "rfc-mapcount"):
            m = CowModel(c, designs.load(d))
            tot[0] += explore(m).states
            tot[1] += explore(m, por=True).states
            tot[2] += explore(m, symmetry=True).states
        rows.append((c.id, *tot))
    return rows


def make(out_dir: str = "plots", walks: int = 40, seed: int = 1) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    data = unnecessary_vs_load(walks=walks, seed=seed)
    fig, ax = plt.subplots(figsize=(8, 5))
    markers = "osD^vx"
    for i, (d, rows) in enumerate(data.items()):
        xs = [r[0] + (i - 2.5) * 0.04 for r in rows]
        ys = [r[1] for r in rows]
        ci = [r[2] for r in rows]
        ax.errorbar(xs, ys, yerr=ci, marker=markers[i % len(markers)], capsize=3, label=d,
                    linestyle="-" if i % 2 == 0 else "--")
    ax.set_xticks([r[0] for r in next(iter(data.values()))])
    ax.set_xlabel("background agents (speculative refs, reclaim to the swap cache, LRU drains)")
    ax.set_ylabel("unnecessary COWs per run (mean, 95% interval)")
    ax.set_title(f"Unnecessary COW vs background reference load ({walks} seeded random schedules per point)")
    ax.legend()
    ax.grid(alpha=.3)
    for ext in ("png", "svg"):
        f = out / f"unnecessary_vs_load.{ext}"
        fig.savefig(f, dpi=120, bbox_inches="tight")
        files.append(f)
    plt.close(fig)
    rows = state_space()
    fig, ax = plt.subplots(figsize=(9, 5))
    w = 0.27
    for i, (label, col) in enumerate((("plain", 1), ("partial-order reduction", 2), ("symmetry (pages)", 3))):
        ax.bar([k + (i - 1) * w for k in range(len(rows))], [r[col] for r in rows], w, label=label)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r[0] for r in rows], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("states (sum over linux-5.9, linux-5.19, rfc-mapcount)")
    ax.set_title("State-space size with and without each reduction")
    ax.legend()
    for ext in ("png", "svg"):
        f = out / f"state_space.{ext}"
        fig.savefig(f, dpi=120, bbox_inches="tight")
        files.append(f)
    plt.close(fig)
    return files
