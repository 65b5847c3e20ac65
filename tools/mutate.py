"""Mutation testing of the designs (issue 11 item 5): does the catalog kill seeded design bugs?

    python tools/mutate.py [--format json] [--jobs N] [--mutant NAME ...] [--case ID ...] [--list]

Every mutant of ``tools/mutants.py`` (a built-in design with one hook or
attribute overridden) runs every catalog case as ``cowlab matrix`` runs it
(a sequential run, or every interleaving of a race case), and so does each
unmutated design it derives from.  A case **kills** a mutant when its
verdicts differ from the unmutated design's on that case: the missed /
unnecessary / wrong counts, the status (complete / inconclusive), or for a
cow.c case the selftest verdict (pass / fail / xfail); a run cut short by
a ModelBug or a crash has no verdict to compare.  A mutant that no verdict
kills but whose runs hit a model bug, an invariant failure or a crash is
"caught only by the model's own checks" and listed apart.  A mutant
declared equivalent (its argument is in its definition) must not be killed: a kill refutes the argument and is reported.

The mutation score is killed (by a verdict or by the model's checks) over
non-equivalent mutants.  Exit status: 0 when every non-equivalent mutant is
killed and no equivalence claim is refuted, 1 otherwise, 2 when the run was
interrupted (what was covered is printed, and the result is inconclusive).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _p in (str(_ROOT), str(_ROOT / "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from cowlab import catalog, designs
from cowlab.matrix import explore_result
from cowlab.model import CowModel
from cowlab.run import run_sequential
from cowlab.selftest import judge

import mutants as _mutants

KINDS = ("missed", "unnecessary", "wrong")


def _design(spec: str):
    if spec in _mutants.MUTANTS:
        return _mutants.MUTANTS[spec]()
    return designs.load(spec)


def run_one(case_id: str, design_spec: str) -> dict:
    """One case under one design (built-in or mutant), as ``cowlab matrix``'s
    run_unit() runs it, reduced to what is compared.  Never raises: a crash
    of the model is a result (``crash``)."""
    c = catalog.get(case_id)
    out = {"case": case_id, "design": design_spec, "crash": None, "bugs": []}
    try:
        d = _design(design_spec)
        r = explore_result(c, d) if "race" in c.tags else run_sequential(CowModel(c, d))
    except Exception as e:  # a crash under a mutant is a finding, not the tool's failure
        tb = traceback.extract_tb(e.__traceback__)[-1]
        out["crash"] = f"{type(e).__name__}: {e} ({Path(tb.filename).name}:{tb.lineno})"
        return out
    out["bugs"] = list(r.bugs)
    out["reason"] = r.reason
    # a run cut short by a ModelBug has no verdict of its own to compare
    out["stopped"] = r.reason == "model bug"
    out["verdict"] = {"status": r.status, **{k: r.outcomes[k] for k in KINDS}}
    if "cow.c" in c.tags:
        out["verdict"]["selftest"] = judge(c, r)
    return out


def _run_all(units, jobs, progress=None):
    """Run (case, design) units, in a process pool when jobs > 1.  Returns
    (results, interrupted)."""
    results = []
    try:
        if jobs > 1 and len(units) > 50:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(jobs) as pool:
                for r in pool.map(run_one, *zip(*units), chunksize=16):
                    results.append(r)
                    if progress:
                        progress(len(results), len(units))
        else:
            for u in units:
                results.append(run_one(*u))
                if progress:
                    progress(len(results), len(units))
    except KeyboardInterrupt:
        return results, True
    return results, False


def _differs(base: dict, mut: dict) -> list:
    """The verdict fields in which the mutant's clean run differs."""
    bv, mv = base["verdict"], mut["verdict"]
    return [f"{k} {bv.get(k)}->{mv.get(k)}" for k in bv if bv.get(k) != mv.get(k)]


