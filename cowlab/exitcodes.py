"""The exit status of every ``cowlab`` command: one policy, one place.

=====  ==================================================================
0      nothing found: no verdict of a ``--fail-on`` kind, every run complete
1      found: a COW of a ``--fail-on`` kind (default missed, wrong), a
       disagreement with the live kernel, a failing selftest
2      usage or input error (a bad option, case file, design, trace): one line
3      inconclusive or interrupted: a limit hit, Ctrl-C, stuck states the case
       does not declare expected (``expect_stuck``), a model bug
=====  ==================================================================

1 wins over 3: a COW that was found is found, even when the search around it
did not finish.  Ctrl-C while Python is still loading cowlab (before any
command runs) is 130, the shell's convention.

A command calls ``status(...)`` with what it found and exits with the
result; ``FAIL_ON`` is the click option type of ``--fail-on`` and
``EPILOG`` the text every command's ``--help`` ends with.
"""
from __future__ import annotations

from collections.abc import Iterable

import click

OK = 0
FOUND = 1
USAGE = 2
INCONCLUSIVE = 3

#: the verdict kinds --fail-on may name
KINDS = ("missed", "wrong", "unnecessary")
DEFAULT_FAIL_ON = frozenset({"missed", "wrong"})

EPILOG = ("Exit status: 0 nothing found; 1 a COW of a --fail-on kind found (default missed,wrong), a disagreement "
          "or a failing selftest; 2 usage or input error; 3 inconclusive or interrupted (a limit, Ctrl-C, stuck "
          "states not declared expected, a model bug). 1 wins over 3.")


def parse_fail_on(text: str) -> frozenset:
    """``"missed,wrong"`` -> frozenset; ValueError naming the allowed kinds."""
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS and k not in ("all", "none")]
    if bad or not kinds:
        what = f"unknown kind {', '.join(repr(b) for b in bad)}" if bad else "no kind given"
        raise ValueError(f"{what}; allowed: {', '.join(KINDS)} (comma-separated), all, none")
    if "none" in kinds:
        if len(kinds) > 1:
            raise ValueError("'none' cannot be combined with other kinds")
        return frozenset()
    if "all" in kinds:
        return frozenset(KINDS)
    return frozenset(kinds)


class FailOnType(click.ParamType):
    """``--fail-on missed,wrong,unnecessary``: the verdict kinds that make a command exit 1."""
    name = "KINDS"

    def convert(self, value, param, ctx):
        if isinstance(value, frozenset):
            return value
        try:
            return parse_fail_on(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


FAIL_ON = FailOnType()


def fail_on_option(fn):
    """The ``--fail-on`` option, the same on every command that judges COWs."""
    return click.option("--fail-on", "fail_on", type=FAIL_ON, default="missed,wrong", show_default=True,
                        help="verdict kinds that make the exit status 1: missed, wrong, unnecessary "
                             "(comma-separated), all or none")(fn)


def found_kinds(outcomes: dict) -> set:
    """The kinds with a non-zero count in ``{"missed": n, ...}``."""
    return {k for k, n in (outcomes or {}).items() if n}


def status(found: Iterable[str] = (), fail_on: frozenset = DEFAULT_FAIL_ON, *, inconclusive: bool = False,
           failed: bool = False) -> int:
    """The exit status: ``found`` the verdict kinds seen, ``failed`` a
    failure of the command's own kind (a disagreement, a failing selftest),
    ``inconclusive`` a limit, Ctrl-C, stuck states or a model bug."""
    if failed or set(found) & set(fail_on):
        return FOUND
    if inconclusive:
        return INCONCLUSIVE
    return OK


def of_results(results: Iterable, fail_on: frozenset = DEFAULT_FAIL_ON, *, interrupted: bool = False) -> int:
    """The status of a set of results (``run.Result`` or their JSON dicts,
    with ``outcomes``, ``status`` and ``model_bugs``)."""
    found: set = set()
    inconclusive = interrupted
    for r in results:
        j = r if isinstance(r, dict) else r.as_json()
        found |= found_kinds(j.get("outcomes"))
        if j.get("status") != "complete" or j.get("model_bugs"):
            inconclusive = True
    return status(found, fail_on, inconclusive=inconclusive)
