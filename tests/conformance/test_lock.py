"""One live-kernel run at a time: zram.machine_lock (no root needed, a lock
file of the test's own)."""
import multiprocessing
import os
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


def _killed_mid_run(path, knob):
    from cowlab.conformance import zram
    with machine_lock(path):
        zram._undo_add(("write", knob, "old"))    # what temporary_sysctl / temporary_ksm write before a change
        with open(knob, "w") as f:
            f.write("new")
        os._exit(9)                               # SIGKILL-like: no finally, no restoration


def test_what_a_killed_run_left_changed_is_undone_by_the_next(tmp_path):
    path, knob = str(tmp_path / "lock"), str(tmp_path / "knob")
    with open(knob, "w") as f:
        f.write("old")
    p = multiprocessing.get_context("fork").Process(target=_killed_mid_run, args=(path, knob))
    p.start()
    p.join(10)
    assert p.exitcode == 9 and open(knob).read() == "new"
    said = []
    with machine_lock(path, say=said.append):
        assert open(knob).read() == "old"
    assert any("interrupted run" in s and knob in s for s in said), said
    said.clear()
    with machine_lock(path, say=said.append):    # the ledger is gone once undone
        pass
    assert said == []


def _terminated_mid_run(path, marker):
    import signal
    try:
        with machine_lock(path):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    except KeyboardInterrupt:          # what the restorations' finally blocks and runner.Interrupted run on
        with open(marker, "w") as f:
            f.write("restored")
    os._exit(0)


def test_sigterm_during_a_run_unwinds_like_ctrl_c(tmp_path):
    """timeout(1) or a cancelled CI job sends SIGTERM: the run must put the machine back, not die in place."""
    marker = tmp_path / "marker"
    p = multiprocessing.get_context("fork").Process(target=_terminated_mid_run, args=(str(tmp_path / "lock"), marker))
    p.start()
    p.join(10)
    assert p.exitcode == 0 and marker.read_text() == "restored"
