"""Limits end a search as "inconclusive" with what it covered, never a false "safe": the clock (on models whose
transition counts never hit the old every-2048-transitions checkpoint), running out of memory, and stuck states."""
import dataclasses
import time
from typing import NamedTuple

import pytest

from cowlab import catalog, designs
from cowlab.explore import Limits, explore, random_walks
from cowlab.model import CowModel
from cowlab.run import run_sequential
from cowlab.scenario import Script


class T(NamedTuple):
    state: int
    tid: int
    label: str


class Counter:
    """An unbounded counter.  From state 0 one thread moves, from every other state ``width`` threads do, all to
    the next state: after the first state the transition count is 1 + width * k, never a multiple of 2048 when
    ``width`` is even (the old checkpoints); ``delay`` seconds per step makes each step slow."""

    def __init__(self, width=2, delay=0.0, fail_at=None):
        self.nthreads, self.delay, self.fail_at = width, delay, fail_at
        self.calls = 0

    def init_state(self):
        return 0

    def step(self, s, tid):
        if s == 0 and tid > 0:
            return None
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise MemoryError
        if self.delay:
            time.sleep(self.delay)
        return T(s + 1, tid, "inc")

    def is_done(self, s):
        return False

    def violations(self, tr):
        return []

    def model_bugs(self, tr):
        return []


# no depth or state limit would end these searches soon: only the clock can
WIDE_OPEN = {"max_states": 10**9, "max_depth": 10**9, "max_memory_mb": 10**6}


@pytest.mark.parametrize("model", [Counter(width=2), Counter(width=3, delay=0.002)], ids=["odd-counts", "slow-steps"])
def test_max_seconds_stops_within_half_a_second(model):
    t0 = time.monotonic()
    r = explore(model, Limits(max_seconds=0.2, **WIDE_OPEN))
    took = time.monotonic() - t0
    assert took < 0.5, took
    assert r.status == "inconclusive" and "time limit 0.2s" in r.reason
    assert r.states > 1 and r.transitions > 0 and r.depth > 0       # what it covered


def test_odd_counts_really_skip_the_old_checkpoints():
    # the counts the old code checked at (transitions % 2048 == 0) are never reached after the first state
    m = Counter(width=2)
    r = explore(m, Limits(max_states=5000, max_seconds=600, max_depth=10**9))
    assert "state limit" in r.reason
    assert r.transitions % 2 == 1


def test_random_walks_stop_by_the_clock_within_a_walk():
    t0 = time.monotonic()
    r = random_walks(Counter(width=3, delay=0.002), walks=1, seed=1, max_depth=10**6, limits=Limits(max_seconds=0.2))
    assert time.monotonic() - t0 < 0.5
    assert r.status == "inconclusive" and "time limit after 0 walks" in r.reason and r.transitions > 0


def test_memory_error_is_inconclusive_with_what_was_covered():
    r = explore(Counter(width=2, fail_at=500), Limits(**WIDE_OPEN))
    assert r.status == "inconclusive" and "out of memory" in r.reason
    assert r.states > 100 and r.transitions > 100
    r = random_walks(Counter(width=2, fail_at=300), walks=5, seed=0, max_depth=100)
    assert r.status == "inconclusive" and "out of memory" in r.reason and r.transitions > 100


def test_memory_error_on_cowlab_model(monkeypatch):
    m = CowModel(catalog.get("race-fork-gup-fast"), designs.load("linux-5.9"))
    step, calls = m.step, [0]

    def failing(s, tid):
        calls[0] += 1
        if calls[0] > 50:
            raise MemoryError
        return step(s, tid)
    monkeypatch.setattr(m, "step", failing)
    r = explore(m)
    assert r.status == "inconclusive" and "out of memory" in r.reason and r.states > 10


# ---- stuck states -----------------------------------------------------------------------------------------------

def _waits_for_nobody(**kw):
    s = Script("waits-for-nobody", "a thread waits for an event nobody signals", pages=1, tags=("race",))
    s.process("parent").mmap(0).write(0)
    s.thread("parent", [("wait", {"event": "never"}), ("write", {"addr": 0})], name="waiter")
    return dataclasses.replace(s.build(), **kw)


def test_stuck_states_are_inconclusive_everywhere():
    case = _waits_for_nobody()
    m = CowModel(case, designs.load("linux-6.18"))
    r = explore(m)
    assert r.stuck and r.deadlocks
    assert r.status == "inconclusive" and "stuck state" in r.reason
    assert explore(m, por=True).status == "inconclusive"
    assert run_sequential(m).status == "inconclusive"      # as run always said


def test_stuck_states_the_case_expects_are_complete():
    case = _waits_for_nobody(expect_stuck=True)
    m = CowModel(case, designs.load("linux-6.18"))
    r = explore(m, expect_stuck=True)
    assert r.status == "complete" and "as the case expects" in r.reason
    s = run_sequential(m)
    assert s.status == "complete" and "stuck as the case expects" in s.reason


class StuckEarly:
    """Thread 1 counts while thread 0 has not moved; once thread 0 moves nobody can: every (1, b) is stuck."""
    nthreads = 2

    def init_state(self):
        return (0, 0)

    def step(self, s, tid):
        a, b = s
        if a:
            return None
        return T((1, b) if tid == 0 else (0, b + 1), tid, "move")

    def is_done(self, s):
        return False

    def violations(self, tr):
        return []

    def model_bugs(self, tr):
        return []


def test_stuck_states_in_the_toy_model():
    r = explore(StuckEarly(), Limits(max_states=50))
    assert r.status == "inconclusive" and r.reason.startswith("state limit 50 reached")
    assert r.stuck > 5 and len(r.deadlocks) == 5 and f"{r.stuck} stuck state(s)" in r.reason
    # without a limit nothing ends it but the clock
    r = explore(StuckEarly(), Limits(max_states=10**9, max_depth=10**9, max_seconds=0.2))
    assert r.status == "inconclusive" and "time limit" in r.reason and "stuck" in r.reason
