"""A user's design checked against the declared interface
(``cowlab.kernel.decisions.DesignInterface``).

At load time (``check_class``, ``check_facts``): a required hook missing, a
method or attribute whose name is close to a hook or fact but is neither (a
misspelling, or the old name ``do_swap_page_exclusive``), a hook that does not
take the kernel's arguments, a fact that is a method or has a value outside
its type.  At run time (``checked``): a user design's class is wrapped so
that every hook's answer is checked against its declared type, a hook that
raises becomes one line naming the file, line and hook, and a hook that
leaves a page lock or a PT lock otherwise than the contract says is caught
where it happens.  Built-in designs are not wrapped (the hot path stays as
fast as before); their conformance is the tests' job.

Every problem is a ``DesignError``: one line naming the design file (the
command line prints it and exits with status 2), never a "model bug".
"""
from __future__ import annotations

import difflib
import inspect
import sys
import traceback
import typing
from pathlib import Path

from ..kernel import decisions
from ..kernel.decisions import (
    COPY,
    FACTS,
    HOOKS,
    IDENTITY,
    LOCK_PAGE,
    REUSE,
    SHARE,
    CopyHugeHugetlbResult,
    CopyHugeThpResult,
    Decision,
    DesignInterface,
    ReadMore,
)
from ..kernel.txn import Blocked, ModelBug
from ..kernel.types import PG_locked


class DesignError(Exception):
    """A design that cannot be loaded or that broke its contract: one line."""
    exit_code = 2


#: names a hook once had (in the documentation) -> the hook the kernel asks
RENAMED = {"do_swap_page_exclusive": "do_swap_page_map"}

_COWLAB = str(Path(__file__).resolve().parent.parent)


def _hints(name: str) -> dict:
    fn = getattr(DesignInterface, name)
    return typing.get_type_hints(fn, globalns=vars(decisions), localns={"Kernel": object, "Vma": object, "Pte": object})


RESULT = {n: _hints(n)["return"] for n in HOOKS}
FACT_TYPE = typing.get_type_hints(DesignInterface, globalns=vars(decisions))
SIGNATURE = {n: inspect.signature(getattr(DesignInterface, n)) for n in HOOKS}


def call_text(name: str) -> str:
    """``wp_anon(k, vmf)``: how the kernel calls a hook."""
    ps = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
          for p in list(SIGNATURE[name].parameters.values())[1:]]
    return f"{name}({', '.join(ps)})"


# ------------------------------------------------------------------------ types
_MIGRATION_NAMES = {0: "SWP_MIGRATION_READ", 1: "SWP_MIGRATION_READ_EXCLUSIVE", 2: "SWP_MIGRATION_WRITE"}
_FOLL_NAMES = {2: "FOLL_GET", 4: "FOLL_PIN"}


def conforms(value, tp) -> bool:
    """Is value an answer of declared type tp?"""
    if tp is object:
        return True
    if tp is bool:
        return type(value) is bool or (type(value) is int and value in (0, 1))
    if tp is str:
        return isinstance(value, str)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        args = typing.get_args(tp)
        if isinstance(args[0], Decision):
            return isinstance(value, str) and value in args
        return type(value) is int and value in args
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(conforms(value, a) for a in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):     # a NamedTuple
        if not isinstance(value, tuple) or len(value) != len(tp._fields):
            return False
        fields = typing.get_type_hints(tp, globalns=vars(decisions))
        if not all(conforms(v, fields[f]) for v, f in zip(value, tp._fields)):
            return False
        if tp is ReadMore:
            try:
                hash(value[1])
            except TypeError:
                return False
        return True
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _alternatives(tp) -> list[str]:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        args = typing.get_args(tp)
        if isinstance(args[0], Decision):
            return [a.name for a in args]
        if tp is decisions.OdirectGupFlags:
            return [_FOLL_NAMES[a] for a in args]
        return [_MIGRATION_NAMES.get(a, repr(a)) for a in args]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [x for a in typing.get_args(tp) for x in _alternatives(a)]
    if tp is bool:
        return ["True", "False"]
    if tp is ReadMore:
        return ["read_more(snapshot) with a hashable snapshot"]
    if isinstance(tp, type) and hasattr(tp, "_fields"):
        fields = typing.get_type_hints(tp, globalns=vars(decisions))
        return [f"{tp.__name__}("
                f"{', '.join(f'{f}: ' + ('bool' if fields[f] is bool else describe(fields[f])) for f in tp._fields)})"]
    return [getattr(tp, "__name__", str(tp))]


def describe(tp) -> str:
    """The declared type, as a user reads it: ``REUSE, COPY or LOCK_PAGE``."""
    names = list(dict.fromkeys(_alternatives(tp)))
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _show(value) -> str:
    if isinstance(value, Decision):
        return value.name
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and value[0] == Decision.READ_MORE:
        return f"read_more({value[1]!r})"
    return repr(value)


