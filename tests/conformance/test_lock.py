"""One live-kernel run at a time: zram.machine_lock (no root needed, a lock
file of the test's own)."""
import multiprocessing
import threading
import time

from cowlab.conformance.zram import machine_lock


def _hold(path, ready, release):
    with machine_lock(path):
        ready.set()
        release.wait(10)


def test_a_second_run_waits_for_the_first_and_says_so(tmp_path):
    path = str(tmp_path / "lock")
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(path, ready, release))
    holder.start()
    assert ready.wait(10)
    said = []
    t0 = time.monotonic()
    threading.Timer(0.3, release.set).start()
    with machine_lock(path, say=said.append):
        waited = time.monotonic() - t0
    holder.join(10)
    assert said and "waiting" in said[0] and path in said[0]
    assert waited >= 0.25            # it did not go ahead while the first held the lock


def test_the_lock_is_free_again_after_its_holder_exits(tmp_path):
    path = str(tmp_path / "lock")
    with machine_lock(path):
        pass
    said = []
    with machine_lock(path, say=said.append):
        pass
    assert said == []
