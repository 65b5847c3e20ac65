"""Sweeps and swarms on Dask distributed (the optional extra ``cowlab[cluster]``).

    python -m cowlab.cluster sweep [--scheduler ADDRESS] [--store FILE] [--case ID ...] [--design NAME ...]
    python -m cowlab.cluster swarm CASE --design NAME [--members N] [--seed S] [--scheduler ADDRESS] [--store FILE]

* a **sweep** runs units of ``cowlab matrix`` (case x design x settings; the
  unit is ``matrix.run_unit``, picklable) as Dask tasks and prints the same
  table as ``cowlab matrix``;
* a **swarm** runs diversified randomized depth-first searches of one case
  (``explore.swarm.randomized_dfs``: a seed and a depth bound per member) as
  tasks and unions what they find.

With no ``--scheduler`` a local cluster is started (``--workers``, default 2,
one thread each, separate processes).  With ``--scheduler tcp://host:8786``
the tasks go to a running ``dask scheduler`` whose workers can import cowlab
(install it on each, or start them with ``PYTHONPATH`` at a checkout).

Results stream into an SQLite store (``--store``, default
``cowlab-cluster.sqlite``) as each task finishes: one row per unit (sweep) or
per member (swarm), written by this process only, keyed by the unit, with
``INSERT OR IGNORE``.  A run that stops (Ctrl-C, a crash) is resumed by
running the same command again: units already in the store are not run again.
A task whose worker dies is rescheduled by the Dask scheduler on another
worker (and a task that raises is retried, ``retries``); since only this
process writes and the key is the unit, a task computed twice is stored --
and counted -- once.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sqlite3
import sys

from . import catalog, designs
from .matrix import KINDS, Matrix, run_unit

#: the depth bounds swarm members cycle through (Holzmann's swarm varies them)
DEPTHS = (40, 80, 160, 320)


def _require():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise SystemExit("cowlab.cluster needs Dask distributed: pip install 'cowlab[cluster]' "
                         "(or pip install 'dask[distributed]')") from None


class Store:
    """The SQLite store results stream into (see the module doc)."""

    def __init__(self, path: str):
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS sweep (case_id TEXT, design TEXT, settings TEXT, status TEXT,
                outcomes TEXT, result BLOB, PRIMARY KEY (case_id, design, settings));
            CREATE TABLE IF NOT EXISTS swarm (case_id TEXT, design TEXT, settings TEXT, seed INTEGER,
                depth INTEGER, status TEXT, found TEXT, states INTEGER, result TEXT,
                PRIMARY KEY (case_id, design, settings, seed, depth));
        """)

    def close(self):
        self.db.close()

    # sweep rows
    def sweep_done(self) -> set:
        return {(c, d, s) for c, d, s in self.db.execute("SELECT case_id, design, settings FROM sweep")}

    def put_unit(self, unit, result) -> bool:
        c, d, settings = unit
        cur = self.db.execute("INSERT OR IGNORE INTO sweep VALUES (?, ?, ?, ?, ?, ?)",
                              (c, d, json.dumps(settings), result.status, json.dumps(result.outcomes),
                               pickle.dumps(result)))
        self.db.commit()
        return cur.rowcount == 1

    def results(self, units) -> dict:
        want = {(c, d, json.dumps(s)) for c, d, s in units}
        out = {}
        for c, d, s, blob in self.db.execute("SELECT case_id, design, settings, result FROM sweep"):
            if (c, d, s) in want:
                out[(c, d, s)] = pickle.loads(blob)
        return out

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    # swarm rows
    def swarm_done(self, case, design, settings) -> set:
        return {(seed, depth) for seed, depth in self.db.execute(
            "SELECT seed, depth FROM swarm WHERE case_id=? AND design=? AND settings=?",
            (case, design, json.dumps(settings)))}

    def put_member(self, case, design, settings, seed, depth, member: dict) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO swarm VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (case, design, json.dumps(settings), seed, depth, member["status"],
                               json.dumps(sorted(member["found"])), member["states"], json.dumps(member)))
        self.db.commit()
        return cur.rowcount == 1

    def members(self, case, design, settings) -> list:
        return [json.loads(r) for (r,) in self.db.execute(
            "SELECT result FROM swarm WHERE case_id=? AND design=? AND settings=? ORDER BY seed, depth",
            (case, design, json.dumps(settings)))]


