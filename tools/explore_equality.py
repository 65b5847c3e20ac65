"""Plain exploration results of the whole catalog, recorded and compared, so that a
change meant to make steps cheaper (issue 14) can show it changed nothing:

    python tools/explore_equality.py record before.json      # on the old code
    python tools/explore_equality.py record after.json       # on the new code
    python tools/explore_equality.py compare before.json after.json

For every catalog case x design a plain breadth-first search (no reduction),
and one with each reduction (static POR, symmetry, DPOR), and for the
benchmark's two-family case under linux-5.9 a plain search, is run with a state
limit (deterministic, unlike a time limit) and recorded: status and reason,
states, transitions, depth, stuck states, every verdict's incident keys, the
shortest witness of each verdict kind (its trace and text), and the model bugs
with their traces; and a sequential run (``run_sequential``) of every case x
design and of cow.c's PTE-mapped and swapped-out THP tests with ``LARGE_NR``-subpage
folios under linux-5.9 and 6.18: verdicts, copies, model bugs and the whole
trace of labels, events and bugs.  ``compare`` prints every difference and exits 1 if there
is one; ``verdicts FILE`` compares, within one record, each reduction's
verdict kinds, model bugs and stuck states with plain search's; ``modes``
runs plain search against ``symmetry="procs"`` on random scenarios with
interchangeable processes (``symmetric_case``; the catalog has none), or
(``--mode threads``) against ``symmetry="threads"`` on random scenarios
with interchangeable threads of one process (``symmetric_threads_case``).
``--races`` keeps the race cases only; ``--jobs N`` runs N processes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cowlab import catalog, designs  # noqa: E402
from cowlab.catalog import cow_c  # noqa: E402
from cowlab.explore import Limits, explore  # noqa: E402
from cowlab.model import CowModel  # noqa: E402

#: the state limit of each search (a search that reaches it is recorded as inconclusive, still comparable)
MAX_STATES = 300_000


def _cases(races_only: bool):
    out = [c for c in catalog.all_cases() if not races_only or "race" in c.tags]
    return out


def _two_family():
    from benchmarks.explore import two_family
    return two_family()


#: the searches run on each catalog case x design: plain first (the two-family case runs plain only)
MODES = {"plain": {}, "por": {"por": True}, "symmetry": {"symmetry": True}, "dpor": {"dpor": True},
         "procs": {"symmetry": "procs"}, "threads": {"symmetry": "threads"}}

#: what ``record`` runs on the catalog: "threads" is left out (no catalog case has interchangeable threads, so it is
#: the "procs" search there -- tests/explore/test_symmetry_threads.py checks that -- and records stay comparable
#: with those made before it)
RECORD_MODES = [m for m in MODES if m != "threads"]

#: the reductions ``modes`` checks against plain search on random scenarios, and their scenario makers
MODE_CASES = {"procs": "symmetric_case", "threads": "symmetric_threads_case"}


def symmetric_case(seed: int, kids: int = 2):
    """A random scenario with interchangeable processes (what ``symmetry="procs"``
    permutes): a parent maps and writes one or two pages (maybe pins or
    vmsplices them, maybe a THP), forks ``kids`` children, then the parent
    and every child run concurrently, the children the same random
    operations (their pins' and pipes' names their own or shared)."""
    import random
    from cowlab.scenario import Script
    rng = random.Random(seed)
    pages = rng.choice((1, 2))
    s = Script(f"sym-{seed}-k{kids}", pages=pages)
    p = s.process("p")
    cs = [s.process(f"c{i}") for i in range(1, kids + 1)]
    p.mmap(0, pages=pages, thp=pages == 2 and rng.random() < 0.4)
    for a in range(pages):
        p.write(a)
    if rng.random() < 0.3:
        p.pin_longterm(0, pin="pp")
    if rng.random() < 0.3:
        p.vmsplice(0, pipe="pipe.p")
    if rng.random() < 0.5:
        p.lru_add_drain()
    for c in cs:
        p.fork(c)
    own = rng.random() < 0.7

    def ops(who):
        out = []
        for _ in range(rng.randint(1, 3)):
            a = rng.randrange(pages)
            k = rng.choice(("write", "write", "read", "pin", "gup", "vmsplice", "munmap", "mprotect", "exit"))
            tag = who if own else "x"
            if k == "write":
                out.append(("write", {"addr": a}))
            elif k == "read":
                out.append(("read", {"addr": a}))
            elif k == "pin":
                out += [("pin_longterm", {"addr": a, "pin": f"q.{tag}"}), ("unpin", {"pin": f"q.{tag}"})][
                    :rng.choice((1, 2))]
            elif k == "gup":
                out.append(("get_user_pages", {"addr": a, "pin": f"g.{tag}", "write": rng.random() < 0.5}))
            elif k == "vmsplice":
                out.append(("vmsplice", {"addr": a, "pipe": f"pipe.{tag}"}))
            elif k == "munmap":
                out.append(("munmap", {"addr": a}))
            elif k == "mprotect":
                out.append(("mprotect", {"addr": a, "prot": "r"}))
            else:
                out.append(("exit", {}))
        return out

    par = {"p": ops("p")}
    kid_ops = ops("c")
    for c in cs:
        par[c.name] = [(o, {k: (v.replace(".c", f".{c.name}") if isinstance(v, str) and own else v)
                            for k, v in a.items()}) for o, a in kid_ops]
    s.parallel(par)
    return s.build()


def symmetric_threads_case(seed: int, threads: int = 2):
    """A random scenario with interchangeable threads of one process (what
    ``symmetry="threads"`` permutes): a process maps and writes one or two
    pages (maybe a THP, maybe pins or vmsplices one), then ``threads``
    further threads (each on a CPU of its own) run the same random operations
    concurrently, their pins', pipes' and events' names their own or shared;
    the main thread maybe runs those operations too (after its set-up: it is
    not permuted with them) or others; maybe one more thread runs something
    else (reclaim, a write, a fork whose child writes, a drain of every CPU)."""
    import random
    from cowlab.scenario import Script
    rng = random.Random(seed)
    pages = rng.choice((1, 2))
    s = Script(f"tsym-{seed}-t{threads}", pages=pages)
    p = s.process("p")
    names = [f"p.t{i}" for i in range(1, threads + 1)]
    for n in names:
        s.cpu("p", n)
    p.mmap(0, pages=pages, thp=pages == 2 and rng.random() < 0.3)
    for a in range(pages):
        p.write(a)
    if rng.random() < 0.2:
        p.pin_longterm(0, pin="pp")
    if rng.random() < 0.2:
        p.vmsplice(0, pipe="pipe.p")
    if rng.random() < 0.5:
        p.lru_add_drain()
    own = rng.random() < 0.7

    def body():
        out = []
        for _ in range(rng.randint(1, 3)):
            a = rng.randrange(pages)
            k = rng.choice(("write", "write", "read", "pin", "pin", "gup", "vmsplice", "munmap", "mprotect",
                            "pageout", "drain"))
            if k == "write":
                out.append(("write", {"addr": a}))
            elif k == "read":
                out.append(("read", {"addr": a}))
            elif k == "pin":
                out += [("pin_longterm", {"addr": a, "pin": "q.@", "fast": rng.random() < 0.5}),
                        ("unpin", {"pin": "q.@"})][:rng.choice((1, 2, 2))]
            elif k == "gup":
                out += [("get_user_pages", {"addr": a, "pin": "g.@", "write": rng.random() < 0.5}),
                        ("put_user_pages", {"pin": "g.@"})][:rng.choice((1, 2))]
            elif k == "vmsplice":
                out += [("vmsplice", {"addr": a, "pipe": "pipe.@"}), ("pipe_read", {"pipe": "pipe.@"})][
                    :rng.choice((1, 2))]
            elif k == "munmap":
                out.append(("munmap", {"addr": a}))
            elif k == "mprotect":
                out.append(("mprotect", {"addr": a, "prot": "r"}))
            elif k == "pageout":
                out.append(("pageout", {"addr": a}))
            else:
                out.append(("lru_add_drain", {}))
        return out

    def tagged(ops, tag):
        return [(o, {k: (v.replace("@", tag) if isinstance(v, str) else v) for k, v in a.items()}) for o, a in ops]

    group = body()
    par = {n: tagged(group, f"t{i + 1}x" if own else "x") for i, n in enumerate(names)}
    main = rng.choice(("none", "none", "same", "other"))
    if main != "none":
        par["p"] = tagged(group if main == "same" else body(), "t0x" if own else "x")
    extra = rng.choice((None, None, "pageout", "write", "fork", "drain"))
    if extra:
        s.cpu("p", "p.other")
        if extra == "fork":
            s.process("c")
            par["p.other"] = [("fork", {"child": "c"})]
            par["c"] = [("write", {"addr": 0})]
        elif extra == "drain":
            par["p.other"] = [("lru_add_drain", {"all": True})]
        else:
            par["p.other"] = [(extra, {"addr": 0})]
    s.parallel(par)
    return s.build()


def result(case, design: str, mode: str = "plain", max_states: int = MAX_STATES) -> dict:
    """The comparable outcome of one search."""
    m = CowModel(case, designs.load(design))
    try:
        r = explore(m, Limits(max_states=max_states, max_seconds=1e9), expect_stuck=case.expect_stuck, **MODES[mode])
    except Exception as e:          # (recorded: a search that fails must fail alike)
        return {"error": f"{type(e).__name__}: {e}"}
    return {
        "status": r.status, "reason": r.reason, "states": r.states, "transitions": r.transitions,
        "depth": r.depth, "stuck": r.stuck, "deadlocks": [[list(x) for x in t] for t in r.deadlocks],
        "incidents": {k: sorted(repr(x) for x in v) for k, v in sorted(r.incidents.items())},
        "found": {k: {"depth": w.depth, "text": w.text, "trace": [list(x) for x in w.trace]}
                  for k, w in sorted(r.found.items())},
        "bugs": [[b, [list(x) for x in t]] for b, t in r.bugs],
    }


def sequential_result(case, design: str) -> dict:
    """The comparable outcome of one sequential run (``run_sequential``: the trace, verdicts and model bugs)."""
    from cowlab.run import run_sequential
    r = run_sequential(CowModel(case, designs.load(design)))
    return {"outcomes": r.outcomes, "status": r.status, "reason": r.reason, "steps": r.steps, "copies": r.copies,
            "events": [list(e) for e in r.events], "bugs": r.bugs,
            "trace": [[x["thread"], x["label"], x["events"], x["bugs"]] for x in r.trace]}


#: the large-folio cow.c cases run sequentially too (check_state's cost grows with the folio's subpages)
LARGE_NR = 64


def _one(job):
    cid, design, two, mode = job
    t = time.process_time()
    if mode == "sequential":
        case = next(c for c in cow_c.cases(nr=LARGE_NR) if c.id == cid) if two else catalog.get(cid)
        res = sequential_result(case, design)
        res["cpu"] = time.process_time() - t
        return f"{cid} @ {design} {mode}{f' nr={LARGE_NR}' if two else ''}", res
    case = _two_family() if two else catalog.get(cid)
    res = result(case, design, mode)
    res["cpu"] = time.process_time() - t
    return f"{cid} @ {design} {mode}", res


def record(path: str, races_only: bool, jobs: int) -> None:
    work = [(c.id, d, False, mode) for c in _cases(races_only) for d in designs.names() for mode in RECORD_MODES]
    work.append(("race-fork-gup-fast+race-reclaim-pin", "linux-5.9", True, "plain"))
    work += [(c.id, d, False, "sequential") for c in _cases(races_only) for d in designs.names()]
    if not races_only:
        work += [(c.id, d, True, "sequential") for c in cow_c.cases(["pte-thp", "thp-swap"], nr=LARGE_NR)
                 for d in ("linux-5.9", "linux-6.18")]
    out = {}
    t0 = time.perf_counter()
    if jobs > 1:
        import multiprocessing
        with multiprocessing.Pool(jobs) as pool:
            for k, v in pool.imap(_one, work, chunksize=4):
                out[k] = v
    else:
        for job in work:
            k, v = _one(job)
            out[k] = v
    cpu = sum(v.pop("cpu") for v in out.values())
    errors = sum("error" in v for v in out.values())
    if errors:
        print(f"{errors} searches failed (recorded as such)")
    with open(path, "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
    print(f"{len(out)} searches, {sum(v.get('states', 0) for v in out.values()):,} states, {cpu:.1f} CPU-s "
          f"({time.perf_counter() - t0:.1f}s wall) -> {path}")


def compare(a: str, b: str) -> int:
    with open(a) as f:
        A = json.load(f)
    with open(b) as f:
        B = json.load(f)
    diffs = 0
    for k in sorted(set(A) | set(B)):
        if k not in A or k not in B:
            print(f"{k}: only in {'the first' if k in A else 'the second'}")
            diffs += 1
            continue
        for field in sorted(set(A[k]) | set(B[k])):
            if A[k].get(field) != B[k].get(field):
                diffs += 1
                print(f"{k}: {field} differs: {str(A[k].get(field))[:200]} != {str(B[k].get(field))[:200]}")
    n = len(set(A) & set(B))
    print(f"{n} searches compared, {sum(v.get('states', 0) for v in A.values()):,} states; "
          f"{'identical' if not diffs else f'{diffs} differences'}")
    return 1 if diffs else 0


def compare_verdicts(path: str) -> int:
    """Within one record: every reduction's search of a case x design against
    the plain one -- the verdict kinds found, whether model bugs and stuck
    states were (searches that hit the state limit are skipped: they cover
    different parts of the space)."""
    with open(path) as f:
        R = json.load(f)
    diffs = n = 0
    for k, v in sorted(R.items()):
        if not k.endswith(" plain") or "error" in v or "limit" in v.get("reason", ""):
            continue
        base = k[:-len(" plain")]
        for mode in RECORD_MODES:
            w = R.get(f"{base} {mode}")
            if mode == "plain" or w is None or "error" in w or "limit" in w.get("reason", ""):
                continue
            n += 1
            a = (sorted(v["found"]), bool(v["bugs"]), v["stuck"] > 0)
            b = (sorted(w["found"]), bool(w["bugs"]), w["stuck"] > 0)
            if a != b:
                diffs += 1
                print(f"{base}: plain {a} != {mode} {b}")
    print(f"{n} reduced searches against plain; {'same verdicts' if not diffs else f'{diffs} differences'}")
    return 1 if diffs else 0


def verdicts_of(model, rep) -> dict:
    """What a reduction must keep: the verdict kinds found, whether model bugs
    and stuck states were, the status; and whether every witness replays from
    the initial state to a step with its kind."""
    from cowlab.explore import replay
    ok = True
    for k, w in rep.found.items():
        try:
            trs = list(replay(model, w.trace))
            ok = ok and any(e.kind == k for e in trs[-1].events)
        except ValueError:
            ok = False
    for _, t in rep.bugs:
        try:
            list(replay(model, t))
        except ValueError:
            ok = False
    return {"kinds": sorted(str(k) for k in rep.found), "bugs": bool(rep.bugs), "stuck": rep.stuck > 0,
            "status": rep.status, "replays": ok}


def compare_modes(seeds: int, kids: int, mode: str = "procs", start: int = 0) -> int:
    """Plain search against ``mode`` on ``seeds`` random symmetric scenarios
    (``symmetric_case`` with ``kids`` children for "procs",
    ``symmetric_threads_case`` with ``kids`` threads for "threads") x every
    design: the verdicts (``verdicts_of``) must be equal, the witnesses
    replay; where plain search hits the state limit, the reduced search must
    find every kind it found (when the reduced one hits it too, only the
    replays are checked)."""
    diffs = n = limited = both = 0
    plain_states = red_states = 0
    make = globals()[MODE_CASES[mode]]
    for seed in range(start, start + seeds):
        case = make(seed, kids)
        for d in designs.names():
            lim = Limits(max_states=MAX_STATES, max_seconds=1e9)
            res = {}
            for md in ("plain", mode):
                m = CowModel(case, designs.load(d))
                r = explore(m, lim, expect_stuck=case.expect_stuck, **MODES[md])
                res[md] = verdicts_of(m, r)
                if md == "plain":
                    plain_states += r.states
                else:
                    red_states += r.states
            n += 1
            P, R = res["plain"], res[mode]
            if P["status"] == "inconclusive":
                # plain search hit the state limit: what it found the reduced search must find too (when
                # both hit it, neither covered the space: nothing to compare but that the witnesses replay)
                limited += 1
                both += R["status"] == "inconclusive"
                lost = (R["status"] != "inconclusive" and (not set(P["kinds"]) <= set(R["kinds"])
                                                           or P["bugs"] > R["bugs"] or P["stuck"] > R["stuck"]))
                if lost or not R["replays"]:
                    diffs += 1
                    print(f"{case.id} @ {d}: plain (limited) {P} not within {mode} {R}")
                continue
            if P != R or not R["replays"]:
                diffs += 1
                print(f"{case.id} @ {d}: plain {P} != {mode} {R}")
    print(f"{n} case x design pairs ({limited} where plain search hit the state limit {MAX_STATES:,}, {both} of "
          f"them where the reduced one did too: not compared), "
          f"plain {plain_states:,} states, {mode} {red_states:,}; "
          f"{'same verdicts' if not diffs else f'{diffs} differences'}")
    return 1 if diffs else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("out")
    r.add_argument("--races", action="store_true", help="the race cases only")
    r.add_argument("--jobs", type=int, default=1)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    mo = sub.add_parser("modes", help="plain search against --symmetry=procs (or threads) on random symmetric "
                                      "scenarios")
    mo.add_argument("--seeds", type=int, default=40)
    mo.add_argument("--kids", type=int, default=2, help="children (procs) or threads (threads) that run alike")
    mo.add_argument("--mode", choices=sorted(MODE_CASES), default="procs")
    mo.add_argument("--start", type=int, default=0, help="the first seed")
    ve = sub.add_parser("verdicts", help="in one record, every reduction's verdicts against plain search's")
    ve.add_argument("record")
    a = ap.parse_args(argv)
    if a.cmd == "verdicts":
        return compare_verdicts(a.record)
    if a.cmd == "modes":
        return compare_modes(a.seeds, a.kids, a.mode, a.start)
    if a.cmd == "record":
        record(a.out, a.races, a.jobs)
        return 0
    return compare(a.a, a.b)


if __name__ == "__main__":
    sys.exit(main())
