"""The oracle's verdicts on a step: a COW that should have happened and did
not (missed), one that happened for nothing (unnecessary), one that broke a
pin's coherence (wrong).

``Verdict`` is a ``StrEnum``: each member is equal to (and hashes as, and
prints and serialises to JSON as) its value, so ``outcomes["missed"]`` and
the JSON output read the same as plain strings did."""
from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    MISSED = "missed"
    UNNECESSARY = "unnecessary"
    WRONG = "wrong"


MISSED, UNNECESSARY, WRONG = Verdict.MISSED, Verdict.UNNECESSARY, Verdict.WRONG
#: every verdict, in the order tables and outcome dicts list them
VERDICTS = tuple(Verdict)