def connect(scheduler: str | None = None, workers: int = 2, processes: bool = True):
    """A Dask client: to ``scheduler`` if given, else to a new local cluster
    of ``workers`` single-threaded workers (able to import this checkout)."""
    _require()
    from distributed import Client, LocalCluster
    if scheduler:
        return Client(scheduler)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    kw = {"env": env} if processes else {}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None,
                           **kw)
    return Client(cluster)


def _stream(client, fn, jobs: dict, on_result, progress=None, retries: int = 2):
    """Submit ``fn(*args)`` for each job key -> args, calling
    ``on_result(key, value)`` as each finishes (in this process)."""
    from distributed import as_completed
    futs = {client.submit(fn, *args, pure=False, retries=retries): k for k, args in jobs.items()}
    done = 0
    try:
        for fut in as_completed(list(futs)):
            on_result(futs[fut], fut.result())
            done += 1
            if progress:
                progress(done, len(futs))
    finally:
        for f in futs:
            f.cancel()


def run_units(units) -> list:
    """A batch of ``matrix.run_unit`` calls as one task (most units take
    milliseconds; one task each would cost more in scheduling than in work)."""
    return [(u, run_unit(*u)) for u in units]


def sweep(client, store: Store, design_specs=None, case_ids=None, settings=None, progress=None,
          batch: int = 16) -> Matrix:
    """``cowlab matrix`` over the cluster: every unit not yet in ``store`` is
    run (``matrix.run_unit``, ``batch`` units a task; races one a task) and
    stored as it arrives; returns the Matrix of every unit."""
    dspecs = list(design_specs or designs.names())
    cspecs = list(case_ids) if case_ids else [c.id for c in catalog.all_cases()]
    st = tuple(sorted((settings or {}).items()))
    units = [(c, d, st) for c in cspecs for d in dspecs]
    done = store.sweep_done()
    todo = [u for u in units if (u[0], u[1], json.dumps(u[2])) not in done]
    races = {c.id for c in catalog.all_cases() if "race" in c.tags}
    chunks, cur = [], []
    for u in todo:
        if u[0] in races:
            chunks.append([u])          # explored: seconds each
        else:
            cur.append(u)
            if len(cur) >= batch:
                chunks.append(cur)
                cur = []
    if cur:
        chunks.append(cur)
    jobs = {i: (ch,) for i, ch in enumerate(chunks)}

    def stored(_, pairs):
        for u, r in pairs:
            store.put_unit(u, r)
    _stream(client, run_units, jobs, stored, progress)
    got = store.results(units)
    m = Matrix([designs.load(d, settings) for d in dspecs], [catalog.get(c) for c in cspecs], [])
    for c, d, s in units:
        r = got.get((c, d, json.dumps(s)))
        if r is not None:
            m.results.append(r)
    if len(m.results) < len(units):
        m.complete = False
        m.note = f"{len(units) - len(m.results)} of {len(units)} units not computed"
    if any(r.status != "complete" for r in m.results):
        m.complete = False
    return m


def swarm_member(case_spec: str, design_spec: str, settings: tuple, seed: int, max_depth: int,
                 max_states: int = 50_000, max_seconds: float = 60.0) -> dict:
    """One swarm member as a picklable task: what it found, with traces."""
    from .explore.swarm import randomized_dfs
    from .model import CowModel
    c = catalog.get(case_spec)
    d = designs.load(design_spec, dict(settings) or None)
    rep = randomized_dfs(CowModel(c, d), seed, max_depth, max_states, max_seconds)
    return {"seed": seed, "depth": max_depth, "status": rep.status, "reason": rep.reason, "states": rep.states,
            "transitions": rep.transitions,
            "found": {str(getattr(k, "value", k)): {"text": w.text, "trace": w.trace} for k, w in rep.found.items()},
            "incidents": {str(getattr(k, "value", k)): sorted(map(repr, v)) for k, v in rep.incidents.items()}}


