"""Machine settings a conformance run changes, each put back on every exit
path (Ctrl-C too): swap only on a temporary zram device in RAM, never on
disk; /proc/sys values raised for the run; ksmd's knobs; the per-size
anonymous THP knobs (hugepages-<size>kB/enabled) for a case's thp_sizes."""
from __future__ import annotations

import contextlib
import fcntl
import json
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

#: the run's swap device on and off (highest priority: the kernel swaps to it before any other)
SWAPON = ["swapon", "-p", "32767", "/dev/zram0"]
SWAPOFF = ["swapoff", "/dev/zram0"]


#: what a run changed and has not put back yet, written before each change and cleared after its restoration: a
#: run killed with SIGKILL (or a machine reset mid-run) cannot restore, so the next run, once it holds the lock,
#: finds the file and undoes the changes first (holding the lock, no run that wrote it can still be alive)
UNDO_NAME = "cowlab-conformance.undo"
_undo_path: str | None = None


def _undo_load() -> list:
    try:
        with open(_undo_path) as f:
            data = json.load(f)
        return [tuple(e) for e in data.get("undo", [])] if isinstance(data, dict) else []
    except (OSError, ValueError, TypeError):
        return []


def _undo_save(entries: list) -> None:
    if _undo_path is None:
        return
    with contextlib.suppress(OSError):
        if not entries:
            os.unlink(_undo_path)
            return
        tmp = _undo_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "undo": [list(e) for e in entries]}, f)
        os.replace(tmp, _undo_path)


def _undo_add(entry: tuple) -> None:
    _undo_save([e for e in _undo_load() if e != entry] + [entry])


def _undo_done(entry: tuple) -> None:
    _undo_save([e for e in _undo_load() if e != entry])


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def recover(say=None) -> list:
    """Undo what an earlier run changed and never put back (its ledger);
    -> the lines said.  Called by machine_lock once the lock is held."""
    said = []
    for e in reversed(_undo_load()):
        try:
            if e[0] == "write":
                _, path, old = e
                if _read(path) != old:
                    _write(path, old)
                said.append(f"{path} back to {old} (left changed by an interrupted run)")
            elif e[0] == "zram":
                if zram_swap_on():
                    subprocess.run(SWAPOFF, capture_output=True)
                if _read("/sys/block/zram0/disksize") != "0":
                    _write("/sys/block/zram0/reset", "1")
                said.append("swapoff /dev/zram0, zram0 reset (left set up by an interrupted run)")
        except (OSError, ValueError):
            said.append(f"could not undo {e!r} left by an interrupted run")
    _undo_save([])
    for line in said:
        (say or (lambda m: print(m, file=sys.stderr)))(f"cowlab: {line}")
    return said


@contextlib.contextmanager
def machine_lock(path: str = LOCK_PATH, say=None):
    """One live-kernel run at a time on this machine: every run that changes
    the machine (zram swap, ksmd, nr_hugepages, pipe-max-size) holds this
    flock(2) lock; a second run waits for the first, saying so, rather than
    setting up (and restoring) the same knobs under it.  The kernel drops the
    lock when its holder exits, Ctrl-C or kill included; what a killed holder
    left changed is undone first (``recover``)."""
    global _undo_path
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        try:                                    # /run/lock missing (a container): the same lock in /tmp
            path = "/tmp/cowlab-conformance.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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
        outer, _undo_path = _undo_path, os.path.join(os.path.dirname(path), UNDO_NAME)

        def on_term(signum, frame):     # SIGTERM (timeout(1), a CI job cancelled) restores as Ctrl-C does
            raise KeyboardInterrupt

        old_term = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
        try:
            recover(say)
            yield
        finally:
            _undo_path = outer
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
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
        _undo_add(("zram",))
        _write(f"{dev}/disksize", size)
        changed.append(f"zram0 disksize 0 -> {size}")
        subprocess.run(["mkswap", "/dev/zram0"], check=True, capture_output=True)
        subprocess.run(SWAPON, check=True, capture_output=True)
        changed.append("swapon /dev/zram0")
        yield True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the restoration must not be interrupted
        try:
            if zram_swap_on():          # (whatever the moment of a Ctrl-C: ask the kernel, not a flag)
                off = subprocess.run(SWAPOFF, capture_output=True, text=True)
                changed.append("swapoff /dev/zram0 (restored)" if off.returncode == 0 else
                               f"swapoff /dev/zram0 FAILED: {off.stderr.strip()}")
            if os.path.isdir(dev) and _read(f"{dev}/disksize") != "0":
                _write(f"{dev}/reset", "1")
                changed.append("zram0 reset, disksize back to 0 (restored)")
            _undo_done(("zram",))
        finally:
            signal.signal(signal.SIGINT, old_int)


def restart_swap() -> str:
    """swapoff + swapon of the run's zram device (``temporary_swap``; nothing
    when it is not active): the swap allocator starts again from offset 1, its
    per-CPU clusters dropped (about 25 ms on an empty device).  "" when done or
    when there is no device; otherwise what failed, in one line."""
    if not zram_swap_on():
        return ""
    off = subprocess.run(SWAPOFF, capture_output=True, text=True)
    if off.returncode != 0:
        return f"swapoff /dev/zram0 failed ({off.stderr.strip() or off.returncode})"
    on = subprocess.run(SWAPON, capture_output=True, text=True)
    if on.returncode != 0:
        return f"swapon /dev/zram0 failed ({on.stderr.strip() or on.returncode})"
    return ""


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
        _undo_add(("write", path, old))
        _write(path, str(at_least))
        changed.append(f"{path} {old} -> {at_least}")
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _write(path, old)
            changed.append(f"{path} back to {old} (restored)")
            _undo_done(("write", path, old))
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
            _undo_add(("write", f"{base}/run", old["run"]))      # the real program switches it around each merge
            for k, v in KSM_KNOBS.items():
                if os.path.exists(f"{base}/{k}"):
                    old[k] = _read(f"{base}/{k}")
                    if old[k] != v:
                        _undo_add(("write", f"{base}/{k}", old[k]))
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
                    _undo_done(("write", f"{base}/{k}", v))
        finally:
            signal.signal(signal.SIGINT, old_int)


