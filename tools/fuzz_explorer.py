"""The explorer's reductions against plain search on random toy programs.

The explorer knows nothing about memory: it sees a model's ``step``,
``footprint``, ``dependent`` and ``independent_groups``.  A toy model with
that interface -- threads running stores, loads, increments, locks, signals
and waits on a few shared variables -- tests the search itself on programs
nobody wrote for it.  Plain breadth-first search over every interleaving is
the reference; every other mode (DPOR, static POR breadth- and depth-first,
depth-first, hash compaction with and without POR, the disk frontier) must
reach the same final states (every terminal state and every state where the
threads left are blocked) and the same stuck verdict.  A program that tells
a mode apart is shrunk (operations dropped while it still does) and printed.

Usage: ``python tools/fuzz_explorer.py [--programs N] [--seed S] [--threads 2-4]
[--length 2-5] [--mode NAME ...]``; exits 1 if a mode differs on a program.
Found this way (stop 27): DPOR's summary rule lost final states in 42 of 2,000
programs (``tests/explore/test_dpor.py``).
"""
from __future__ import annotations

import argparse
import ast
import itertools
import random
import sys
from collections import namedtuple
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cowlab.explore import explore, replay  # noqa: E402

Step = namedtuple("Step", "state tid label events")

_READS = {"st": 0, "ld": 1, "inc": 1, "lock": 1, "wait": 1, "unlock": 0, "sig": 0}
_WRITES_VAR = {"st": 1, "ld": 0, "inc": 1, "lock": 1, "wait": 0, "unlock": 1, "sig": 1}


