"""The registry of atomic steps.

A kernel path is a set of labelled steps.  A step is a function
``fn(k, fr, op) -> next_label | None``: ``k`` is the step's ``Kernel`` view,
``fr`` the path's locals (a dict, saved in the thread between steps), ``op``
the operation's static arguments.  Returning ``None`` ends the operation.
Raising ``Blocked`` (from a lock helper) means the step is not enabled now.

Each operation a scenario can name maps to its first step label in ``OPS``.
"""
from __future__ import annotations

STEPS: dict = {}
#: op name -> (first step label, kernel entry point it models, argument names)
OPS: dict = {}


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
