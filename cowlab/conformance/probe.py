"""Real-kernel side of conformance: run a case's operations as a real program
(ctypes: mmap, fork, munmap, mprotect, madvise, vmsplice, pipe reads,
clear_refs) and read what the kernel did from /proc/<pid>/pagemap,
/proc/kpagecount and /proc/kpageflags (root needed for PFNs and flags).

The coordinator process is the scenario's first process; a forked process
runs a command loop on a pipe, so the coordinator can drive every process in
the script's order and look at all of them between two operations.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

PAGE = os.sysconf("SC_PAGE_SIZE")
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.vmsplice.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
libc.vmsplice.restype = ctypes.c_ssize_t

PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MADV = {"dontneed": 4, "dontfork": 10, "dofork": 11, "hugepage": 14, "nohugepage": 15, "pageout": 21}
PROT = {"r": PROT_READ, "rw": PROT_READ | PROT_WRITE, "none": PROT_NONE}
KPF_ANON_EXCLUSIVE = 34      # /proc/kpageflags: PG_anon_exclusive on anonymous pages (per the guide; 6.x)
KPF_ANON = 12


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _check(ret, what):
    if ret in (-1, None) or (isinstance(ret, int) and ret < 0 and what != "mmap"):
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


class Memory:
    """One process's view of the case's address space: page index -> address."""

    def __init__(self, pages: int, shared: bool = False):
        self.pages = pages
        self.shared = shared
        # reserve the range so that page indices map to fixed addresses
        base = libc.mmap(None, (pages + 1) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap reserve")
        self.base = (base + PAGE - 1) // PAGE * PAGE
        libc.munmap(base, (pages + 1) * PAGE)
        self.pipes: dict = {}

    def addr(self, a: int) -> int:
        return self.base + a * PAGE

    # -------------------------------------------------------------- operations
    def op(self, name: str, a: dict):
        fn = getattr(self, "op_" + name)
        return fn(**{k: v for k, v in a.items() if k not in ("process", "child_mm", "mm_id")})

    def op_mmap(self, addr=0, pages=1, prot="rw", thp=False, hugetlb=False):
        flags = (MAP_SHARED if self.shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED
        r = libc.mmap(self.addr(addr), pages * PAGE, PROT[prot], flags, -1, 0)
        if r != self.addr(addr):
            raise OSError(ctypes.get_errno(), "mmap")

    def op_write(self, addr, value):
        ctypes.memset(self.addr(addr), value, PAGE)

    def op_read(self, addr):
        return ctypes.string_at(self.addr(addr), 1)[0]

    def op_munmap(self, addr, pages=1):
        _check(libc.munmap(self.addr(addr), pages * PAGE), "munmap")

    def op_mprotect(self, addr, prot, pages=1):
        _check(libc.mprotect(self.addr(addr), pages * PAGE, PROT[prot]), "mprotect")

    def op_madvise(self, addr, advice, pages=1):
        _check(libc.madvise(self.addr(addr), pages * PAGE, MADV[advice]), f"madvise {advice}")

    def op_pageout(self, addr, shared_ok=False):
        _check(libc.madvise(self.addr(addr), PAGE, MADV["pageout"]), "madvise pageout")

    def op_clear_refs(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("4")

    def op_vmsplice(self, addr, pipe, pages=1):
        if pipe not in self.pipes:
            r, w = os.pipe()
            self.pipes[pipe] = (r, w)
        iov = Iovec(self.addr(addr), pages * PAGE)
        n = libc.vmsplice(self.pipes[pipe][1], ctypes.byref(iov), 1, 0)
        if n != pages * PAGE:
            raise OSError(ctypes.get_errno(), f"vmsplice returned {n}")
        return None

    def op_pipe_read(self, pipe):
        r, w = self.pipes.pop(pipe)
        os.close(w)
        data = b""
        while True:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            data += chunk
        os.close(r)
        return [data[i] for i in range(0, len(data), PAGE)]


def pagemap(pid: int, base: int, pages: int) -> list:
    """[(present, swapped, pfn, exclusively_mapped)] per page."""
    out = []
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(base // PAGE * 8)
        raw = f.read(8 * pages)
    for i in range(pages):
        v = struct.unpack_from("Q", raw, i * 8)[0]
        out.append((bool(v >> 63 & 1), bool(v >> 62 & 1), v & ((1 << 55) - 1), bool(v >> 56 & 1)))
    return out


def kpage(pfn: int) -> tuple:
    """(kpagecount, anon, PG_anon_exclusive) of a pfn."""
    with open("/proc/kpagecount", "rb") as f:
        f.seek(pfn * 8)
        count = struct.unpack("Q", f.read(8))[0]
    with open("/proc/kpageflags", "rb") as f:
        f.seek(pfn * 8)
        flags = struct.unpack("Q", f.read(8))[0]
    return count, bool(flags >> KPF_ANON & 1), bool(flags >> KPF_ANON_EXCLUSIVE & 1)
