"""O_DIRECT: fs/direct-io.c / fs/iomap/direct-io.c -> bio_iov_iter_get_pages().

Before 6.5 the pages were taken with get_user_pages_fast(FOLL_GET [|FOLL_WRITE]);
from 6.5 (a7e689dd1c06, iov_iter_extract_pages()) with FOLL_PIN (short-term).
A read(2) from a file into memory is FOLL_WRITE: the device DMAs into the
pages; a write(2) from memory reads them.  The reference lives while the I/O
is in flight: ``odirect_read``/``odirect_write`` start it, the
``odirect_complete`` step finishes it (bio completion, put/unpin).

A range GUP cannot take whole: the bios of the pages it took are submitted
and complete (the data moves for those pages), then the call returns -EFAULT
(__iomap_dio_rw() sets the iomap_iter() error on the dio: ext4/xfs pass no
IOMAP_DIO_PARTIAL; 5.7 .. 6.18; seen on 6.18 ext4: a 2-page O_DIRECT read
whose second page is unmapped returns EFAULT with page 0 filled).
"""
from __future__ import annotations

from ..effects import Error, Load
from ..paths import step, op, Goto
from ..types import FOLL_WRITE, FOLL_FAST
from ..mm.gup import start_gup
from ..mm.internal import EFAULT
from ..mm.memory import store


def _owner(op) -> str:
    return f"{op['process']}:{op.get('io', 'dio')}"


@step("dio.read")
def dio_read_start(k, fr, op):
    n = op.get("pages", 1)
    return start_gup(fr, range(op["addr"], op["addr"] + n), k.design.odirect_gup | FOLL_WRITE | FOLL_FAST,
                     "odirect", _owner(op), "dio.read_io")


@step("dio.read_io")
def dio_read_io(k, fr, op):
    """The device writes the file data into the referenced pages; a GUP
    that failed part-way makes the call -EFAULT."""
    for r in sorted(r for r in k.refs_held_by(_owner(op)) if r.kind == "odirect"):
        store(k, r.mm, r.addr, k.mk_pte(r.pfn, r.idx), op.get("value") or k.new_token(), via=r)
    if k.ret:
        k.effect(Error("odirect_read", k.mm, op["addr"], -EFAULT))
    return Goto("dio.complete")


@step("dio.write")
def dio_write_start(k, fr, op):
    n = op.get("pages", 1)
    return start_gup(fr, range(op["addr"], op["addr"] + n), k.design.odirect_gup | FOLL_FAST,
                     "odirect", _owner(op), "dio.write_io")


@step("dio.write_io")
def dio_write_io(k, fr, op):
    """The device reads the referenced pages; a GUP that failed part-way
    makes the call -EFAULT."""
    for r in sorted(r for r in k.refs_held_by(_owner(op)) if r.kind == "odirect"):
        k.effect(Load("odirect", r.owner, r.mm, r.addr, r.pfn, r.idx, k.folio(r.pfn).data[r.idx]))
    if k.ret:
        k.effect(Error("odirect_write", k.mm, op["addr"], -EFAULT))
    return Goto("dio.complete")


@step("dio.complete")
def dio_complete(k, fr, op):
    """bio completion: bio_release_pages() -> put_page()/unpin_user_page()."""
    for r in [r for r in k.refs_held_by(_owner(op)) if r.kind == "odirect"]:
        k.drop_ref(r)
    return None


op("odirect_read", "dio.read", "read(O_DIRECT) into memory", ("addr", "pages", "io", "value"),
   "O_DIRECT read from a file into memory (FOLL_WRITE; DMA lands in the pages)")
op("odirect_write", "dio.write", "write(O_DIRECT) from memory", ("addr", "pages", "io"),
   "O_DIRECT write of memory to a file (R/O reference)")
