"""COW/GUP designs, one module each, selectable by name or loaded from a file."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
from pathlib import Path
from typing import NamedTuple

from .base import Design, REUSE, COPY, LOCK_PAGE, SHARE, SPLIT, READ_MORE, Vmf, read_more

__all__ = ["Design", "REUSE", "COPY", "LOCK_PAGE", "SHARE", "SPLIT", "READ_MORE", "Vmf", "read_more", "load",
           "names", "DesignError", "BUILTIN", "REGISTRY", "Registered", "releases", "release_text",
           "design_for_release"]


class Registered(NamedTuple):
    name: str                 # on the command line
    module: str               # cowlab/designs/<module>.py
    #: the kernel releases it models, (first, last) as version tuples: ``(5, 7, 3)`` is v5.7.3; a last of
    #: ``(5, 10)`` covers every v5.10.y.  None for a design no kernel shipped (the RFCs).  The design's own
    #: ``kernel`` text says the same (a test checks it)
    releases: tuple | None


#: every built-in design, released ones in release order
REGISTRY = (
    Registered("linux-5.7", "linux_5_7", ((5, 7), (5, 7, 2))),
    Registered("linux-5.8", "linux_5_8", ((5, 7, 3), (5, 8))),
    Registered("linux-5.9", "linux_5_9", ((5, 9), (5, 10))),
    Registered("linux-5.11", "linux_5_11", ((5, 11), (5, 17))),
    Registered("linux-5.18", "linux_5_18", ((5, 18), (5, 18))),
    Registered("linux-5.19", "linux_5_19", ((5, 19), (6, 1))),
    Registered("linux-6.5", "linux_6_5", ((6, 5), (6, 8))),
    Registered("linux-6.9", "linux_6_9", ((6, 9), (6, 14))),
    Registered("linux-6.18", "linux_6_18", ((6, 15), (6, 18))),
    Registered("rfc-mapcount", "rfc_mapcount", None),
    Registered("rfc-page-anon-shared", "rfc_page_anon_shared", None),
)
#: name -> module
BUILTIN = {r.name: r.module for r in REGISTRY}


class DesignError(Exception):
    pass


def names() -> list[str]:
    return list(BUILTIN)


def releases(name: str) -> tuple | None:
    """A built-in design's (first, last) release, or None."""
    return next((r.releases for r in REGISTRY if r.name == name), None)


def release_text(rng: tuple) -> str:
    """``((5, 19), (6, 1))`` -> ``"v5.19 .. v6.1"``; one release -> ``"v5.18"``."""
    first, last = (".".join(map(str, v)) for v in rng)
    return f"v{first}" if first == last else f"v{first} .. v{last}"


def design_for_release(release: str) -> tuple[str, str]:
    """The design for a kernel release (``uname -r``): the one whose range
    holds it, else the nearest older one (with a note that the kernel is
    newer than what it models).  -> (design name, note)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    v = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else (0, 0, 0)
    released = [r for r in REGISTRY if r.releases]
    older = [r for r in released if v >= _padded(r.releases[0])]
    if not older:
        return released[0].name, f"{release} is older than every design; using {released[0].name}"
    r = older[-1]
    note = f"kernel {release}: nearest older design {r.name}"
    last = r.releases[1]
    if v[:len(last)] > last:
        note += (f" (it models {release_text(r.releases)}; this kernel is newer, so later changes are not in "
                 f"the model)")
    return r.name, note


def _padded(v: tuple) -> tuple:
    return tuple(v) + (0,) * (3 - len(v))


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
