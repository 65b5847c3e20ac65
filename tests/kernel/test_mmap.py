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


def _merge_after_clear_refs(second="mmap"):
    """Pages 3..5 mapped and page 4 written (an anon_vma), soft-dirty cleared (clear_refs: VM_SOFTDIRTY off),
    then ``second`` over pages 1..3 and a read of page 3, then fork."""
    from cowlab.schedule import sequential
    s = Script("merge-soft-dirty", pages=6)
    p = s.process("parent")
    p.mmap(3, pages=3)
    p.write(4)
    p.clear_refs()
    p.mmap(1, pages=3)
    p.read(3)
    p.fork(s.process("child"))
    m = CowModel(s.build(), designs.load("linux-6.18"))
    run = sequential(m)
    trs = list(run)
    assert run.end == "done" and not any(tr.bugs for tr in trs)
    return trs[-1].state


def test_vm_softdirty_does_not_keep_vmas_apart():
    """is_mergeable_vma(): ``(vma->vm_flags ^ vm_flags) & ~VM_SOFTDIRTY`` (every version): the new vma at 1..3
    merges with the rest of the first one (4..5, contiguous vm_pgoff, its anon_vma) although clear_refs cleared
    VM_SOFTDIRTY there; mmap_region() sets VM_SOFTDIRTY on the merged vma.  Fork then copies the zero-page pte at
    page 3 (the vma has an anon_vma: vma_needs_copy()) -- a live 6.18 probe: the child maps page 3
    (docs/findings/mmap-merge-soft-dirty.toml, --random 2000 --seed 2612)."""
    from cowlab.kernel.types import VM_SOFTDIRTY
    end = _merge_after_clear_refs()
    parent, child = end.mms[0], end.mms[1]
    assert [(v.start, v.end) for v in parent.vmas] == [(1, 6)]
    assert parent.vmas[0].anon_vma and parent.vmas[0].flags & VM_SOFTDIRTY
    assert child.ptes[3] is not None
