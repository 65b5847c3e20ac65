"""COW/GUP designs, one module each, selectable by name or loaded from a file."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from pathlib import Path

from .base import Design, REUSE, COPY, LOCK_PAGE, SHARE, SPLIT, READ_MORE, Vmf, read_more

__all__ = ["Design", "REUSE", "COPY", "LOCK_PAGE", "SHARE", "SPLIT", "READ_MORE", "Vmf", "read_more", "load",
           "names", "DesignError", "BUILTIN"]

BUILTIN = {
    "linux-5.7": "linux_5_7",
    "linux-5.8": "linux_5_8",
    "linux-5.9": "linux_5_9",
    "linux-5.11": "linux_5_11",
    "linux-5.18": "linux_5_18",
    "linux-5.19": "linux_5_19",
    "linux-6.5": "linux_6_5",
    "linux-6.9": "linux_6_9",
    "linux-6.18": "linux_6_18",
    "rfc-mapcount": "rfc_mapcount",
    "rfc-page-anon-shared": "rfc_page_anon_shared",
}


class DesignError(Exception):
    pass


def names() -> list[str]:
    return list(BUILTIN)


def load(spec: str, settings: dict | None = None) -> Design:
    """A design by built-in name, or from a Python file (``./mine.py``)
    defining ``DESIGN`` or one ``Design`` subclass."""
    if spec in BUILTIN:
        mod = importlib.import_module(f"{__name__}.{BUILTIN[spec]}")
        d = mod.DESIGN
    elif spec.endswith(".py") or "/" in spec:
        d = _load_file(spec)
    else:
        close = difflib.get_close_matches(spec, BUILTIN, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(BUILTIN)}"
        raise DesignError(f"unknown design {spec!r}{hint}")
    if settings:
        unknown = set(settings) - set(d.settings)
        if unknown:
            raise DesignError(f"design {d.name} has no setting {', '.join(sorted(unknown))} "
                              f"(settings: {', '.join(d.settings) or 'none'})")
        d = type(d)(settings={**d.settings, **settings})
    return d


def _load_file(path: str) -> Design:
    p = Path(path)
    if not p.is_file():
        raise DesignError(f"{path}: no such design file")
    spec = importlib.util.spec_from_file_location(f"cowlab_user_design_{p.stem}", p)
    mod = importlib.util.module_from_spec(spec)
    import sys
    sys.modules[spec.name] = mod          # so its design pickles (model runs in a process pool)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # the user's file failed to import
        import traceback
        tb = traceback.extract_tb(e.__traceback__)
        line = next((f.lineno for f in reversed(tb) if f.filename == str(p)), "?")
        sys.modules.pop(spec.name, None)
        raise DesignError(f"{path}:{line}: {type(e).__name__}: {e}") from None
    d = getattr(mod, "DESIGN", None)
    if isinstance(d, Design):
        return d
    classes = [c for _, c in inspect.getmembers(mod, inspect.isclass)
               if issubclass(c, Design) and c.__module__ == mod.__name__]
    if len(classes) == 1:
        return classes[0]()
    raise DesignError(f"{path}: defines no DESIGN and not exactly one Design subclass")
