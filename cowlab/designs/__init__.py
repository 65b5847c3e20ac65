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
    Setting,
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

__all__ = ["Design", "Setting", "split_spec", "resolve", "typed_settings", "setting_error", "REQUIRED_HOOKS",
           "Decision", "REUSE", "COPY", "LOCK_PAGE", "SHARE", "SPLIT", "READ_MORE",
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


def split_spec(spec: str) -> tuple[str, dict]:
    """``rfc-mapcount:page_lock=false,x=1`` -> ("rfc-mapcount", {"page_lock": "false", "x": "1"}):
    a design spec with settings after the last ``:`` (values still text; ``load`` types them).
    A spec without ``NAME=VALUE`` after a ``:`` is all name (a file path may hold a ``:``)."""
    head, sep, tail = spec.rpartition(":")
    if not sep or not head or not re.fullmatch(r"[A-Za-z_]\w*=[^,]*(,[A-Za-z_]\w*=[^,]*)*", tail):
        if sep and head and tail and "=" not in tail and not tail.endswith(".py") and "/" not in tail:
            raise DesignError(f"design {spec!r}: settings after ':' are NAME=VALUE[,NAME=VALUE...], not {tail!r}")
        return spec, {}
    out = {}
    for kv in tail.split(","):
        k, _, v = kv.partition("=")
        if k in out:
            raise DesignError(f"design {spec!r}: setting {k} given twice")
        out[k] = v
    return head, out


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+.~].*)?")


def resolve(spec: str) -> tuple[str, str]:
    """A kernel version as a design: ``6.6``, ``v5.15.120``, ``6.8.0-45-generic`` or ``host``
    (this machine's ``uname -r``) -> (the design for that release, a note saying which and why).
    Any other spec -> (spec, "")."""
    if spec == "host":
        import platform
        rel = platform.release()
        name, note = design_for_release(rel)
        return name, f"host kernel {rel}: design {name}" + _why(name, note)
    if _VERSION.fullmatch(spec) and spec not in BUILTIN:
        name, note = design_for_release(spec.lstrip("v"))
        return name, f"kernel {spec}: design {name}" + _why(name, note)
    return spec, ""


def _why(name: str, note: str) -> str:
    if "newer" in note or "older than every" in note:
        return f" ({note.split(': ', 1)[-1] if 'older than every' in note else note.split('(', 1)[-1].rstrip(')')})"
    return f" (it models {release_text(releases(name))})"


def _version_of(text: str) -> tuple | None:
    m = re.fullmatch(r"(?:linux-)?v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def _suggest(spec: str) -> list[str]:
    """Near names for an unknown spec: for ``linux-X.Y`` the released designs nearest in
    version (the one whose range holds X.Y first), otherwise by spelling."""
    v = _version_of(spec)
    if v is None:
        return difflib.get_close_matches(spec, BUILTIN, n=3, cutoff=0.5)

    def key(v3):                  # a version as one number: 6.1 and 5.19 are one release apart
        return v3[0] * 100 + v3[1] + v3[2] / 1000

    def distance(r: Registered):
        lo, hi = key(_padded(r.releases[0])), key(_padded(r.releases[1]) if len(r.releases[1]) == 3
                                                 else tuple(r.releases[1]) + (999,))
        x = key(v)
        return 0 if lo <= x <= hi else min(abs(x - lo), abs(x - hi))
    ranked = sorted((r for r in REGISTRY if r.releases), key=lambda r: (distance(r), r.releases[0]))
    return [r.name for r in ranked[:3]]


def setting_error(d: Design, key: str, value=None) -> str:
    types = d.setting_types()
    listing = ", ".join(f"{n} ({s.type}, default {s.show()}: {s.allowed()})" for n, s in types.items()) or "none"
    if key not in types:
        return f"design {d.name} has no setting {key} (settings: {listing})"
    return f"design {d.name}: setting {key}: {value!r} is not allowed; allowed: {types[key].allowed()}"


def typed_settings(d: Design, settings: dict) -> dict:
    """settings (text from the command line, or typed values) checked against the
    design's declared settings and typed; a DesignError names the allowed ones."""
    types = d.setting_types()
    unknown = sorted(set(settings) - set(types))
    if unknown:
        raise DesignError(setting_error(d, ", ".join(unknown)))
    out = {}
    for k, v in settings.items():
        try:
            out[k] = types[k].coerce(v)
        except ValueError as e:
            raise DesignError(f"design {d.name}: setting {k}: {e}") from None
    return out


def load(spec: str, settings: dict | None = None) -> Design:
    """A design by built-in name, by kernel version (``6.6``, ``v5.15.120``, ``host``: see
    ``resolve``), or from a Python file (``./mine.py``) defining ``DESIGN`` or one ``Design``
    subclass; ``NAME:key=value,...`` sets settings (``settings`` wins over them).  Settings
    are checked against the design's declared ones and typed.  A design file is checked
    against the declared interface and its hooks' answers are checked as it runs
    (``contract``); every problem is one ``DesignError`` line."""
    module = None
    spec, inline = split_spec(spec)
    settings = {**inline, **(settings or {})}
    spec, _ = resolve(spec)
    if spec in BUILTIN:
        mod = importlib.import_module(f"{__name__}.{BUILTIN[spec]}")
        d = mod.DESIGN
    elif spec.endswith(".py") or "/" in spec:
        d, module = _load_file(spec)
    else:
        close = _suggest(spec)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(BUILTIN)}"
        v = _version_of(spec)
        if v is not None and v[1] <= 20:           # a release that can exist: say which design models it
            rel = ".".join(map(str, v if v[2] else v[:2]))
            hint += f" (-d {rel} selects the design for kernel {rel}: {design_for_release(rel)[0]})"
        raise DesignError(f"unknown design {spec!r}{hint}")
    if settings:
        settings = typed_settings(d, settings)
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


def anon_mthp(d) -> bool | None:
    """Does design ``d`` fault anonymous multi-size THPs (mTHP, 19eaf44954df "mm: thp: support allocation of
    anonymous multi-size THP", v6.8)?  Its ``anon_mthp`` fact; None while a design does not state it (the fact
    comes with the model's mTHP folios: a design from before them, a user design that does not declare it)."""
    return getattr(d, "anon_mthp", None)