# ------------------------------------------------------------------ load time
def _user_classes(cls) -> list[type]:
    """The classes of cls's MRO that are the user's (not cowlab's, not Python's)."""
    return [c for c in cls.__mro__
            if c is not object and not c.__module__.startswith(("cowlab.", "builtins", "typing", "abc"))
            and c.__module__ != "cowlab"]


def _binds(fn, name: str, static: bool) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    params = list(SIGNATURE[name].parameters.values())[1:]
    pos = [None] * sum(p.default is inspect.Parameter.empty for p in params)
    kws = {p.name: None for p in params if p.default is not inspect.Parameter.empty}
    lead = [] if static else [None]
    try:
        sig.bind(*lead, *pos)
        if kws:
            sig.bind(*lead, *pos, **kws)
    except TypeError:
        return False
    return True


def class_problems(cls) -> list[str]:
    """What is wrong with a design class, as short phrases (empty: nothing)."""
    from .base import Design
    problems = []
    known = set(dir(Design)) | set(HOOKS) | set(FACTS) | set(IDENTITY)
    for c in cls.__mro__:
        if c not in _user_classes(cls):
            known |= set(vars(c))
    declared = list(HOOKS) + list(FACTS)
    for c in reversed(_user_classes(cls)):
        for n, v in vars(c).items():
            if n.startswith("_"):
                continue
            where = f"{c.__name__}.{n}"
            if n in HOOKS:
                raw = inspect.getattr_static(cls, n)
                if not callable(raw) and not isinstance(raw, (staticmethod, classmethod)):
                    problems.append(f"{where} is not a method (the kernel calls {call_text(n)})")
                elif not _binds(getattr(cls, n), n, isinstance(raw, (staticmethod, classmethod))):
                    try:
                        got = str(inspect.signature(
                            v if not isinstance(v, (staticmethod, classmethod)) else v.__func__))
                    except (TypeError, ValueError):
                        got = "(?)"
                    problems.append(f"{where}{got.replace('(self, ', '(').replace('(self)', '()')} does not take "
                                    f"the kernel's arguments {call_text(n)}")
            elif n in FACTS:
                if inspect.isfunction(v) or isinstance(v, (staticmethod, classmethod, property)):
                    problems.append(f"{where} is a fact, a value ({describe(FACT_TYPE[n])}), not a method")
            elif n not in known:
                if n in RENAMED:
                    problems.append(f"{where} is not a design hook: the kernel asks {call_text(RENAMED[n])}")
                    continue
                close = difflib.get_close_matches(n, declared, n=1, cutoff=0.8)
                if close:
                    problems.append(f"{where} is not a design hook or fact (did you mean {close[0]}? "
                                    f"start a helper's name with _ to keep it)")
    problems += _declaration_problems(cls)
    missing = cls.missing_hooks() if hasattr(cls, "missing_hooks") else []
    if missing:
        problems.append(f"{cls.__name__} lacks the required hook{'s' if len(missing) > 1 else ''} "
                        + ", ".join(call_text(n) for n in missing))
    return problems


def check_class(cls, where: str) -> None:
    problems = class_problems(cls)
    if problems:
        raise DesignError(f"{where}: " + "; ".join(problems) + " (hooks: docs/designs.md)")


def check_facts(d, where: str) -> None:
    """The static facts and the identity of a design instance."""
    problems = []
    for n in FACTS:
        v = getattr(d, n, None)
        if not conforms(v, FACT_TYPE[n]):
            problems.append(f"{type(d).__name__}.{n} is {v!r}; expected {describe(FACT_TYPE[n])}")
    for n in ("name", "kernel", "summary"):
        if not isinstance(getattr(d, n, None), str):
            problems.append(f"{type(d).__name__}.{n} is {getattr(d, n, None)!r}; expected a string")
    if not isinstance(getattr(d, "settings", None), dict):
        problems.append(f"{type(d).__name__}.settings is {getattr(d, 'settings', None)!r}; expected a dict")
    problems += settings_problems(d)
    if problems:
        raise DesignError(f"{where}: " + "; ".join(problems))


def _declaration_problems(cls) -> list[str]:
    """The declared settings (``SETTINGS``): a tuple of ``Setting``, each default of its own type."""
    from .base import Setting
    decl = getattr(cls, "SETTINGS", ())
    if not isinstance(decl, tuple) or not all(isinstance(s, Setting) for s in decl):
        return [f"{cls.__name__}.SETTINGS is {decl!r}; expected a tuple of cowlab.designs.Setting"]
    problems = []
    for s in decl:
        try:
            s.coerce(s.default)
        except ValueError as e:
            problems.append(f"{cls.__name__}.SETTINGS: {s.name}: the default {e}")
    return problems


