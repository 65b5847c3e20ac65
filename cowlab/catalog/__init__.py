"""The built-in case catalog."""
from __future__ import annotations

import difflib
from functools import lru_cache

from ..scenario import Case


class CatalogError(Exception):
    pass


@lru_cache(maxsize=None)
def _all() -> dict:
    from . import cow_c, seed, races, history, ksm, direct_io, mutation
    out = {}
    for c in (cow_c.cases() + seed.cases() + history.cases() + ksm.cases() + direct_io.cases() + mutation.cases()
              + races.cases()):
        if c.id in out:
            raise RuntimeError(f"duplicate case id {c.id}")
        out[c.id] = c
    return out


def all_cases() -> list[Case]:
    return list(_all().values())


def ids() -> list[str]:
    return list(_all())


def get(case_id: str) -> Case:
    cases = _all()
    if case_id in cases:
        return cases[case_id]
    if case_id.endswith(".toml"):
        from ..toml_format import load_case
        return load_case(case_id)
    close = difflib.get_close_matches(case_id, cases, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise CatalogError(f"unknown case {case_id!r}{hint}")
