"""mm/mmap.c and kernel/exit.c: do_exit()'s exit_mmap() waits for the process's
other threads to leave the kernel."""
from cowlab import designs
from cowlab.explore import explore
from cowlab.model import CowModel
from cowlab.scenario import Script

from ..explore._symmetry import reachable


def _exit_during(ops):
    s = Script("exit-during-a-path", pages=1)
    p = s.process("p")
    s.cpu("p", "p.t1")
    p.mmap(0, pages=1)
    p.write(0)
    s.parallel({"p.t1": ops, "p": [("exit", {})]})
    return s.build()


def test_exit_waits_for_a_thread_inside_gup_fast():
    """A thread of the process inside gup-fast (its reference grabbed, not yet
    rechecked) when another calls exit(): the walk completes and drops or keeps
    its reference as the kernel does; before, the model zapped the mm under it
    and reported a reference left behind (a model bug found by a random
    differential campaign, tools/explore_equality.py symmetric_threads_case)."""
    c = _exit_during([("pin_longterm", {"addr": 0, "pin": "q", "fast": True}), ("unpin", {"pin": "q"})])
    for dn in ("linux-5.9", "linux-6.18"):
        m = CowModel(c, designs.load(dn))
        r = explore(m)
        assert r.status == "complete" and not r.bugs, (dn, r.reason, r.bugs[:1])
        d = explore(m, dpor=True)
        assert d.status == "complete" and not d.bugs and d.incidents == r.incidents
        # and the exit does wait: in some reached state t1 is inside the path and p's exit cannot run
        assert any(s.threads[1].stack and m.step(s, 0) is None and not m.thread_done(s, 0) and s.mms[0].alive
                   for s in reachable(m))


def test_exit_waits_for_a_fault():
    """... and for a fault; where p exits before t1 begins, t1 runs no
    operation (exit_group() ends it too): no stuck state (before, the model
    took t1 for a thread of a process not forked yet, and the search was
    inconclusive)."""
    c = _exit_during([("write", {"addr": 0}), ("read", {"addr": 0})])
    r = explore(CowModel(c, designs.load("linux-6.18")))
    assert r.status == "complete" and not r.bugs, (r.reason, r.bugs[:1])
