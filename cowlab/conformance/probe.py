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
import platform as _platform
import re
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
MADV = {"dontneed": 4, "dontfork": 10, "dofork": 11, "mergeable": 12, "unmergeable": 13, "hugepage": 14,
        "nohugepage": 15, "pageout": 21, "collapse": 25}
PROT = {"r": PROT_READ, "rw": PROT_READ | PROT_WRITE, "none": PROT_NONE}
KPF_ANON_EXCLUSIVE = 34      # /proc/kpageflags: PG_anon_exclusive on anonymous pages (per the guide; 6.x)
KPF_ANON = 12
KPF_KSM = 21


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _check(ret, what):
    if ret in (-1, None) or (isinstance(ret, int) and ret < 0 and what != "mmap"):
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def die_with_parent(parent: int | None = None) -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL): a helper process of a conformance
    run must not outlive its parent (Ctrl-C, a kill, a timeout).  With
    ``parent`` (the pid it was started by), exit at once if that parent is
    already gone (it died before the prctl)."""
    import signal
    try:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except AttributeError:
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def fs_type(path: str) -> str:
    """The filesystem type of the mount holding ``path`` (/proc/self/mountinfo)."""
    path = os.path.realpath(path)
    best, kind = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), left.split()[4])
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, right.split()[0]
    return kind


#: filesystems whose O_DIRECT I/O GUPs the user's pages (iomap or fs/direct-io.c -> bio_iov_iter_get_pages());
#: tmpfs, overlays, FUSE, NFS and the like are left out: they copy, or pin differently
GUP_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "bcachefs", "gfs2", "ocfs2", "nilfs2", "exfat",
          "vfat"}


def odirect_dir() -> str:
    """A writable directory on a filesystem whose O_DIRECT I/O GUPs the user's
    pages (a block filesystem; not tmpfs): $COWLAB_ODIRECT_DIR, the
    temporary directory, /var/tmp, or the current directory."""
    import tempfile
    seen = []
    for d in (os.environ.get("COWLAB_ODIRECT_DIR"), tempfile.gettempdir(), "/var/tmp", os.getcwd()):
        if not d or not os.path.isdir(d) or not os.access(d, os.W_OK):
            continue
        t = fs_type(d)
        if t in GUP_FS:
            return d
        seen.append(f"{d} ({t})")
    raise Unsupported("O_DIRECT: no writable directory on a block filesystem whose O_DIRECT GUPs the pages "
                      "(set COWLAB_ODIRECT_DIR): " + ", ".join(seen))


#: the byte a store the model did not make writes (the model's tokens are 1..251): a write the model thought
#: faulted, or a DMA it thought went nowhere, still writes every page here, so the difference is seen
UNSTORED = 253


def _values(value, pages: int) -> list:
    """One byte per page of a store: the model's per-page values (padded
    with UNSTORED where the model stored nothing), or one value for all."""
    if isinstance(value, list):
        return value + [UNSTORED] * (pages - len(value))
    return [value] * pages


class Unsupported(Exception):
    """The host cannot run this operation (the case is skipped, with this reason)."""


class Memory:
    """One process's view of the case's address space: page index -> address."""

    def __init__(self, pages: int, shared: bool = False, align: int = 1):
        self.pages = pages
        self.shared = shared
        # find a free range, aligned (THP variants: to the PMD size), for page index -> address
        span = (pages + 2 * align) * PAGE
        base = libc.mmap(None, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap reserve")
        a = align * PAGE
        self.base = (base + a - 1) // a * a
        # the case's range stays reserved (PROT_NONE, no pages) wherever the case has nothing mapped: a
        # hole there would take the next mmap() of anything else -- an io_uring ring, an interpreter arena
        libc.munmap(base, self.base - base)
        end = self.base + pages * PAGE
        libc.munmap(end, base + span - end)
        self.pipes: dict = {}
        self.spliced: dict = {}       # pipe -> pages vmsplice()d into it

    def addr(self, a: int) -> int:
        return self.base + a * PAGE

    def _reserve(self, a: int, pages: int) -> None:
        """Put the PROT_NONE reservation back over [a, a + pages) (munmap, the
        source of an mremap): to the page-level facts compared it is the same
        as nothing mapped (no pages; any access faults)."""
        r = libc.mmap(self.addr(a), pages * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | 0x4000, -1, 0)
        if r != self.addr(a):
            raise OSError(ctypes.get_errno(), "mmap reserve")

    # -------------------------------------------------------------- operations
    def op(self, name: str, a: dict):
        fn = getattr(self, "op_" + name)
        return fn(**{k: v for k, v in a.items() if k not in ("process", "child_mm", "mm_id")})

    def op_mmap(self, addr=0, pages=1, prot="rw", thp=False, hugetlb=False):
        flags = (MAP_SHARED if self.shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED
        if hugetlb:
            flags |= 0x40000                                  # MAP_HUGETLB (default huge page size)
        r = libc.mmap(self.addr(addr), pages * PAGE, PROT[prot], flags, -1, 0)
        if r != self.addr(addr):
            raise OSError(ctypes.get_errno(), "mmap")
        if thp:
            _check(libc.madvise(self.addr(addr), pages * PAGE, MADV["hugepage"]), "madvise hugepage")

    def op_write(self, addr, value, pages=1):
        vals = _values(value, pages)
        for i, v in enumerate(vals):
            ctypes.memset(self.addr(addr + i), v, PAGE)

    def op_read(self, addr, pages=1):
        return [ctypes.string_at(self.addr(addr + i), 1)[0] for i in range(pages)]

    def op_mremap(self, addr, new_addr, pages=1):
        libc.mremap.restype = ctypes.c_void_p
        libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
        r = libc.mremap(self.addr(addr), pages * PAGE, pages * PAGE, 1 | 2, self.addr(new_addr))
        if r != self.addr(new_addr):
            raise OSError(ctypes.get_errno(), "mremap")
        self._reserve(addr, pages)

    def op_munmap(self, addr, pages=1):
        _check(libc.munmap(self.addr(addr), pages * PAGE), "munmap")
        self._reserve(addr, pages)

    def op_mprotect(self, addr, prot, pages=1):
        _check(libc.mprotect(self.addr(addr), pages * PAGE, PROT[prot]), "mprotect")

    def op_madvise(self, addr, advice, pages=1):
        _check(libc.madvise(self.addr(addr), pages * PAGE, MADV[advice]), f"madvise {advice}")

    def op_pageout(self, addr, shared_ok=False, pages=1):
        _check(libc.madvise(self.addr(addr), pages * PAGE, MADV["pageout"]), "madvise pageout")

    # O_DIRECT: a file on a filesystem that takes it (ext4/xfs/btrfs; tmpfs copies instead of GUP)
    def _dio(self):
        if getattr(self, "dio_fd", None) is None:
            import tempfile
            fd, path = tempfile.mkstemp(prefix="cowlab-odirect-", dir=odirect_dir())
            try:
                dfd = os.open(path, os.O_RDWR | os.O_DIRECT)
            except OSError as e:
                os.close(fd)
                os.unlink(path)
                raise Unsupported(f"O_DIRECT: the temporary directory's filesystem refuses it ({e.strerror})")
            os.unlink(path)             # the descriptors keep the file for the run
            self.dio_fd, self.buf_fd = dfd, fd
        return self.dio_fd, self.buf_fd

    def _span(self, addr, pages):
        return memoryview((ctypes.c_char * (pages * PAGE)).from_address(self.addr(addr))).cast("B")

    def op_odirect_read(self, addr, pages=1, io="dio", value=None):
        """read(2) with O_DIRECT from a file holding ``value`` into memory (GUP FOLL_WRITE)."""
        dfd, bfd = self._dio()
        vals = _values(1 if value is None else value, pages)
        os.pwrite(bfd, b"".join(bytes([v]) * PAGE for v in vals), 0)
        os.fsync(bfd)
        n = os.preadv(dfd, [self._span(addr, pages)], 0)
        if n != pages * PAGE:
            raise OSError(0, f"O_DIRECT read returned {n}")

    def op_odirect_write(self, addr, pages=1, io="dio"):
        """write(2) with O_DIRECT of memory to a file (R/O GUP); returns what the file got."""
        dfd, bfd = self._dio()
        n = os.pwritev(dfd, [self._span(addr, pages)], 0)
        if n != pages * PAGE:
            raise OSError(0, f"O_DIRECT write returned {n}")
        data = os.pread(bfd, pages * PAGE, 0)
        return [data[i * PAGE] for i in range(pages)]

    def op_clear_refs(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("4")

    def op_vmsplice(self, addr, pipe, pages=1):
        """vmsplice(2) of the range into the pipe; returns the pages the pipe
        holds (fewer than asked when GUP took only part of the range)."""
        if pipe not in self.pipes:
            r, w = os.pipe()
            if pages * PAGE > 65536:
                import fcntl
                fcntl.fcntl(w, 1031, pages * PAGE)      # F_SETPIPE_SZ: room for the whole range
            self.pipes[pipe] = (r, w)
        iov = Iovec(self.addr(addr), pages * PAGE)
        n = libc.vmsplice(self.pipes[pipe][1], ctypes.byref(iov), 1, 0)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"vmsplice: {os.strerror(e)}")
        # a short count is no error: GUP took the range up to a page it could not take
        self.spliced[pipe] = self.spliced.get(pipe, 0) + n // PAGE
        return self.spliced[pipe]

    def op_pipe_read(self, pipe):
        """Read what the pipe holds.  Non-blocking, not until EOF: a child
        forked after the vmsplice() holds the write end too, so EOF would
        wait for that child (a live run hung on it twice)."""
        r, w = self.pipes.pop(pipe)
        self.spliced.pop(pipe, None)
        os.close(w)
        os.set_blocking(r, False)
        data = b""
        while True:
            try:
                chunk = os.read(r, 1 << 16)
            except BlockingIOError:
                break
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
    for v in struct.unpack(f"{pages}Q", raw):
        out.append((bool(v >> 63 & 1), bool(v >> 62 & 1), v & ((1 << 55) - 1), bool(v >> 56 & 1)))
    return out


_KPAGE_FDS: dict = {}


def _kpage_words(name: str, pfns: list) -> dict:
    """pfn -> the 64-bit word of /proc/<name> for every pfn, reading each run
    of consecutive pfns (a THP's 512) with one pread."""
    fd = _KPAGE_FDS.get(name)
    if fd is None:
        fd = _KPAGE_FDS[name] = os.open(f"/proc/{name}", os.O_RDONLY)
    out = {}
    run = []
    for pfn in sorted(set(pfns)) + [None]:
        if run and (pfn is None or pfn != run[-1] + 1):
            raw = os.pread(fd, 8 * len(run), run[0] * 8)
            out.update(zip(run, struct.unpack(f"{len(run)}Q", raw)))
            run = []
        if pfn is not None:
            run.append(pfn)
    return out


def kpages(pfns: list) -> dict:
    """pfn -> (kpagecount, anon, PG_anon_exclusive, ksm)."""
    counts = _kpage_words("kpagecount", pfns)
    flags = _kpage_words("kpageflags", pfns)
    return {p: (counts[p], bool(flags[p] >> KPF_ANON & 1), bool(flags[p] >> KPF_ANON_EXCLUSIVE & 1),
                bool(flags[p] >> KPF_KSM & 1)) for p in counts}


KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 15, 16     # /proc/kpageflags (Documentation/admin-guide/mm/pagemap.rst)


def compound_pages(pfns: list) -> dict:
    """pfn -> (compound head, compound tail, last): whether the page is the head or a tail page of a large
    folio (kpageflags bits 15, 16: stable_page_flags() sets them for every page of a folio of order >= 1), and
    whether it is the folio's last page (the next pfn is no tail page).  With the pfns of a range this tells
    which pages are one folio and of what size, as cow.c's split and khugepaged selftests read it."""
    words = _kpage_words("kpageflags", list(pfns) + [p + 1 for p in pfns])
    out = {}
    for p in pfns:
        w = words[p]
        nxt = words.get(p + 1, 0)
        out[p] = (bool(w >> KPF_COMPOUND_HEAD & 1), bool(w >> KPF_COMPOUND_TAIL & 1),
                  not (nxt >> KPF_COMPOUND_TAIL & 1))
    return out


# ----------------------------------------------------------------------------- KSM
KSM = "/sys/kernel/mm/ksm"


def ksm_read(name: str) -> int:
    with open(f"{KSM}/{name}") as f:
        return int(f.read())


def ksm_write(name: str, value: int) -> None:
    with open(f"{KSM}/{name}", "w") as f:
        f.write(str(value))


def ksm_run_until(merged, scans: int = 4, timeout: float = 5.0) -> bool:
    """Let ksmd run (``run`` 1) until ``merged()`` is true or ``scans`` more
    full scans have passed (two are needed: the first only checksums a page;
    smart_scan is off for the run), then stop it (``run`` 0 keeps what it
    merged).  Returns merged()."""
    import time
    start = ksm_read("full_scans")
    ksm_write("run", 1)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if merged():
                return True
            if ksm_read("full_scans") >= start + scans:
                break
            time.sleep(0.002)
        return merged()
    finally:
        ksm_write("run", 0)


# ----------------------------------------------------------------------------- io_uring (raw syscalls)
_NR = {"x86_64": (425, 426, 427), "aarch64": (425, 426, 427)}.get(_platform.machine(), (425, 426, 427))
libc.syscall.restype = ctypes.c_long
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000
IORING_OP_READ_FIXED, IORING_OP_WRITE_FIXED = 4, 5
IORING_REGISTER_BUFFERS, IORING_UNREGISTER_BUFFERS = 0, 1
IORING_ENTER_GETEVENTS = 1


class _Params(ctypes.Structure):
    _fields_ = [("sq_entries", ctypes.c_uint32), ("cq_entries", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("sq_thread_cpu", ctypes.c_uint32), ("sq_thread_idle", ctypes.c_uint32),
                ("features", ctypes.c_uint32), ("wq_fd", ctypes.c_uint32), ("resv", ctypes.c_uint32 * 3),
                ("sq_off", ctypes.c_uint32 * 8), ("sq_user_addr", ctypes.c_uint64),
                ("cq_off", ctypes.c_uint32 * 8), ("cq_user_addr", ctypes.c_uint64)]


class Ring:
    """A minimal io_uring: one fixed buffer, one request at a time."""

    def __init__(self):
        p = _Params()
        fd = libc.syscall(_NR[0], 4, ctypes.byref(p))
        if fd < 0:
            e = ctypes.get_errno()
            if e in (1, 13, 38):         # EPERM/EACCES (kernel.io_uring_disabled), ENOSYS (not built)
                raise Unsupported(f"io_uring_setup: {os.strerror(e)} (io_uring disabled or not built here)")
            raise OSError(e, "io_uring_setup")
        self.fd = fd
        so, co = list(p.sq_off), list(p.cq_off)
        sq_len = so[6] + p.sq_entries * 4
        cq_len = co[5] + p.cq_entries * 16
        self.sq = libc.mmap(None, sq_len, PROT_READ | PROT_WRITE, 0x01 | 0x8000, fd, IORING_OFF_SQ_RING)
        self.cq = libc.mmap(None, cq_len, PROT_READ | PROT_WRITE, 0x01 | 0x8000, fd, IORING_OFF_CQ_RING)
        self.sqes = libc.mmap(None, p.sq_entries * 64, PROT_READ | PROT_WRITE, 0x01 | 0x8000, fd, IORING_OFF_SQES)
        if any(x in (None, ctypes.c_void_p(-1).value) for x in (self.sq, self.cq, self.sqes)):
            raise OSError(ctypes.get_errno(), "io_uring mmap")
        self.so, self.co = so, co
        u32 = lambda base, off: ctypes.c_uint32.from_address(base + off)
        self.sq_tail, self.sq_mask, self.sq_array = u32(self.sq, so[1]), u32(self.sq, so[2]).value, self.sq + so[6]
        self.cq_head, self.cq_tail, self.cq_mask = u32(self.cq, co[0]), u32(self.cq, co[1]), u32(self.cq, co[2]).value
        self.cqes = self.cq + co[5]
        self.sizes = (sq_len, cq_len, p.sq_entries * 64)

    def register(self, addr: int, length: int) -> None:
        iov = Iovec(addr, length)
        if libc.syscall(_NR[2], self.fd, IORING_REGISTER_BUFFERS, ctypes.byref(iov), 1) < 0:
            raise OSError(ctypes.get_errno(), "IORING_REGISTER_BUFFERS")

    def unregister(self) -> None:
        libc.syscall(_NR[2], self.fd, IORING_UNREGISTER_BUFFERS, None, 0)

    def rw_fixed(self, opcode: int, fd: int, addr: int, length: int) -> int:
        tail = self.sq_tail.value
        idx = tail & self.sq_mask
        sqe = self.sqes + idx * 64
        ctypes.memset(sqe, 0, 64)
        ctypes.c_uint8.from_address(sqe).value = opcode
        ctypes.c_int32.from_address(sqe + 4).value = fd
        ctypes.c_uint64.from_address(sqe + 8).value = 0          # file offset
        ctypes.c_uint64.from_address(sqe + 16).value = addr
        ctypes.c_uint32.from_address(sqe + 24).value = length
        ctypes.c_uint64.from_address(sqe + 32).value = 7         # user_data
        ctypes.c_uint16.from_address(sqe + 40).value = 0         # buf_index
        ctypes.c_uint32.from_address(self.sq_array + idx * 4).value = idx
        self.sq_tail.value = tail + 1
        if libc.syscall(_NR[1], self.fd, 1, 1, IORING_ENTER_GETEVENTS, None, 0) < 0:
            raise OSError(ctypes.get_errno(), "io_uring_enter")
        head = self.cq_head.value
        while self.cq_tail.value == head:
            libc.syscall(_NR[1], self.fd, 0, 1, IORING_ENTER_GETEVENTS, None, 0)
        res = ctypes.c_int32.from_address(self.cqes + (head & self.cq_mask) * 16 + 8).value
        self.cq_head.value = head + 1
        return res

    def close(self) -> None:
        for base, n in zip((self.sq, self.cq, self.sqes), self.sizes):
            libc.munmap(base, n)
        os.close(self.fd)


def _iouring_ops(cls):
    def op_io_uring_register(self, addr, buf="buf", pages=1, fast=False):
        """A ring and IORING_REGISTER_BUFFERS of the range; a ring whose
        registration the kernel refused is kept (no buffer in it), so that a
        later READ_FIXED / WRITE_FIXED through it gets the kernel's answer."""
        ring = Ring()
        fd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
        self.rings = getattr(self, "rings", {})
        self.rings[buf] = (ring, fd, addr, pages)
        ring.register(self.addr(addr), pages * PAGE)

    def op_io_uring_write_fixed(self, buf="buf"):
        ring, fd, addr, pages = self.rings[buf]
        n = ring.rw_fixed(IORING_OP_WRITE_FIXED, fd, self.addr(addr), pages * PAGE)
        if n != pages * PAGE:
            raise OSError(-n if n < 0 else 0, f"WRITE_FIXED returned {n}")
        data = os.pread(fd, pages * PAGE, 0)
        return [data[i] for i in range(0, len(data), PAGE)]

    def op_io_uring_read_fixed(self, buf="buf", value=None):
        ring, fd, addr, pages = self.rings[buf]
        vals = _values(value, pages)
        os.pwrite(fd, b"".join(bytes([v]) * PAGE for v in vals), 0)
        n = ring.rw_fixed(IORING_OP_READ_FIXED, fd, self.addr(addr), pages * PAGE)
        if n != pages * PAGE:
            raise OSError(-n if n < 0 else 0, f"READ_FIXED returned {n}")

    def op_io_uring_unregister(self, buf="buf"):
        ring, fd, addr, pages = self.rings.pop(buf)
        ring.unregister()
        ring.close()
        os.close(fd)

    for f in (op_io_uring_register, op_io_uring_write_fixed, op_io_uring_read_fixed, op_io_uring_unregister):
        setattr(cls, f.__name__, f)
    return cls


_iouring_ops(Memory)
