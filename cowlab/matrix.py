"""The seed's table, computed: for every design, whether missed /
unnecessary / wrong COW occurs in the catalog and the shortest case that
shows it; and the case x design grid underneath.

A "no" in the table is a claim about every case: it is made only when every
case under that design was computed and complete.  An outcome no computed
run shows, under a design with a run inconclusive or never computed (a limit,
stuck threads, Ctrl-C), is unknown (``occurs`` null), never "no"."""
from __future__ import annotations

from dataclasses import dataclass

from . import catalog, designs
from .model import CowModel
from .run import Result, run_sequential
from .verdict import VERDICTS

KINDS = VERDICTS        # missed, unnecessary, wrong: the table's columns


@dataclass
class Matrix:
    designs: list
    cases: list
    results: list          # Result
    complete: bool = True
    note: str = ""
    interrupted: bool = False      # Ctrl-C: the runs after the ones in ``results`` were never computed

    def table(self) -> list[dict]:
        rows = []
        for d in self.designs:
            row = {"design": d.label, "kernel": d.kernel}
            mine = [r for r in self.results if r.design == d.label]
            settled = {c.id for c in self.cases} <= {r.case for r in mine if r.status == "complete"}
            for kind in KINDS:
                hits = [r for r in mine if r.outcomes[kind] > 0]
                if hits:
                    w = min(hits, key=lambda r: (_witness_len(r, kind), r.case))
                    row[kind] = {"occurs": True, "witness": w.case, "steps": _witness_len(w, kind),
                                 "cases": len(hits)}
                else:
                    row[kind] = {"occurs": False if settled else None, "witness": None}
            rows.append(row)
        return rows

    def as_json(self) -> dict:
        return {"results": [r.as_json() for r in self.results], "table": self.table(),
                "designs": [{"name": d.label, "kernel": d.kernel, "summary": d.summary, "sources": list(d.sources),
                             "settings": d.settings} for d in self.designs],
                "cases": [{"id": c.id, "title": c.title, "source": c.source} for c in self.cases],
                "status": "complete" if self.complete else "inconclusive", "note": self.note,
                "interrupted": self.interrupted}


def _witness_len(r: Result, kind: str) -> int:
    """Steps until the first counted incident of that kind."""
    return next((i + 1 for i, k, _ in r.events if k == kind), r.steps)


def explore_result(case, design, limits=None) -> Result:
    """A race case is explored (every interleaving) rather than run once."""
    from .explore import Limits, explore
    model = CowModel(case, design)
    rep = explore(model, limits or Limits(max_seconds=120), por=True, expect_stuck=case.expect_stuck)
    events = sorted((w.depth - 1, k, w.text) for k, w in rep.found.items())
    r = Result(case.id, design.name, rep.outcomes(VERDICTS), rep.status, rep.reason, rep.depth, {}, events,
               [b for b, _ in rep.bugs])
    r.explored = {"states": rep.states, "transitions": rep.transitions, "seconds": round(rep.seconds, 3)}
    if rep.reason.startswith("interrupted"):      # the explorer took the Ctrl-C: the whole sweep stops
        raise Interrupted(r)
    return r


class Interrupted(KeyboardInterrupt):
    """Ctrl-C inside one unit; ``args[0]`` is that unit's (inconclusive) result."""


def run_unit(case_spec: str, design_spec: str, settings: tuple) -> Result:
    """One self-contained, picklable unit of work (case x design x settings)."""
    c = catalog.get(case_spec)
    d = designs.load(design_spec, dict(settings) or None)
    return explore_result(c, d) if "race" in c.tags else run_sequential(CowModel(c, d))


def compute(design_specs=None, case_ids=None, settings=None, progress=None, jobs: int = 1) -> Matrix:
    """Every case under every design.  A design spec is a name, a kernel version or a file, with
    settings of its own (``rfc-mapcount:page_lock=true``) or as a pair (spec, {setting: value});
    ``settings`` apply to every design.  One design with different settings is two columns,
    named by ``Design.label``."""
    pairs = [(x, {}) if isinstance(x, str) else (x[0], dict(x[1])) for x in (design_specs or designs.names())]
    ds, dspecs = [], []
    for spec, own in pairs:
        d = designs.load(spec, {**(settings or {}), **own} or None)
        if any(x.label == d.label for x in ds):
            continue                     # the same design twice (``-d 6.6 -d linux-6.5``): one column
        ds.append(d)
        dspecs.append((spec, tuple(sorted({k: d.settings[k] for k in {**(settings or {}), **own}}.items()))))
    cs = [catalog.get(c) for c in case_ids] if case_ids else catalog.all_cases()
    cspecs = list(case_ids) if case_ids else [c.id for c in cs]
    m = Matrix(ds, cs, [])
    units = [(cspec, dspec, sets) for cspec in cspecs for dspec, sets in dspecs]
    labels = [d.label for _ in cspecs for d in ds]
    # Ctrl-C reaches the worker processes too: ``Interrupted`` from a worker or here carries that unit's
    # partial result; a plain KeyboardInterrupt (between units, or in the pool's plumbing) carries none
    try:
        if jobs > 1 and len(units) > 50:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(jobs) as pool:
                for r in pool.map(run_unit, *zip(*units), chunksize=16):
                    r.design = labels[len(m.results)]
                    m.results.append(r)
                    if progress:
                        progress()
        else:
            for u in units:
                r = run_unit(*u)
                r.design = labels[len(m.results)]
                m.results.append(r)
                if progress:
                    progress()
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted) and e.args and isinstance(e.args[0], Result):
            e.args[0].design = labels[len(m.results)]
            m.results.append(e.args[0])
        m.complete = False
        m.interrupted = True
        done = sum(1 for r in m.results if r.status == "complete")
        m.note = (f"interrupted after {len(m.results)} of {len(units)} runs ({done} complete); the outcomes "
                  f"of the rest are unknown")
    if any(r.status != "complete" for r in m.results):
        m.complete = False
    return m
