"""zram.restart_swap(): what it says when the swap device cannot be restarted (no root needed: the commands are
stood in for)."""
import subprocess

from cowlab.conformance import zram


class _Done:
    def __init__(self, rc, err=""):
        self.returncode, self.stderr = rc, err


def test_nothing_to_restart_without_the_device(monkeypatch):
    monkeypatch.setattr(zram, "zram_swap_on", lambda: False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    assert zram.restart_swap() == ""


def test_a_failed_swapoff_is_one_line(monkeypatch):
    calls = []
    monkeypatch.setattr(zram, "zram_swap_on", lambda: True)
    err = "swapoff: Cannot allocate memory"
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd) or _Done(1, err))
    assert zram.restart_swap() == "swapoff /dev/zram0 failed (swapoff: Cannot allocate memory)"
    assert calls == [["swapoff", "/dev/zram0"]]


def test_swapoff_then_swapon(monkeypatch):
    calls = []
    monkeypatch.setattr(zram, "zram_swap_on", lambda: True)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd) or _Done(0))
    assert zram.restart_swap() == ""
    assert calls == [["swapoff", "/dev/zram0"], ["swapon", "-p", "32767", "/dev/zram0"]]
