"""The one scheduler that drives a model without searching: the sequential
schedule, and a seeded random walk.

* ``sequential(model)``: each operation runs to completion; the first
  thread in declaration order that can run goes next.  When the running
  operation is blocked (it waits for a lock or an event), another thread
  runs (the first, in declaration order, that can): it may hold what the
  first waits for.  This is the schedule of ``cowlab run``, ``matrix`` (for
  cases without races), conformance and the reports.
* ``random_walk(model, rng)``: at each state, one of the threads that can
  move, chosen by ``rng.randrange`` (the explorer's swarm sampler and the
  plots' random schedules).

Both return a ``Schedule``: iterating it yields each ``Transition`` in turn
(``before`` is the state the step left, ``state`` the one it reached);
after the iteration ``end`` says why it stopped: ``"done"`` (every thread
finished), ``"stuck"`` (some thread has not finished and none can move: it
waits for something nobody will do) or ``"limit"`` (``max_steps`` steps).
A caller that stops early (e.g. on a model bug) leaves ``end`` None.

The random walk needs only ``init_state``, ``nthreads``, ``step`` and
``is_done`` (the explorer's interface); the sequential schedule also needs
to know whether a thread is inside an operation (``in_operation``).
"""
from __future__ import annotations

import random


def in_operation(state, tid: int) -> bool:
    """The thread has started an operation and not finished it (it is
    between two atomic steps of one kernel path)."""
    return state.threads[tid].label is not None


class Schedule:
    def __init__(self, model, max_steps: int, rng: random.Random | None = None, state=None):
        self.model = model
        self.max_steps = max_steps
        self.rng = rng
        self.state = model.init_state() if state is None else state
        self.before = None
        self.steps = 0
        self.end: str | None = None

    def __iter__(self):
        return self._random() if self.rng is not None else self._sequential()

    def _first(self, s, tids):
        for tid in tids:
            tr = self.model.step(s, tid)
            if tr is not None:
                return tr
        return None

    def _sequential(self):
        model = self.model
        n = model.nthreads
        current = None           # the thread inside an operation, which goes on first
        for _ in range(self.max_steps):
            s = self.state
            if model.is_done(s):
                self.end = "done"
                return
            tr = self._first(s, [current] if current is not None else range(n))
            if tr is None and current is not None:
                # the running operation is blocked: let another thread run (it may hold what we wait for)
                tr = self._first(s, [t for t in range(n) if t != current])
            if tr is None:
                self.end = "stuck"
                return
            self._advance(tr)
            yield tr
            current = tr.tid if in_operation(tr.state, tr.tid) else None
        self.end = "limit"

    def _random(self):
        model = self.model
        for _ in range(self.max_steps):
            s = self.state
            trs = [tr for tid in range(model.nthreads) if (tr := model.step(s, tid)) is not None]
            if not trs:
                self.end = "done" if model.is_done(s) else "stuck"
                return
            tr = trs[self.rng.randrange(len(trs))]
            self._advance(tr)
            yield tr
        self.end = "limit"

    def _advance(self, tr):
        self.before, self.state = self.state, tr.state
        self.steps += 1

    def unfinished(self) -> list[int]:
        """The threads that have not finished (at a stuck end: the ones waiting)."""
        return [t for t in range(self.model.nthreads) if not self.model.thread_done(self.state, t)]


def sequential(model, max_steps: int = 20000, state=None) -> Schedule:
    """The sequential schedule from ``state`` (default: the initial state)."""
    return Schedule(model, max_steps, None, state)


def random_walk(model, rng: random.Random, max_steps: int = 2000, state=None) -> Schedule:
    """A seeded random walk: ``rng`` picks among the threads that can move."""
    return Schedule(model, max_steps, rng, state)