class Toy:
    """Threads run lists of operations; a state is (pcs, variables as a sorted
    tuple).  Operations: ("st", x, v) x = v; ("ld", x) a register of the
    thread = x; ("inc", x) x += 1; ("lock", L) blocks while L is held;
    ("unlock", L); ("sig", e) sets e; ("wait", e) blocks until e is set.  A
    footprint is (reads, writes) of variable names (a blocked step's is what
    it reads); the step into a state where no thread can move reports that
    state as an incident ``end``, so the incidents are the final states
    reached, and a load that reads 2 reports ``two`` (keyed by the variable).
    Threads with the same program are interchangeable (``canonical_perm``)."""

    def __init__(self, programs):
        self.programs = [list(p) for p in programs]
        self.nthreads = len(self.programs)
        same = {}
        for t, p in enumerate(self.programs):
            same.setdefault(repr(p), []).append(t)
        #: every renaming of threads within groups of equal programs, as new_tid[old_tid], the identity first
        groups = [g for g in same.values() if len(g) > 1]
        self.perms = []
        for choice in itertools.product(*(itertools.permutations(g) for g in groups)):
            sigma = list(range(self.nthreads))
            for g, img in zip(groups, choice):
                for old, new in zip(g, img):
                    sigma[old] = new
            self.perms.append(tuple(sigma))
        if not self.perms:
            self.perms = [tuple(range(self.nthreads))]

    def rename(self, s, sigma):
        """The state with thread ``old`` renamed ``sigma[old]`` (its pc and its registers)."""
        pcs, vs = s
        npcs = [0] * len(pcs)
        for old, new in enumerate(sigma):
            npcs[new] = pcs[old]
        nv = []
        for k, v in vs:
            if k.startswith("r"):
                t, _, pc = k[1:].partition(".")
                k = f"r{sigma[int(t)]}.{pc}"
            nv.append((k, v))
        return tuple(npcs), tuple(sorted(nv))

    def canonical_perm(self, s, symmetry="procs"):
        """(the least renaming of ``s``, the renaming as new_tid[old_tid] or None for the identity)."""
        best, arg = s, None
        for sigma in self.perms[1:]:
            r = self.rename(s, sigma)
            if r < best:
                best, arg = r, sigma
        return best, arg

    def init_state(self):
        return (0,) * self.nthreads, ()

    def _effect(self, tid, pc, v):
        op = self.programs[tid][pc]
        kind, x = op[0], op[1]
        if kind == "st":
            v[x] = op[2]
        elif kind == "ld":
            v[f"r{tid}.{pc}"] = v.get(x, 0)
        elif kind == "inc":
            v[x] = v.get(x, 0) + 1
        elif kind in ("lock", "wait"):
            if v.get(x, 0) != (0 if kind == "lock" else 1):
                return None
            if kind == "lock":
                v[x] = 1
        elif kind == "unlock":
            v[x] = 0
        elif kind == "sig":
            v[x] = 1
        return v

    def _fp(self, tid, pc):
        kind, x = self.programs[tid][pc][:2]
        reads = (x,) if _READS[kind] else ()
        writes = (x,) if _WRITES_VAR[kind] else ((f"r{tid}.{pc}",) if kind == "ld" else ())
        return frozenset(reads), frozenset(writes)

    def _next(self, s, tid):
        pcs, vs = s
        if pcs[tid] >= len(self.programs[tid]):
            return None
        v = self._effect(tid, pcs[tid], dict(vs))
        if v is None:
            return None
        return pcs[:tid] + (pcs[tid] + 1,) + pcs[tid + 1:], tuple(sorted(v.items()))

    def step(self, s, tid):
        ns = self._next(s, tid)
        if ns is None:
            return None
        end = all(self._next(ns, t) is None for t in range(self.nthreads))
        ev = (("end", ns),) if end else ()
        op = self.programs[tid][s[0][tid]]
        if op[0] == "ld" and dict(ns[1])[f"r{tid}.{s[0][tid]}"] == 2:
            ev += (("two", op[1]),)
        # (a label names the operation, not the thread: a representative's trace is mapped to other threads)
        return Step(ns, tid, f"{op[0]} {op[1]} @{s[0][tid]}", ev)

    def footprint(self, s, tid):
        if s[0][tid] >= len(self.programs[tid]):
            return None, (frozenset(), frozenset())
        return self.step(s, tid), self._fp(tid, s[0][tid])

    def dependent(self, a, b):
        return bool(a[1] & (b[0] | b[1]) or b[1] & a[0])

    def independent_groups(self):
        """Threads that share no variable, transitively, form a group."""
        n = self.nthreads
        parent = list(range(n))

        def find(i):
            while parent[i] != i:
                i = parent[i]
            return i
        names = [{op[1] for op in p} for p in self.programs]
        for i in range(n):
            for j in range(i):
                if names[i] & names[j]:
                    parent[find(i)] = find(j)
        groups = {}
        for i in range(n):
            groups.setdefault(find(i), []).append(i)
        return sorted(groups.values())

    def thread_done(self, s, tid):
        return s[0][tid] >= len(self.programs[tid])

    def is_done(self, s):
        return all(self.thread_done(s, t) for t in range(self.nthreads))

    def violations(self, tr):
        return [(k, repr(x) if k == "end" else x, k) for k, x in tr.events]

    def model_bugs(self, tr):
        return []


def finals(rep) -> set:
    """The final states a search reached (the ``end`` incidents)."""
    return rep.incidents.get("end", set())


def random_program(rng, nthreads: int, length: int, names: str = "xy", locks: str = "L", events: str = "ef"):
    """``nthreads`` threads of ``length`` operations on the variables ``names``,
    the locks ``locks`` (taken and, mostly, released again by the same
    thread) and the events ``events``."""
    progs = []
    for _ in range(nthreads):
        ops, held = [], None
        while len(ops) < length:
            kind = rng.choice(["st", "ld", "inc", "lock", "sig", "wait"])
            if kind == "lock":
                if held:
                    ops.append(("unlock", held))
                    held = None
                else:
                    held = rng.choice(locks)
                    ops.append(("lock", held))
            elif kind in ("sig", "wait"):
                ops.append((kind, rng.choice(events)))
            else:
                ops.append((kind, rng.choice(names)) + ((rng.randint(1, 2),) if kind == "st" else ()))
        if held and rng.random() < 0.8:
            ops.append(("unlock", held))
        progs.append(ops)
    return progs


