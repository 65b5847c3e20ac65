"""Ctrl-C in the middle of a conformance run: the machine is put back (zram
swap off and reset, sysctls and ksm knobs at their old values), the report
lists what was restored, and the run says it is inconclusive."""
import os
import signal
import subprocess
import sys
import time

import pytest

from . import machine

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the run changes swap and sysctls)")



def _helpers():
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"cowlab.conformance" in f.read():
                    out.append(pid)
        except OSError:
            pass
    return out


def _zram_swap_on():
    with open("/proc/swaps") as f:
        return "zram0" in f.read()


def test_ctrl_c_puts_the_machine_back():
    if not os.path.exists("/sys/block/zram0") or _zram_swap_on():
        pytest.skip("no free zram0 to set up swap on")
    before = machine.values()
    p = subprocess.Popen([sys.executable, "-m", "cowlab.cli", "conformance", "--thp"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _zram_swap_on() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it set up swap"
    time.sleep(2.0)                                  # well inside the run
    os.killpg(p.pid, signal.SIGINT)                  # as a terminal's Ctrl-C: the whole process group
    out, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "inconclusive" in err, err[-2000:]
    assert "restored" in out and "swapoff /dev/zram0 (restored)" in out, out[-2000:]
    assert not _zram_swap_on()
    assert machine.values() == before
    time.sleep(0.5)
    assert not _helpers(), f"helper processes outlived the run: {_helpers()}"
