"""mm/gup_test.c PIN_LONGTERM_TEST_START / _READ / _STOP (6.2+, used by cow.c).

START pins the range with pin_user_pages(FOLL_LONGTERM [|FOLL_WRITE]) under
mmap_read_lock, or pin_user_pages_fast() with PIN_LONGTERM_TEST_FLAG_USE_FAST;
READ copies the pinned pages' content (an observation through the pin);
STOP unpins.  The model offers the same on every version (the kernels before
6.2 had other gup_test ioctls with the same GUP calls).
"""
from __future__ import annotations

from ..effects import Error, Load
from ..paths import step, op
from ..types import FOLL_PIN, FOLL_LONGTERM, FOLL_WRITE, FOLL_FAST, FOLL_GET
from .gup import start_gup

OWNER = "gup_test"


def _owner(op) -> str:
    return f"{op['process']}:{op.get('pin', OWNER)}"


@step("gup_test.start")
def pin_longterm_test_start(k, fr, op):
    n = op.get("pages", 1)
    gf = FOLL_PIN | FOLL_LONGTERM
    if op.get("write"):
        gf |= FOLL_WRITE
    if op.get("fast"):
        gf |= FOLL_FAST
    return start_gup(fr, range(op["addr"], op["addr"] + n), gf, "gup_test", _owner(op), "gup_test.started")


@step("gup_test.started")
def pin_longterm_test_started(k, fr, op):
    if k.ret:
        k.effect(Error("PIN_LONGTERM_TEST_START", k.mm, op["addr"], 14))     # EFAULT
    return None


@step("gup_test.read")
def pin_longterm_test_read(k, fr, op):
    for r in sorted(r for r in k.refs_held_by(_owner(op)) if r.kind == "gup_test"):
        k.effect(Load("gup_test", r.owner, r.mm, r.addr, r.pfn, r.idx, k.folio(r.pfn).data[r.idx]))
    return None


@step("gup_test.stop")
def pin_longterm_test_stop(k, fr, op):
    for r in [r for r in k.refs_held_by(_owner(op)) if r.kind == "gup_test"]:
        k.drop_ref(r)
    return None


@step("gup.get")
def get_user_pages_op(k, fr, op):
    """get_user_pages(FOLL_GET [|FOLL_WRITE]) for a short-term kernel user."""
    n = op.get("pages", 1)
    gf = FOLL_GET | (FOLL_WRITE if op.get("write") else 0) | (FOLL_FAST if op.get("fast") else 0)
    return start_gup(fr, range(op["addr"], op["addr"] + n), gf, "gup", _owner(op), "gup_test.started")


@step("gup.put")
def put_user_pages_op(k, fr, op):
    for r in [r for r in k.refs_held_by(_owner(op)) if r.kind == "gup"]:
        k.drop_ref(r)
    return None


op("pin_longterm", "gup_test.start", "ioctl(PIN_LONGTERM_TEST_START)", ("addr", "pages", "write", "fast", "pin"),
   "long-term FOLL_PIN (R/O unless write=true; gup-fast if fast=true)")
op("pin_read", "gup_test.read", "ioctl(PIN_LONGTERM_TEST_READ)", ("pin",), "read through the pin and check it")
op("unpin", "gup_test.stop", "ioctl(PIN_LONGTERM_TEST_STOP)", ("pin",), "drop the pin")
op("get_user_pages", "gup.get", "get_user_pages(FOLL_GET)", ("addr", "pages", "write", "fast", "pin"),
   "short-term FOLL_GET reference")
op("put_user_pages", "gup.put", "put_page()", ("pin",), "drop the FOLL_GET references")
