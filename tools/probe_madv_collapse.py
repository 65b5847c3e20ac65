"""Live probe: does madvise(MADV_COLLAPSE) collapse a PTE-mapped anonymous THP
in cow.c's four anon_thp_test_cases[] setups (do_test_anon_thp_collapse())
on this kernel?  Prints, per setup, AnonHugePages (kB) of the range after
populating it and after PTE-mapping it, the madvise() result, and
AnonHugePages after the collapse.  Changes no sysfs knob (it needs THP
enabled=madvise or always) and uses no swap.

    python tools/probe_madv_collapse.py unshared fully lower upper

On this machine (6.18.44, 2026-12-02) every setup collapses (madvise() 0,
2048 kB PMD-mapped after), the fully shared one included: fork() made all of
the range's ptes R/O, so 6.18 no longer fails it with SCAN_PAGE_RO.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MADV_DOFORK, MADV_DONTFORK, MADV_HUGEPAGE, MADV_COLLAPSE = 11, 10, 14, 25
PROT_READ, PROT_RW = 1, 3
PAGE, THP = 4096, 2 << 20

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def anon_huge_kb(addr: int):
    """AnonHugePages of the mapping holding addr (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                inside = lo <= addr < hi
            elif inside and line.startswith("AnonHugePages:"):
                return int(head[1])
    return None


def collapse(mem: int) -> str:
    r = libc.madvise(mem, THP, MADV_COLLAPSE)
    return "0" if r == 0 else f"{r} ({os.strerror(ctypes.get_errno())})"


def run(test: str) -> None:
    raw = libc.mmap(None, 2 * THP, PROT_RW, 0x22, -1, 0)          # MAP_PRIVATE | MAP_ANONYMOUS
    mem = (raw + THP) & ~(THP - 1)
    assert libc.madvise(mem, THP, MADV_HUGEPAGE) == 0
    ctypes.memset(mem, 1, THP)
    populated = anon_huge_kb(mem)
    libc.mprotect(mem + PAGE, PAGE, PROT_READ)
    libc.mprotect(mem + PAGE, PAGE, PROT_RW)
    pte_mapped = anon_huge_kb(mem)
    if test == "unshared":
        print(test, populated, pte_mapped, collapse(mem), anon_huge_kb(mem))
        return
    if test == "lower":
        libc.madvise(mem + THP // 2, THP // 2, MADV_DONTFORK)
    elif test == "upper":
        libc.madvise(mem, THP // 2, MADV_DONTFORK)
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(rd, 1)
        os._exit(0)
    if test in ("lower", "upper"):
        libc.madvise(mem, THP, MADV_DOFORK)
    print(test, populated, pte_mapped, collapse(mem), anon_huge_kb(mem))
    os.write(wr, b"0")
    os.waitpid(pid, 0)


if __name__ == "__main__":
    print("setup populated_kB pte_mapped_kB madvise() after_kB")
    for t in sys.argv[1:] or ("unshared", "fully", "lower", "upper"):
        run(t)