def settings_problems(d) -> list[str]:
    """The settings of a design instance: each of its declared type."""
    cls = type(d).__name__
    problems = []
    if _declaration_problems(type(d)):
        return problems                  # said by check_class already
    if isinstance(getattr(d, "settings", None), dict):
        types = d.setting_types()
        for n, v in d.settings.items():
            if n in types:
                try:
                    types[n].coerce(v)
                except ValueError as e:
                    problems.append(f"{cls}.settings: {n}: {e}")
    return problems


# ------------------------------------------------------------------- run time
def _locks(k):
    page = frozenset(i for i, f in enumerate(k.folios) if f is not None and f.flags & PG_locked)
    return page, tuple(m.ptl for m in k.mms)


def _where_raised(e: BaseException, path: str) -> str:
    """path:line of the deepest frame in user code (not cowlab's own)."""
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if not str(Path(f.filename).resolve()).startswith(_COWLAB)]
    if not frames:
        return path
    f = frames[-1]
    same = Path(f.filename).resolve() == Path(path).resolve()
    return f"{path if same else f.filename}:{f.lineno}"


def _checked_hook(name: str, where: str, holder: list):
    expected = RESULT[name]
    sig = SIGNATURE[name]
    takes_k = "k" in sig.parameters
    wp = name == "wp_anon"
    fork = name == "copy_present_anon"

    def hook(self, *args, **kw):
        cls = holder[0]
        label = f"{cls.__name__}.{name}()"
        a = sig.bind(self, *args, **kw).arguments      # the kernel's call, by the declared parameter names
        k = a.get("k") if takes_k else None
        before = _locks(k) if k is not None else None
        if fork:
            mapcount = k.folio(a["pfn"]).mapcount[a["idx"]]
        try:
            d = getattr(super(cls, self), name)(*args, **kw)
        except (Blocked, ModelBug, DesignError):
            raise
        except Exception as e:
            raise DesignError(f"{_where_raised(e, where)}: {label} raised {type(e).__name__}: {e}") from None
        tp = expected
        if name == "copy_huge_anon":
            tp = CopyHugeHugetlbResult if a.get("hugetlb") else CopyHugeThpResult
        if not conforms(d, tp):
            hint = " (did the hook forget to return?)" if d is None else ""
            raise DesignError(f"{where}: {label} returned {_show(d)}{hint}; expected {describe(tp)}")
        if before is not None:
            pages, ptls = before
            vmf = a["vmf"] if wp else None
            if wp and vmf.locked and d == LOCK_PAGE:
                raise DesignError(f"{where}: {label} returned LOCK_PAGE with the page lock already held (vmf.locked)")
            if wp and vmf.locked and d in (REUSE, COPY):
                pages = pages - {vmf.pfn}
            after_pages, after_ptls = _locks(k)
            if after_ptls != ptls:
                raise DesignError(f"{where}: {label} took or dropped a page-table lock (the kernel holds it)")
            if after_pages != pages:
                held = sorted(after_pages - pages)
                if held:
                    raise DesignError(f"{where}: {label} returned {_show(d)} with the page lock of pfn "
                                      f"{', '.join(map(str, held))} held (unlock_page() before returning)")
                dropped = sorted(pages - after_pages)
                raise DesignError(f"{where}: {label} unlocked pfn {', '.join(map(str, dropped))}, a page lock "
                                  f"it did not take")
        if fork:
            dup = k.folio(a["pfn"]).mapcount[a["idx"]] - mapcount
            if d == SHARE and dup != 1:
                raise DesignError(f"{where}: {label} returned SHARE without dup'ing the rmap once (call "
                                  f"rmap.page_dup_rmap(k, pfn, idx) or rmap.page_try_dup_anon_rmap(k, pfn, idx, "
                                  f"src_mm) before sharing)")
            if d == COPY and dup:
                raise DesignError(f"{where}: {label} returned COPY after changing the page's mapcount "
                                  f"(the child gets a copy: the parent's page keeps its rmap)")
        return d
    hook.__name__ = name
    hook.__qualname__ = name
    hook.__doc__ = getattr(DesignInterface, name).__doc__
    return hook


def checked(d, where: str, module):
    """d, with its class replaced by a subclass whose hooks check their
    answers (registered in ``module`` so that it pickles by reference)."""
    cls = type(d)
    if getattr(cls, "__design_file__", None) is not None:
        return d
    holder: list = []
    ns = {"__slots__": (), "__design_file__": where, "__module__": module.__name__}
    for n in HOOKS:
        ns[n] = _checked_hook(n, where, holder)
    attr = f"_{cls.__name__}_checked"
    new = type(cls.__name__, (cls,), ns)
    new.__qualname__ = attr
    holder.append(new)
    setattr(module, attr, new)
    sys.modules.setdefault(module.__name__, module)
    d.__class__ = new
    return d
