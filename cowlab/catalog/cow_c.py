"""The anonymous test cases of tools/testing/selftests/mm/cow.c
(``anon_test_cases[]``, torvalds/linux 109364fce504 / 49850bd02658), on a
base page (``do_run_with_base_page``: one private anonymous page,
MADV_NOHUGEPAGE, memset to 1 before the test).  Titles are the selftest's.
The sequence of each test follows the C code; the sync pipes become the
script order."""
from __future__ import annotations

from ..scenario import Script

SRC = "tools/testing/selftests/mm/cow.c (anon_test_cases[], run with base page)"


def _base(id, title, tags=()):
    s = Script(id, title, pages=1, source=SRC, tags=("cow.c", "base") + tuple(tags))
    p = s.process("parent")
    p.mmap(0, pages=1)
    p.write(0)                      # memset(mem, 1, pagesize)
    return s, p


def cow_in_parent(id, title, mprotect=False, vmsplice=False):
    """do_test_cow_in_parent(): child_memcmp_fn / child_vmsplice_memcmp_fn."""
    s, p = _base(id, title)
    c = s.process("child")
    p.fork(c)
    c.read(0)                       # child: memcpy(old, mem)
    if vmsplice:
        c.vmsplice(0, pipe="p")     # vmsplice(fds[1], &iov, 1, 0)
        c.munmap(0)
    if mprotect:
        p.mprotect(0, prot="r")
        p.mprotect(0, prot="rw")
    p.write(0)                      # memset(mem, 0xff, size) with the child alive
    if vmsplice:
        c.pipe_read("p")            # child: read the pipe, compare with old
    else:
        c.read(0)                   # child: memcmp(old, mem)
    c.exit()
    return s.build()


def vmsplice_in_parent(id, title, before_fork):
    """do_test_vmsplice_in_parent()."""
    s, p = _base(id, title)
    c = s.process("child")
    p.read(0)                       # memcpy(old, mem)
    if before_fork:
        p.vmsplice(0, pipe="p")
    p.fork(c)
    if not before_fork:
        p.vmsplice(0, pipe="p")
    p.munmap(0)
    c.write(0)                      # child: memset(mem, 0xff)
    c.exit()
    p.pipe_read("p")                # parent: read the pipe, compare with old
    return s.build()


def iouring(id, title, use_fork):
    """do_test_iouring(): register (long-term R/W pin), then fork or
    mprotect(R)+clear_softdirty()+mprotect(RW), memset 0xff, write_fixed to a
    file and compare it with memory."""
    s, p = _base(id, title)
    p.io_uring_register(0, buf="b")
    if use_fork:
        c = s.process("child")
        p.fork(c)
    else:
        p.mprotect(0, prot="r")
        p.clear_refs()
        p.mprotect(0, prot="rw")
    p.write(0)
    p.io_uring_write_fixed(buf="b")
    p.io_uring_unregister(buf="b")
    if use_fork:
        c.exit()
    return s.build()


def ro_pin(id, title, test, fast):
    """do_test_ro_pin(): PIN_LONGTERM_TEST_START (R/O, fast or not),
    memset 0xff, PIN_LONGTERM_TEST_READ must see it."""
    s, p = _base(id, title)
    if test in ("shared", "previously-shared"):
        c = s.process("child")
        p.fork(c)
        if test == "previously-shared":
            c.exit()
    else:
        p.mprotect(0, prot="r")
        p.clear_refs()
        p.mprotect(0, prot="rw")
    p.pin_longterm(0, fast=fast)
    p.write(0)
    p.pin_read()
    p.unpin()
    if test == "shared":
        c.exit()
    return s.build()


def cases():
    return [
        cow_in_parent("basic-cow-fork", "Basic COW after fork()"),
        cow_in_parent("basic-cow-fork-mprotect", "Basic COW after fork() with mprotect() optimization", mprotect=True),
        cow_in_parent("vmsplice-unmap-child", "vmsplice() + unmap in child", vmsplice=True),
        cow_in_parent("vmsplice-unmap-child-mprotect", "vmsplice() + unmap in child with mprotect() optimization",
                      mprotect=True, vmsplice=True),
        vmsplice_in_parent("vmsplice-before-fork", "vmsplice() before fork(), unmap in parent after fork()", True),
        vmsplice_in_parent("vmsplice-after-fork", "vmsplice() + unmap in parent after fork()", False),
        iouring("iouring-ro-mapping", "R/O-mapping a page registered as iouring fixed buffer", False),
        iouring("iouring-fork", "fork() with an iouring fixed buffer", True),
        ro_pin("ro-pin-shared", "R/O GUP pin on R/O-mapped shared page", "shared", False),
        ro_pin("ro-fast-pin-shared", "R/O GUP-fast pin on R/O-mapped shared page", "shared", True),
        ro_pin("ro-pin-previously-shared", "R/O GUP pin on R/O-mapped previously-shared page", "previously-shared",
               False),
        ro_pin("ro-fast-pin-previously-shared", "R/O GUP-fast pin on R/O-mapped previously-shared page",
               "previously-shared", True),
        ro_pin("ro-pin-exclusive", "R/O GUP pin on R/O-mapped exclusive page", "exclusive", False),
        ro_pin("ro-fast-pin-exclusive", "R/O GUP-fast pin on R/O-mapped exclusive page", "exclusive", True),
    ]
