"""COW/GUP designs, one module each, selectable by name or loaded from a file."""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from pathlib import Path
from typing import NamedTuple

from .base import (
    COPY,
    LOCK_PAGE,
    READ_MORE,
    REQUIRED_HOOKS,
    REUSE,
    SHARE,
    SPLIT,
    Decision,
    Design,
    MigrateUnmapResult,
    ReadMore,
    UnmapResult,
    Vmf,
    read_more,
)
from .contract import DesignError, check_class, check_facts, checked

__all__ = ["Design", "REQUIRED_HOOKS", "Decision", "REUSE", "COPY", "LOCK_PAGE", "SHARE", "SPLIT", "READ_MORE",
           "ReadMore", "read_more", "UnmapResult", "MigrateUnmapResult", "Vmf", "load", "names", "DesignError",
           "BUILTIN", "REGISTRY", "Registered", "releases", "release_text", "design_for_release"]


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
    defining ``DESIGN`` or one ``Design`` subclass.  A design file is checked
    against the declared interface and its hooks' answers are checked as it
    runs (``contract``); every problem is one ``DesignError`` line."""
    module = None
    if spec in BUILTIN:
        mod = importlib.import_module(f"{__name__}.{BUILTIN[spec]}")
        d = mod.DESIGN
    elif spec.endswith(".py") or "/" in spec:
        d, module = _load_file(spec)
    else:
        close = difflib.get_close_matches(spec, BUILTIN, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(BUILTIN)}"
        raise DesignError(f"unknown design {spec!r}{hint}")
    if settings:
        unknown = set(settings) - set(d.settings)
        if unknown:
            raise DesignError(f"design {d.name} has no setting {', '.join(sorted(unknown))} "
                              f"(settings: {', '.join(d.settings) or 'none'})")
        if module is None:
            d = type(d)(settings={**d.settings, **settings})
        else:
            d = _construct(spec, lambda: dataclasses.replace(d, settings={**d.settings, **settings})
                           if dataclasses.is_dataclass(d) else type(d)(settings={**d.settings, **settings}))
    if module is not None:
        check_facts(d, spec)
        d = checked(d, spec, module)
    return d


def _construct(path: str, make):
    try:
        return make()
    except DesignError:
        raise
    except Exception as e:
        raise DesignError(f"{_line(e, path)}: {type(e).__name__}: {e}") from None


def _line(e: BaseException, path: str) -> str:
    p = str(Path(path).resolve())
    tb = traceback.extract_tb(e.__traceback__)
    line = next((f.lineno for f in reversed(tb) if str(Path(f.filename).resolve()) == p), None)
    return f"{path}:{line}" if line is not None else path


def _load_file(path: str):
    """-> (design, its module)."""
    p = Path(path)
    if not p.is_file():
        raise DesignError(f"{path}: no such design file")
    if p.suffix != ".py":
        raise DesignError(f"{path}: not a design file (a design is a Python file, name.py, defining a Design "
                          f"subclass)")
    try:
        source = p.read_bytes()
    except OSError as e:
        raise DesignError(f"{path}: cannot read the design file: {e.strerror}") from None
    name = f"cowlab_user_design_{p.stem}"
    spec = importlib.util.spec_from_file_location(name, p)
    mod = importlib.util.module_from_spec(spec)
    try:
        code = compile(source, str(p), "exec", dont_inherit=True)
    except SyntaxError as e:
        if e.lineno is None:        # e.g. null bytes: not Python at all
            raise DesignError(f"{path}: not a design file (SyntaxError: {e.msg})") from None
        raise DesignError(f"{path}:{e.lineno}: SyntaxError: {e.msg}") from None
    except ValueError as e:         # e.g. source code string cannot contain null bytes
        raise DesignError(f"{path}: not a design file ({e})") from None
    sys.modules[name] = mod          # so its design pickles (model runs in a process pool)
    try:
        exec(code, mod.__dict__)
    except DesignError as e:
        sys.modules.pop(name, None)
        raise DesignError(f"{path}: {e}") from None
    except Exception as e:  # the user's file failed to import
        sys.modules.pop(name, None)
        raise DesignError(f"{_line(e, path)}: {type(e).__name__}: {e}") from None
    d = mod.__dict__.get("DESIGN")
    if d is not None:
        if isinstance(d, type) and issubclass(d, Design):
            raise DesignError(f"{path}: DESIGN is the class {d.__name__}; write DESIGN = {d.__name__}()")
        if not isinstance(d, Design):
            raise DesignError(f"{path}: DESIGN is a {type(d).__name__}, not a Design (subclass "
                              f"cowlab.designs.Design or a built-in design)")
        check_class(type(d), path)
        return d, mod
    classes = [c for c in vars(mod).values()
               if inspect.isclass(c) and issubclass(c, Design) and c.__module__ == mod.__name__]
    leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
    if not classes:
        raise DesignError(f"{path}: defines no design (a subclass of cowlab.designs.Design, or DESIGN = an instance)")
    if len(leaves) > 1:
        raise DesignError(f"{path}: defines {len(leaves)} designs ({', '.join(c.__name__ for c in leaves)}); "
                          f"say which with DESIGN = {leaves[0].__name__}()")
    check_class(leaves[0], path)
    return _construct(path, leaves[0]), mod
