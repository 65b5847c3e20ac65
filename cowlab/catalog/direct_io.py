"""O_DIRECT cases: the pages of an O_DIRECT read or write are taken with
GUP (bio_iov_iter_get_pages(); FOLL_GET before 6.5, FOLL_PIN from 6.5,
a7e689dd1c06) on a page a fork()ed child still shares."""
from __future__ import annotations

from ..scenario import Script

SRC_READ = ("a read(2) with O_DIRECT is a FOLL_WRITE GUP: faultin_page() breaks COW first in every version "
            "(mm/gup.c); live-kernel probe (cowlab conformance)")
SRC_WRITE = ("a write(2) with O_DIRECT is a R/O GUP: FOLL_GET before 6.5 leaves the page shared; from 6.5 "
             "(a7e689dd1c06) it is FOLL_PIN and gup_must_unshare() (5.19) unshares a !PageAnonExclusive page; "
             "live-kernel probe (cowlab conformance)")


def odirect_read_after_fork():
    """The parent reads a file with O_DIRECT into a page it shares with its
    child: the DMA must land in a page of the parent's own."""
    s = Script("odirect-read-after-fork", "O_DIRECT read into a page shared with a child", pages=1,
               source=SRC_READ, tags=("odirect",))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0)
    p.write(0)
    p.fork(c)
    p.odirect_read(0, io="r")
    p.read(0)
    c.read(0)
    c.write(0)
    c.read(0)
    c.exit()
    return s.build()


def odirect_write_after_fork():
    """The parent writes a page it shares with its child to a file with
    O_DIRECT; then both write the page."""
    s = Script("odirect-write-after-fork", "O_DIRECT write from a page shared with a child", pages=1,
               source=SRC_WRITE, tags=("odirect",))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0)
    p.write(0)
    p.fork(c)
    p.odirect_write(0, io="w")
    c.read(0)
    c.write(0)
    p.read(0)
    p.write(0)
    p.read(0)
    c.exit()
    return s.build()


def cases():
    return [odirect_read_after_fork(), odirect_write_after_fork()]