def swarm(client, store: Store, case: str, design: str, members: int = 8, seed: int = 1, settings=None,
          max_states: int = 50_000, max_seconds: float = 60.0, progress=None) -> dict:
    """Run ``members`` swarm members (seeds ``seed``.., depth bounds cycling
    through DEPTHS) not yet in ``store``; returns the union over every stored
    member of this case x design."""
    st = tuple(sorted((settings or {}).items()))
    plan = [(seed + i, DEPTHS[i % len(DEPTHS)]) for i in range(members)]
    done = store.swarm_done(case, design, st)
    jobs = {(sd, dp): (case, design, st, sd, dp, max_states, max_seconds) for sd, dp in plan if (sd, dp) not in done}
    _stream(client, swarm_member, jobs, lambda k, r: store.put_member(case, design, st, k[0], k[1], r), progress)
    ms = store.members(case, design, st)
    found = {}
    for m in ms:
        for k, w in m["found"].items():
            if k not in found or len(w["trace"]) < len(found[k]["trace"]):
                found[k] = w
    complete = any(m["status"] == "complete" for m in ms)
    return {"case": case, "design": design, "members": len(ms), "found": found,
            "status": "complete" if complete else "inconclusive",
            "reason": "" if complete else "swarm members cannot prove absence (none searched the whole space)",
            "states": sum(m["states"] for m in ms)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cowlab.cluster", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("sweep", "swarm"):
        p = sub.add_parser(name)
        p.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
        p.add_argument("--workers", type=int, default=2, help="workers of the local cluster")
        p.add_argument("--store", default="cowlab-cluster.sqlite", help="the SQLite file results stream into")
        p.add_argument("--design", "-d", action="append")
    sub.choices["sweep"].add_argument("--case", action="append")
    sw = sub.choices["swarm"]
    sw.add_argument("case")
    sw.add_argument("--members", type=int, default=8)
    sw.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    for d in a.design or ():
        designs.load(d)                      # a clear error before any cluster starts
    client = connect(a.scheduler, a.workers)
    store = Store(a.store)

    def progress(i, n):
        print(f"\r{i}/{n} tasks done", end="", file=sys.stderr, flush=True)
    try:
        if a.cmd == "sweep":
            m = sweep(client, store, a.design, a.case, progress=progress)
            print(file=sys.stderr)
            for row in m.table():
                cells = []
                for k in KINDS:
                    c = row[k]
                    cells.append("unknown" if c["occurs"] is None else
                                 f"yes: {c['witness']} ({c['cases']} cases)" if c["occurs"] else "no")
                print(f"{row['design']:22} " + " | ".join(f"{k}: {v}" for k, v in zip(KINDS, cells)))
            print(f"{len(m.results)} units in {a.store}; status {'complete' if m.complete else 'inconclusive'}"
                  + (f" ({m.note})" if m.note else ""))
            return 0 if m.complete else 1
        for d in a.design or [designs.names()[0]]:
            r = swarm(client, store, a.case, d, a.members, a.seed, progress=progress)
            print(file=sys.stderr)
            print(f"{a.case} under {d}: {r['members']} members, {r['states']} states, found "
                  f"{', '.join(sorted(r['found'])) or 'nothing'}; {r['status']}"
                  + (f" ({r['reason']})" if r["reason"] else ""))
        return 0
    except KeyboardInterrupt:
        print(f"\ninterrupted: what finished is in {a.store}; run the same command again to resume "
              f"(the result is inconclusive)", file=sys.stderr)
        return 1
    finally:
        store.close()
        client.close()


if __name__ == "__main__":
    sys.exit(main())
