"""fs/splice.c vmsplice() and pipe reads.

vmsplice(SPLICE_F_GIFT not set) -> vmsplice_to_pipe() -> iter_to_pipe() ->
iov_iter_get_pages2() -> get_user_pages_fast(): a short-term FOLL_GET, R/O
reference per page kept in the pipe buffer until the pipe is read (all
versions through 6.18: vmsplice never became FOLL_PIN).  A pipe read copies
the page's current content (what the reader observes) and drops the reference.

A range GUP cannot take whole (a page unmapped, or in a PROT_NONE vma:
check_vma_flags()) is taken up to that page: iter_to_pipe() keeps the pages
iov_iter_get_pages2() returned and vmsplice() returns the bytes spliced (a
short count); only when not even the first page could be taken does it
return -EFAULT (vmsplice_to_pipe(), all versions 5.7 .. 6.18; seen on 6.18:
a 2-page vmsplice whose second page is unmapped returns 4096).
"""
from __future__ import annotations

from ..effects import Error, Load
from ..paths import step, op
from ..types import FOLL_GET, FOLL_FAST
from ..mm.gup import start_gup
from ..mm.internal import EFAULT


def pipe_owner(op) -> str:
    return f"{op['process']}:{op['pipe']}"


def _held(k, op) -> int:
    return sum(1 for r in k.refs_held_by(pipe_owner(op)) if r.kind == "pipe")


@step("vmsplice")
def vmsplice_to_pipe(k, fr, op):
    """vmsplice_to_pipe() -> iter_to_pipe(): GUP the range into the pipe
    (the caller's locals: how many pages the pipe held before)."""
    n = op.get("pages", 1)
    return start_gup(_held(k, op), range(op["addr"], op["addr"] + n), FOLL_GET | FOLL_FAST, "pipe",
                     pipe_owner(op), "vmsplice.done")


@step("vmsplice.done")
def vmsplice_done(k, held_before, op):
    """iter_to_pipe()'s return: the bytes spliced, or -EFAULT when GUP took
    no page of the range (the pages it took stay in the pipe)."""
    if k.ret and _held(k, op) == (held_before or 0):
        k.effect(Error("vmsplice", k.mm, op["addr"], -EFAULT))
    return None


@step("pipe_read")
def pipe_read(k, fr, op):
    """pipe_read() -> copy_page_to_iter() of each buffer, in the order
    vmsplice() filled them (Ref.taken_at: mremap() may have moved a page
    since), then anon_pipe_buf_release() -> put_page()."""
    owner = pipe_owner(op)
    for r in sorted((r for r in k.refs_held_by(owner) if r.kind == "pipe"), key=lambda r: (r.taken_at, r)):
        k.effect(Load("pipe", owner, r.mm, r.addr, r.pfn, r.idx, k.folio(r.pfn).data[r.idx]))
        k.drop_ref(r)
    return None


op("vmsplice", "vmsplice", "vmsplice() -> get_user_pages_fast(FOLL_GET)", ("addr", "pages", "pipe"),
   "splice pages into a pipe (R/O FOLL_GET references)")
op("pipe_read", "pipe_read", "read() from the pipe", ("pipe",), "read the pipe and check what it holds")