MODES = {
    "dpor": {"dpor": True},
    "por": {"por": True},
    "por-dfs": {"por": True, "order": "dfs"},
    "dfs": {"order": "dfs"},
    "fingerprints": {"fingerprints": True},
    "fingerprints-por": {"fingerprints": True, "por": True},
    "disk-frontier": {"fingerprints": True, "frontier": "disk"},
    "symmetry": {"symmetry": "threads"},
    "symmetry-fingerprints": {"symmetry": "threads", "fingerprints": True},
    "symmetry-dfs": {"symmetry": "threads", "order": "dfs"},
}


def replays(model, rep) -> bool:
    """Whether every witness and every deadlock trace of ``rep`` replays through
    the model (``explore.replay``): a witness to a step raising its incident,
    a deadlock trace to a state where no thread can move."""
    try:
        for kind, w in rep.found.items():
            trs = list(replay(model, w.trace))
            if kind not in {k for k, _ in trs[-1].events}:
                return False
        for tr_ in rep.deadlocks:
            trs = list(replay(model, tr_))
            s = trs[-1].state if trs else model.init_state()
            if any(model.step(s, t) for t in range(model.nthreads)) or model.is_done(s):
                return False
    except ValueError:
        return False
    return True


def outcome(model, rep):
    """(final states up to renaming threads, the loads of 2, stuck or not, status, witnesses replay)."""
    ends = frozenset(model.canonical_perm(ast.literal_eval(x))[0] for x in finals(rep))
    return ends, frozenset(rep.incidents.get("two", ())), rep.stuck > 0, rep.status, replays(model, rep)


def differs(programs, kw) -> bool:
    """Whether the mode ``kw`` reaches other final states (or another stuck verdict) than plain search."""
    m = Toy(programs)
    return outcome(m, explore(m, expect_stuck=True, **kw)) != outcome(m, explore(m, expect_stuck=True))


def shrink(programs, kw):
    """Drop operations (and emptied threads) while the program still tells the mode apart."""
    progs = [list(p) for p in programs]
    changed = True
    while changed:
        changed = False
        for t in range(len(progs)):
            for i in range(len(progs[t])):
                cand = [list(p) for p in progs]
                del cand[t][i]
                cand = [p for p in cand if p]
                if cand and differs(cand, kw):
                    progs, changed = cand, True
                    break
            if changed:
                break
    return progs


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=_range, default=(2, 4), help="LO-HI threads per program (2-4)")
    ap.add_argument("--length", type=_range, default=(2, 5), help="LO-HI operations per thread (2-5)")
    ap.add_argument("--mode", action="append", choices=sorted(MODES), help="modes to check (default: all)")
    a = ap.parse_args(argv)
    modes = {k: MODES[k] for k in (a.mode or MODES)}
    rng = random.Random(a.seed)
    bad = {k: 0 for k in modes}
    states = {k: 0 for k in ["plain", *modes]}
    for n in range(a.programs):
        progs = random_program(rng, rng.randint(*a.threads), rng.randint(*a.length),
                               names=rng.choice(("xy", "xyzw")), locks=rng.choice(("L", "LM")),
                               events=rng.choice(("ef", "efg")))
        if rng.random() < 0.5:
            progs.append(list(progs[0]))            # two threads alike: symmetry has something to merge
        m = Toy(progs)
        ref = explore(m, expect_stuck=True)
        states["plain"] += ref.states
        want = outcome(m, ref)
        for k, kw in modes.items():
            r = explore(m, expect_stuck=True, **kw)
            states[k] += r.states
            if outcome(m, r) != want:
                bad[k] += 1
                if bad[k] <= 3:
                    print(f"{k}: program {n} differs from plain search; shrunk: {shrink(progs, kw)}")
    print(f"{a.programs} programs (seed {a.seed}); states: "
          + ", ".join(f"{k} {v:,}" for k, v in states.items()))
    for k, v in bad.items():
        print(f"  {k}: {'ok' if not v else f'{v} programs differ'}")
    return 1 if any(bad.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