# ----------------------------------------------------------------------------- per-size anonymous THP (mTHP)
THP_ROOT = "/sys/kernel/mm/transparent_hugepage"


def choice(text: str) -> str:
    """The selected word of a sysfs choice knob ("always inherit [madvise] never" -> "madvise"), or the text
    itself when it has no brackets."""
    if "[" in text and "]" in text:
        return text[text.index("[") + 1:text.index("]")]
    return text.strip()


def anon_thp_knobs(root: str = THP_ROOT) -> dict:
    """{size in kB: path of its ``hugepages-<size>kB/enabled``} for every anonymous THP size the kernel offers
    (mm/huge_memory.c: one ``hugepages-<size>kB`` directory per order of THP_ORDERS_ALL; ``enabled`` only for the
    orders anonymous memory can use: a directory with only ``shmem_enabled``, hugepages-8kB on 6.18, is not one)."""
    out = {}
    try:
        names = os.listdir(root)
    except OSError:
        return out
    for name in names:
        if name.startswith("hugepages-") and name.endswith("kB"):
            try:
                kb = int(name[len("hugepages-"):-len("kB")])
            except ValueError:
                continue
            path = os.path.join(root, name, "enabled")
            if os.path.isfile(path):
                out[kb] = path
    return out


def thp_sizes_wanted(sizes, knobs: dict, page_kb: int) -> tuple[dict, str]:
    """-> ({path: value}, '') for a case's ``thp_sizes`` (in pages), or ({}, why not).

    Each size of the case gets ``madvise`` and every other size ``never``: the model's ``thp_sizes`` are the
    sizes "enabled for anonymous THP in VM_HUGEPAGE vmas", which is what ``madvise`` is
    (anon_enabled_store() sets the order in huge_anon_orders_madvise; thp_vma_allowable_orders() lets those
    orders only into VM_HUGEPAGE vmas; the per-size knobs since 6.8, 3485b88390b0).  cow.c writes ``always`` for
    the size under test and ``never`` for the PMD size (run_anon_test_case()); for its MADV_HUGEPAGE range, and the
    worker's, the two are the same, and ``madvise`` keeps the case's other mappings (no MADV_HUGEPAGE) on small
    pages, as the model has them."""
    want = {}
    for n in sizes:
        kb = n * page_kb
        if kb not in knobs:
            return {}, (f"thp_sizes: this kernel has no anonymous THP of {n} pages ({kb} kB): no "
                        f"hugepages-{kb}kB/enabled (it has {', '.join(f'{k} kB' for k in sorted(knobs)) or 'none'})")
        want[knobs[kb]] = "madvise"
    for kb, path in knobs.items():
        want.setdefault(path, "never")
    return want, ""


class ThpSizes:
    """The machine's per-size anonymous THP knobs for a run: ``apply(sizes)`` sets them for a case's
    ``thp_sizes`` (``None``: the machine's own settings, as before the run), each first change of a knob in the
    undo ledger (a killed run's knobs are put back by the next run's ``recover``); ``restore()`` puts every
    knob it changed back.  Use it through ``temporary_thp_sizes``."""

    def __init__(self, changed: list, root: str = THP_ROOT, page_kb: int | None = None):
        self.changed = changed
        self.root = root
        self.page_kb = page_kb or os.sysconf("SC_PAGE_SIZE") // 1024
        self.knobs = anon_thp_knobs(root)
        self.saved: dict = {}           # path -> the machine's value before the run
        self.current = None             # the sizes applied (None: the machine's own)

    def apply(self, sizes) -> str:
        """Set the knobs for ``sizes`` (pages); '' or why the case cannot run here."""
        sizes = tuple(sizes) if sizes else None
        if sizes == self.current:
            return ""
        if sizes is None:
            self.restore()
            return ""
        want, why = thp_sizes_wanted(sizes, self.knobs, self.page_kb)
        if why:
            return why
        for path, value in sorted(want.items()):
            now = choice(_read(path))
            if path not in self.saved:
                if now == value:
                    continue
                self.saved[path] = now
                _undo_add(("write", path, now))
            if now != value:
                _write(path, value)
                self.changed.append(f"{path} back to {value} (restored)" if self.saved.get(path) == value
                                    else f"{path} {now} -> {value}")
        self.current = sizes
        return ""

    def restore(self) -> None:
        for path, old in sorted(self.saved.items()):
            with contextlib.suppress(OSError):
                if choice(_read(path)) != old:
                    _write(path, old)
                    self.changed.append(f"{path} back to {old} (restored)")
                _undo_done(("write", path, old))
        self.saved.clear()
        self.current = None


@contextlib.contextmanager
def temporary_thp_sizes(changed: list, root: str = THP_ROOT, page_kb: int | None = None):
    """Yields a ``ThpSizes`` for the run; every knob it changed is put back on every exit path (Ctrl-C and
    SIGTERM too, which ``machine_lock`` turns into KeyboardInterrupt)."""
    knobs = ThpSizes(changed, root, page_kb)
    old_int = signal.getsignal(signal.SIGINT)
    try:
        yield knobs
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the restoration must not be interrupted
        try:
            knobs.restore()
        finally:
            signal.signal(signal.SIGINT, old_int)
