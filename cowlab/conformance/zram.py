"""Machine settings a conformance run changes, each put back on every exit
path (Ctrl-C too): swap only on a temporary zram device in RAM, never on
disk; /proc/sys values raised for the run; ksmd's knobs."""
from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import shutil
import signal
import subprocess


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def _read(path):
    with open(path) as f:
        return f.read().strip()


def zram_swap_on() -> bool:
    """Is /dev/zram0 an active swap device (/proc/swaps)?"""
    try:
        with open("/proc/swaps") as f:
            return any(line.split()[0] == "/dev/zram0" for line in f.read().splitlines()[1:] if line.split())
    except OSError:
        return False


LOCK_PATH = "/run/lock/cowlab-conformance.lock"


@contextlib.contextmanager
def machine_lock(path: str = LOCK_PATH, say=None):
    """One live-kernel run at a time on this machine: every run that changes
    the machine (zram swap, ksmd, nr_hugepages, pipe-max-size) holds this
    flock(2) lock; a second run waits for the first, saying so, rather than
    setting up (and restoring) the same knobs under it.  The kernel drops the
    lock when its holder exits, Ctrl-C or kill included."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        try:                                    # /run/lock missing (a container): the same lock in /tmp
            fd = os.open("/tmp/cowlab-conformance.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield
            return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            (say or (lambda m: print(m, file=sys.stderr)))(
                f"cowlab: another live-kernel run holds {path}; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def temporary_swap(wanted: bool, changed: list, size: str = "256M"):
    """Yields True when a temporary zram swap device is active.  ``changed``
    receives a line for every change and its restoration."""
    if not wanted:
        yield False
        return
    dev = "/sys/block/zram0"
    if not (os.path.isdir(dev) and shutil.which("mkswap") and shutil.which("swapon") and os.geteuid() == 0):
        changed.append("swap not set up: needs root, /sys/block/zram0, mkswap and swapon")
        yield False
        return
    if _read(f"{dev}/disksize") != "0":
        changed.append("swap not set up: zram0 is in use")
        yield False
        return
    old_int = signal.getsignal(signal.SIGINT)
    try:
        _write(f"{dev}/disksize", size)
        changed.append(f"zram0 disksize 0 -> {size}")
        subprocess.run(["mkswap", "/dev/zram0"], check=True, capture_output=True)
        subprocess.run(["swapon", "-p", "32767", "/dev/zram0"], check=True, capture_output=True)
        changed.append("swapon /dev/zram0")
        yield True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the restoration must not be interrupted
        try:
            if zram_swap_on():          # (whatever the moment of a Ctrl-C: ask the kernel, not a flag)
                off = subprocess.run(["swapoff", "/dev/zram0"], capture_output=True, text=True)
                changed.append("swapoff /dev/zram0 (restored)" if off.returncode == 0 else
                               f"swapoff /dev/zram0 FAILED: {off.stderr.strip()}")
            if os.path.isdir(dev) and _read(f"{dev}/disksize") != "0":
                _write(f"{dev}/reset", "1")
                changed.append("zram0 reset, disksize back to 0 (restored)")
        finally:
            signal.signal(signal.SIGINT, old_int)


@contextlib.contextmanager
def temporary_sysctl(path: str, at_least: int, changed: list):
    """Raise a numeric /proc/sys value to at least ``at_least`` for the run,
    put back on every exit path."""
    try:
        old = _read(path)
    except OSError:
        yield
        return
    if int(old) >= at_least or os.geteuid() != 0:
        yield
        return
    old_int = signal.getsignal(signal.SIGINT)
    try:
        _write(path, str(at_least))
        changed.append(f"{path} {old} -> {at_least}")
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _write(path, old)
            changed.append(f"{path} back to {old} (restored)")
        finally:
            signal.signal(signal.SIGINT, old_int)


KSM_KNOBS = {"sleep_millisecs": "2", "smart_scan": "0", "pages_to_scan": "1000"}


@contextlib.contextmanager
def temporary_ksm(changed: list):
    """ksmd quick and without smart_scan (which would skip a page that failed
    to merge while pinned) for the run; ``run`` itself is switched by the
    real program around each merge and put back here."""
    base = "/sys/kernel/mm/ksm"
    old = {}
    old_int = signal.getsignal(signal.SIGINT)
    try:
        try:
            old["run"] = _read(f"{base}/run")
            for k, v in KSM_KNOBS.items():
                if os.path.exists(f"{base}/{k}"):
                    old[k] = _read(f"{base}/{k}")
                    if old[k] != v:
                        _write(f"{base}/{k}", v)
                        changed.append(f"{base}/{k} {old[k]} -> {v}")
        except OSError as e:
            changed.append(f"ksm knobs not set: {e}")
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for k, v in old.items():
                with contextlib.suppress(OSError):
                    if _read(f"{base}/{k}") != v:
                        _write(f"{base}/{k}", v)
                        changed.append(f"{base}/{k} back to {v} (restored)")
        finally:
            signal.signal(signal.SIGINT, old_int)
