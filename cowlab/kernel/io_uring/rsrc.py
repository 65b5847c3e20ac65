"""io_uring/rsrc.c fixed buffers.

io_sqe_buffer_register() -> io_pin_pages() -> pin_user_pages(_fast)(FOLL_WRITE
| FOLL_LONGTERM): a long-term R/W pin per page until unregistered (or the ring is
closed at exit).  IORING_OP_READ_FIXED DMAs file data into the pinned pages
(a store the process must see); IORING_OP_WRITE_FIXED reads them (an
observation that must equal what the process has there).

Versions: 5.7 .. 6.18 (fs/io_uring.c before 6.0; pin_user_pages() under
mmap_lock in 5.x, pin_user_pages_fast() later: the ``fast`` argument).

A registration fails whole: io_pin_pages() (io_sqe_buffer_register() in 5.x)
unpins the pages pin_user_pages() did take when it took fewer than asked and
returns -EFAULT (5.7 .. 6.18).  A READ_FIXED / WRITE_FIXED through a ring with
no buffer registered fails with -EFAULT (io_import_fixed(); io_find_buf_node()
from 6.14).
"""
from __future__ import annotations

from ..effects import Error, Load
from ..paths import step, op
from ..types import FOLL_PIN, FOLL_WRITE, FOLL_LONGTERM, FOLL_FAST
from ..mm.gup import start_gup
from ..mm.internal import EFAULT
from ..mm.memory import store


def buf_owner(op) -> str:
    return f"{op['process']}:{op.get('buf', 'buf')}"


@step("io_uring.register")
def io_sqe_buffer_register(k, fr, op):
    n = op.get("pages", 1)
    fast = FOLL_FAST if op.get("fast", False) else 0
    return start_gup(fr, range(op["addr"], op["addr"] + n), FOLL_PIN | FOLL_WRITE | FOLL_LONGTERM | fast,
                     "io_uring", buf_owner(op), "io_uring.registered")


@step("io_uring.registered")
def io_sqe_buffer_registered(k, fr, op):
    """io_pin_pages()'s end: on a failure unpin_user_pages() of what was
    pinned, and the registration returns -EFAULT."""
    if k.ret:
        for r in _bufs(k, op):
            k.drop_ref(r)
        k.effect(Error("io_uring_register", k.mm, op["addr"], -EFAULT))
    return None


def _bufs(k, op):
    """The fixed buffer's pinned pages in the order they were registered
    (Ref.taken_at: mremap() may have moved a page since)."""
    return sorted((r for r in k.refs_held_by(buf_owner(op)) if r.kind == "io_uring"),
                  key=lambda r: (r.taken_at, r))


@step("io_uring.read_fixed")
def io_read_fixed(k, fr, op):
    """IORING_OP_READ_FIXED: the file's data lands in the pinned pages."""
    if not _bufs(k, op):
        k.effect(Error("io_uring_read_fixed", k.mm, -1, -EFAULT))
    for r in _bufs(k, op):
        pte = k.mk_pte(r.pfn, r.idx)
        store(k, r.mm, r.addr, pte, op.get("value") or k.new_token(), via=r)
    return None


@step("io_uring.write_fixed")
def io_write_fixed(k, fr, op):
    """IORING_OP_WRITE_FIXED: the pinned pages' data goes to the file."""
    if not _bufs(k, op):
        k.effect(Error("io_uring_write_fixed", k.mm, -1, -EFAULT))
    for r in _bufs(k, op):
        k.effect(Load("io_uring", r.owner, r.mm, r.addr, r.pfn, r.idx, k.folio(r.pfn).data[r.idx]))
    return None


@step("io_uring.unregister")
def io_sqe_buffers_unregister(k, fr, op):
    """io_sqe_buffers_unregister() -> unpin_user_pages()."""
    for r in _bufs(k, op):
        k.drop_ref(r)
    return None


op("io_uring_register", "io_uring.register", "io_uring_register(IORING_REGISTER_BUFFERS)",
   ("addr", "pages", "buf", "fast"), "register a fixed buffer (long-term R/W FOLL_PIN)")
op("io_uring_read_fixed", "io_uring.read_fixed", "IORING_OP_READ_FIXED", ("buf", "value"),
   "DMA new data into the fixed buffer")
op("io_uring_write_fixed", "io_uring.write_fixed", "IORING_OP_WRITE_FIXED", ("buf",),
   "DMA the fixed buffer out and check it")
op("io_uring_unregister", "io_uring.unregister", "io_uring_register(IORING_UNREGISTER_BUFFERS)", ("buf",),
   "unpin the fixed buffer")
