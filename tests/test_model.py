"""The explorer-facing interface: immutable, hashable states that compare
equal whatever path made them; picklable units of work."""
import pickle

from cowlab import designs
from cowlab.model import CowModel
from cowlab.run import WorkUnit, run_unit
from cowlab.scenario import Script


def _two_threads():
    s = Script("commute", pages=2)
    p = s.process("parent")
    p.mmap(0, pages=2)
    p.write(0)
    p.write(1)
    s.thread("parent", [("mprotect", {"addr": 0, "prot": "r"})], name="a")
    s.thread("parent", [("madvise", {"addr": 1, "advice": "dontfork"})], name="b")
    return CowModel(s.build(), designs.load("linux-6.18"))


def _run_thread(m, s, tid):
    while True:
        tr = m.step(s, tid)
        assert tr is not None
        s = tr.state
        if s.threads[tid].label is None:
            return s


def _prefix(m):
    s = m.init_state()
    while s.threads[0].pc < len(m.ops[0]):
        s = _run_thread(m, s, 0)
    return s


def test_states_equal_whatever_the_path():
    m = _two_threads()
    s0 = _prefix(m)
    ab = _run_thread(m, _run_thread(m, s0, 1), 2)
    ba = _run_thread(m, _run_thread(m, s0, 2), 1)
    assert ab == ba
    assert hash(ab) == hash(ba)
    assert ab != s0


def test_states_are_immutable_values():
    m = _two_threads()
    s = m.init_state()
    before = hash(s)
    m.step(s, 0)
    assert hash(s) == before
    assert len({s, m.init_state()}) == 1


def test_blocked_step_is_not_enabled():
    s = Script("wait", pages=1)
    s.process("parent").mmap(0)
    s.thread("parent", [("wait", {"event": "never"})], name="w")
    m = CowModel(s.build(), designs.load("linux-5.19"))
    assert m.step(m.init_state(), 1) is None
    assert m.actions(m.init_state()) == [0]


def test_work_unit_is_picklable_and_self_contained():
    u = WorkUnit("cve-2020-29374", "linux-5.7")
    u2 = pickle.loads(pickle.dumps(u))
    assert run_unit(u2).outcomes["missed"] == 1
