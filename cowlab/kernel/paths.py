"""The registry of atomic steps, and how a step says what comes next.

A kernel path is a set of labelled steps.  A step is a function
``fn(k, fr, op) -> Next``: ``k`` is the step's ``Kernel`` view, ``fr`` the
path's typed frame (its locals, a NamedTuple the path declares; None when
an operation starts), ``op`` the operation's static arguments.  It returns

* ``Goto(label, frame)`` -- run ``label`` next, with these locals;
* ``Call(label, frame, then, caller)`` -- call another path (its first step
  ``label`` with its own frame); when it returns, this path resumes at
  ``then`` with ``caller`` as its locals, and ``k.ret`` holds the value;
* ``Return(value)`` or ``None`` -- the path returns (an operation's
  outermost path returning ends the operation).

Raising ``Blocked`` (from a lock helper) means the step is not enabled now.
Frames declare their own fields' roles by type: ``Pfn`` and ``Slot`` fields,
``tuple[Pfn, ...]`` fields (and the ``pfn`` of ``Pte`` fields, by kind) name page frames and swap slots,
which symmetry reduction renames; a frame class that stands for a mapping or
count a path is half-way through installing declares ``in_flight()`` (see
``InFlight``), so the model needs to know no path's locals.

Each operation a scenario can name maps to its first step label in ``OPS``.
"""
from __future__ import annotations

import functools
import typing
from typing import NamedTuple, NewType

from .types import PTE_SWAP, Pte

#: a page frame number (an index into State.folios)
Pfn = NewType("Pfn", int)
#: a swap slot (an index into State.swap)
Slot = NewType("Slot", int)

STEPS: dict = {}
#: op name -> (first step label, kernel entry point it models, argument names)
OPS: dict = {}


class Goto(NamedTuple):
    """Continue the path at ``label`` with locals ``frame``."""
    label: str
    frame: object = None


class Call(NamedTuple):
    """Call the path starting at ``label`` (its locals ``frame``); resume at
    ``then`` with locals ``caller`` once it returns."""
    label: str
    frame: object
    then: str
    caller: object = None


class Return(NamedTuple):
    """The path returns ``value`` to its caller (``k.ret`` in the caller's next step)."""
    value: object = None


class InFlight(NamedTuple):
    """What a frame stands for while its path is between two steps of a
    book update that the kernel does under a lock the other paths take:
    ``maps`` mappings being installed or replaced, as (mm, addr, pfn, idx) --
    observers all the same for the oracle; ``shares`` (pfn, idx) whose
    mapcount is already raised for a pte not yet set (fork); ``slots``
    {slot: adjustment} of swap counts already dropped for a pte not yet
    replaced; ``refs`` {pfn: adjustment} of references standing for a
    mapping not yet installed; ``copies`` (parent mm, child mm, addr) of
    entries fork is copying (between copy_present_pte()'s rmap dup and its
    write-protect): the child's mapping among ``maps`` takes the parent's
    data at addr when the copy completes (a CopyPte effect), so a store the
    parent makes there before is the child's data too (the oracle)."""
    maps: tuple = ()
    shares: tuple = ()
    slots: tuple = ()
    refs: tuple = ()
    copies: tuple = ()


NOTHING_IN_FLIGHT = InFlight()


def step(label: str):
    def deco(fn):
        if label in STEPS:
            raise RuntimeError(f"duplicate step label {label}")
        STEPS[label] = fn
        fn.label = label
        return fn
    return deco


def op(name: str, start: str, entry: str, args: tuple = (), doc: str = ""):
    OPS[name] = (start, entry, args, doc)


# ----------------------------------------------------------------------------- frame roles
@functools.lru_cache(maxsize=None)
def frame_roles(cls) -> tuple:
    """((field index, role), ...) of a frame class: role 'pfn', 'slot',
    'pfns' (a ``tuple[Pfn, ...]``), 'pte' (a Pte: its pfn names a frame or a
    slot by its kind) or a nested frame class; from the fields' declared types."""
    hints = typing.get_type_hints(cls)
    roles = []
    for i, name in enumerate(cls._fields):
        h = hints.get(name)
        args = typing.get_args(h)
        if args and type(None) in args:           # Optional[X]
            h = next(a for a in args if a is not type(None))
        if h is Pfn:
            roles.append((i, "pfn"))
        elif typing.get_origin(h) is tuple and typing.get_args(h) == (Pfn, Ellipsis):
            roles.append((i, "pfns"))
        elif h is Slot:
            roles.append((i, "slot"))
        elif h is Pte:
            roles.append((i, "pte"))
        elif isinstance(h, type) and issubclass(h, tuple) and hasattr(h, "_fields"):
            if frame_roles(h):
                roles.append((i, h))
    return tuple(roles)


def rename_frame(fr, P, S):
    """``fr`` with every page frame renamed by P and every swap slot by S
    (symmetry reduction); fields that hold none are kept."""
    if fr is None or not hasattr(type(fr), "_fields"):
        return fr          # (no frame, or a bare value -- vmsplice's count of held references -- that names none)
    roles = frame_roles(type(fr))
    if not roles:
        return fr
    vals = list(fr)
    for i, role in roles:
        v = vals[i]
        if v is None or (role in ("pfn", "slot") and v < 0):
            continue
        if role == "pfn":
            vals[i] = P(v)
        elif role == "pfns":
            vals[i] = tuple(P(x) for x in v)
        elif role == "slot":
            vals[i] = S(v)
        elif role == "pte":
            vals[i] = v._replace(pfn=S(v.pfn) if v.kind == PTE_SWAP else P(v.pfn))
        else:
            vals[i] = rename_frame(v, P, S)
    return type(fr)(*vals)


def in_flight(fr, s, mm: int, args, hpage_pmd_nr: int) -> InFlight:
    """The frame's declared in-flight books (NOTHING_IN_FLIGHT if it declares
    none): ``fr.in_flight(s, mm, args, hpage_pmd_nr)`` with ``s`` the State,
    ``mm`` the thread's mm and ``args`` its operation's arguments."""
    fn = getattr(type(fr), "in_flight", None)
    return NOTHING_IN_FLIGHT if fn is None else fn(fr, s, mm, args, hpage_pmd_nr)