def evaluate(mutant_names=None, case_ids=None, jobs=1, progress=None) -> dict:
    """Run the mutants (default: all) and their base designs on the cases
    (default: the whole catalog) and classify each mutant."""
    names = list(mutant_names or _mutants.MUTANTS)
    unknown = [n for n in names if n not in _mutants.MUTANTS]
    if unknown:
        raise SystemExit(f"mutate: unknown mutant {', '.join(unknown)} (see --list)")
    cases = list(case_ids or catalog.ids())
    for c in cases:
        catalog.get(c)            # unknown case: CatalogError with a hint
    bases = sorted({_mutants.MUTANTS[n].base_name for n in names}, key=designs.names().index)
    units = [(c, d) for d in bases + names for c in cases]
    t0 = time.perf_counter()
    results, interrupted = _run_all(units, jobs, progress)
    seconds = time.perf_counter() - t0
    got = {(r["design"], r["case"]): r for r in results}

    base_problems = [f"{r['design']} / {r['case']}: " + (r["crash"] or "; ".join(r["bugs"]))
                     for r in results if r["design"] in bases and (r["crash"] or r["bugs"])]
    out = []
    for n in names:
        cls = _mutants.MUTANTS[n]
        killed_by, why, checks, complete = [], {}, {}, True
        for c in cases:
            b, m = got.get((cls.base_name, c)), got.get((n, c))
            if b is None or m is None:
                complete = False
                continue
            if b["crash"] or b["bugs"]:
                continue          # no clean reference run to compare with (listed in base_problems)
            if m["crash"]:
                checks[c] = "crash: " + m["crash"]
                continue
            if m["bugs"]:
                checks[c] = ("model bug: " if m["stopped"] else "invariant: ") + m["bugs"][0]
            if not m["stopped"]:
                d = _differs(b, m)
                if d:
                    killed_by.append(c)
                    why[c] = ", ".join(d) + (f" ({m['reason']})" if m["reason"] else "")
        equivalent = cls.equivalent
        if killed_by:
            status = "refuted" if equivalent else "killed"
        elif checks:
            status = "checks"
        elif not complete:
            status = "unknown"
        else:
            status = "equivalent" if equivalent else "survived"
        out.append({"name": n, "design": cls.base_name, "hook": cls.hook,
                    "killed": bool(killed_by or checks), "killed_by": killed_by,
                    "equivalent": equivalent, "status": status,
                    "caught_by_checks": sorted(checks), "why": why, "checks": checks,
                    "doc": " ".join((cls.__doc__ or "").split())})
    non_eq = [m for m in out if not m["equivalent"]]
    by_verdict = sum(m["status"] == "killed" for m in non_eq)
    by_checks = sum(m["status"] == "checks" for m in non_eq)
    summary = {"mutants": len(out), "non_equivalent": len(non_eq),
               "killed_by_verdict": by_verdict, "caught_only_by_checks": by_checks,
               "survived": [m["name"] for m in non_eq if m["status"] == "survived"],
               "equivalent": sum(m["status"] == "equivalent" for m in out),
               "refuted_equivalent": [m["name"] for m in out if m["status"] == "refuted"],
               "score": f"{by_verdict + by_checks}/{len(non_eq)}",
               "cases": len(cases), "runs": len(results), "seconds": round(seconds, 1),
               "status": "inconclusive" if interrupted or len(results) < len(units) else "complete"}
    if interrupted:
        summary["note"] = f"interrupted after {len(results)} of {len(units)} runs"
    return {"mutants": out, "summary": summary, "base_problems": base_problems}


def _text(rep: dict) -> str:
    lines = []
    w = max(len(m["name"]) for m in rep["mutants"])
    for m in rep["mutants"]:
        if m["status"] == "killed":
            ks = m["killed_by"]
            what = f"killed by {len(ks)}: " + ", ".join(ks[:4]) + (" ..." if len(ks) > 4 else "")
            what += f"  [{ks[0]}: {m['why'][ks[0]]}]"
        elif m["status"] == "checks":
            c = m["caught_by_checks"]
            what = (f"CAUGHT ONLY BY THE MODEL'S OWN CHECKS ({len(c)}): {', '.join(c[:3])}"
                    f"  [{m['checks'][c[0]][:120]}]")
        elif m["status"] == "equivalent":
            what = "equivalent: " + m["equivalent"][:90] + ("..." if len(m["equivalent"]) > 90 else "")
        elif m["status"] == "refuted":
            what = f"CLAIMED EQUIVALENT BUT KILLED by {', '.join(m['killed_by'][:4])}"
        elif m["status"] == "unknown":
            what = "unknown (runs missing)"
        else:
            what = "SURVIVED every case"
        lines.append(f"{m['name']:<{w}}  {what}")
    s = rep["summary"]
    lines.append("")
    if s["status"] != "complete":
        lines.append("INCONCLUSIVE: not every run was done; mutants with missing runs are 'unknown'")
    lines.append(f"mutation score (killed / non-equivalent): {s['score']} = {s['killed_by_verdict']} by a verdict"
                 f" + {s['caught_only_by_checks']} caught only by the model's own checks; "
                 f"equivalent: {s['equivalent']}; survived: {', '.join(s['survived']) or 'none'}")
    if s["refuted_equivalent"]:
        lines.append(f"equivalence refuted: {', '.join(s['refuted_equivalent'])}")
    if rep["base_problems"]:
        lines.append("unmutated designs with model bugs or crashes (cases not compared): "
                     + "; ".join(rep["base_problems"][:5]))
    lines.append(f"{s['runs']} runs over {s['cases']} cases in {s['seconds']} s; {s['status']}"
                 + (f" ({s['note']})" if s.get("note") else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/mutate.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", choices=("text", "json"), default="text")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    ap.add_argument("--mutant", action="append", help="only this mutant (repeatable)")
    ap.add_argument("--case", action="append", help="only this catalog case (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    a = ap.parse_args(argv)
    if a.list:
        for n, cls in _mutants.MUTANTS.items():
            eq = "  (equivalent)" if cls.equivalent else ""
            print(f"{n}  [{cls.hook}]{eq}: {' '.join((cls.__doc__ or '').split())}")
        return 0
    if a.jobs < 1:
        ap.error("--jobs must be at least 1")
    try:
        rep = evaluate(a.mutant, a.case, a.jobs,
                       progress=None if a.format == "json" or not sys.stderr.isatty() else
                       lambda i, n: print(f"\r{i}/{n} runs", end="", file=sys.stderr, flush=True))
    except catalog.CatalogError as e:
        print(f"mutate: {e}", file=sys.stderr)
        return 2
    if a.format == "json":
        print(json.dumps(rep, indent=1))
    else:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(_text(rep))
    s = rep["summary"]
    if s["status"] != "complete":
        return 2
    return 0 if not s["survived"] and not s["refuted_equivalent"] else 1


if __name__ == "__main__":
    sys.exit(main())
