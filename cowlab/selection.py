"""What the command line selects and exports (issue 13, items 5 and 8).

* ``select_cases(patterns, tags)``: ``-c`` values that are catalog ids,
  ``.toml`` files or globs over the catalog ids (``race-*``), narrowed by
  ``--tag`` (a case has every tag given; a tag may be a glob too).
* ``export_toml(case)``: a catalog case as a scenario file that compiles to
  the same case (``cowlab export CASE > case.toml``).
* ``ops_schema()`` / ``scenario_format_markdown()``: every operation's
  arguments with type, default and whether required, from the code
  (``kernel.paths.OPS``, ``toml_format``): ``docs/scenario-format.md``.
* ``abbreviate(names, width)``: abbreviations that stay unique.
"""
from __future__ import annotations

import fnmatch
import json
import re

from . import catalog
from .catalog import CatalogError
from .scenario import Case

GLOB = re.compile(r"[*?\[]")


class SelectionError(CatalogError):
    """A selection that names nothing: a usage error (exit status 2)."""
    exit_code = 2


def is_glob(s: str) -> bool:
    return bool(GLOB.search(s)) and not s.endswith(".toml")


def select_cases(patterns=(), tags=(), what: str = "-c") -> list[str]:
    """The case specs (ids, in catalog order for globs, or ``.toml`` files)
    that ``patterns`` name and that have every tag of ``tags``; every
    pattern must name something, and so must the whole selection."""
    patterns, tags = list(patterns or ()), list(tags or ())
    cases = {c.id: c for c in catalog.all_cases()}
    if patterns:
        specs: list[str] = []
        for p in patterns:
            if is_glob(p):
                hit = [i for i in cases if fnmatch.fnmatchcase(i, p)]
                if not hit:
                    raise SelectionError(f"{what} {p!r}: no catalog case matches (`cowlab cases` lists them)")
                specs += [i for i in hit if i not in specs]
            else:
                catalog.get(p)                       # an unknown id or a bad file: its own one-line error
                if p not in specs:
                    specs.append(p)
    else:
        specs = list(cases)
    if tags:
        known = sorted({t for c in cases.values() for t in c.tags})
        for t in tags:
            if not any(fnmatch.fnmatchcase(k, t) for k in known):
                import difflib
                close = difflib.get_close_matches(t, known, n=3, cutoff=0.5)
                raise SelectionError(f"--tag {t!r}: no case has this tag"
                                     + (f"; did you mean {', '.join(close)}?" if close else
                                        f" (tags: {', '.join(known)})"))

        def has(spec):
            c = cases.get(spec) or catalog.get(spec)
            return all(any(fnmatch.fnmatchcase(ct, t) for ct in c.tags) for t in tags)
        specs = [s for s in specs if has(s)]
    if not specs:
        said = " ".join([f"{what} {p!r}" for p in patterns] + [f"--tag {t!r}" for t in tags])
        raise SelectionError(f"no case is selected by {said}")
    return specs


def case_json(c: Case) -> dict:
    return {"id": c.id, "title": c.title, "source": c.source, "tags": list(c.tags), "pages": c.pages,
            "hpage_pmd_nr": c.hpage_pmd_nr, "race": "race" in c.tags,
            "processes": list(c.processes), "threads": [t.name for t in c.threads]}


# ----------------------------------------------------------------------------- export
class ExportError(CatalogError):
    exit_code = 2


_RESERVED = re.compile(r"^[sp]\d+(\..*)?$")
_HIDDEN = ("process", "child_mm", "mm_id")


def script_of(case: Case) -> list:
    """The sequential script (and its parallel blocks) that compiled into
    ``case``: entries ``(thread, op, args)`` or ``(None, block_event,
    {thread: [(op, args), ...]})``, recovered by running the case's order
    events (``s<N>``, ``p<N>``) on a schedule that runs each thread as far as
    it can."""
    ops = {t.name: list(t.ops) for t in case.threads}
    ptr = {t.name: 0 for t in case.threads}
    signals: set = set()
    in_block: dict = {}
    blocks: dict = {}
    ends: dict = {}
    out: list = []

    def user_args(op):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in op.args if k not in _HIDDEN}

    moved = True
    while moved:
        moved = False
        for t in ops:
            while ptr[t] < len(ops[t]):
                op = ops[t][ptr[t]]
                ev = dict(op.args).get("event", "")
                if op.name == "wait" and _RESERVED.match(ev):
                    if ev not in signals:
                        break
                    if ev.startswith("p") and "." in ev:              # after a block: its threads in order
                        b, _, bt = ev.partition(".")
                        ends.setdefault(b, []).append(bt)
                    if ev.startswith("p") and "." not in ev:          # entering a parallel block
                        in_block[t] = ev
                        if ev not in blocks:
                            blocks[ev] = {}
                            out.append((None, ev, blocks[ev]))
                        blocks[ev].setdefault(t, [])
                elif op.name == "signal" and _RESERVED.match(ev):
                    signals.add(ev)
                    if in_block.get(t) and ev == f"{in_block[t]}.{t}":
                        del in_block[t]
                elif t in in_block:
                    blocks[in_block[t]][t].append((op.name, user_args(op)))
                else:
                    out.append((t, op.name, user_args(op)))
                ptr[t] += 1
                moved = True
    for b, order in ends.items():           # the block's threads in the order the script gave them
        if b in blocks and set(order) == set(blocks[b]):
            ops_of = dict(blocks[b])
            blocks[b].clear()
            blocks[b].update((t, ops_of[t]) for t in order)
    left = [t for t in ops if ptr[t] < len(ops[t])]
    if left:
        raise ExportError(f"{case.id}: cannot be exported as a script: thread(s) {', '.join(left)} wait for "
                          f"events no step signals")
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ExportError(f"cannot write {v!r} in TOML")


def export_toml(case: Case) -> str:
    """``case`` as a scenario file (``cowlab/toml_format.py``) that loads
    back as the same case: the same processes, threads and operations, in
    the same order.  Checked here: a case that would not come back the same
    (threads with no order against the script) is refused."""
    from .kernel.types import HPAGE_PMD_NR
    thread_proc = {t.name: t.process for t in case.threads}
    lines = [f"# exported by `cowlab export {case.id}`; run it with `cowlab run FILE -d DESIGN`",
             f"id = {_toml_value(case.id)}", f"title = {_toml_value(case.title)}",
             f"source = {_toml_value(case.source)}", f"pages = {case.pages}"]
    if case.hpage_pmd_nr != HPAGE_PMD_NR:
        lines.append(f"hpage_pmd_nr = {case.hpage_pmd_nr}")
    if case.tags:
        lines.append(f"tags = {_toml_value(list(case.tags))}")
    if case.expect_stuck:
        lines.append("expect_stuck = true")
    if case.setting("swap_device", "zram") != "zram":
        lines.append(f"swap_device = {_toml_value(case.setting('swap_device'))}")
    if case.setting("thp_sizes") is not None:
        lines.append(f"thp_sizes = {_toml_value(list(case.setting('thp_sizes')))}")

    def step(thread, op, args, group=None):
        out = ["", "[[step]]", f"thread = {_toml_value(thread)}"]
        if thread_proc[thread] != thread:
            out.append(f"process = {_toml_value(thread_proc[thread])}")
        out.append(f"op = {_toml_value(op)}")
        out += [f"{k} = {_toml_value(v)}" for k, v in sorted(args.items())]
        if group:
            out.append(f"parallel = {_toml_value(group)}")
        return out

    n = 0
    for thread, op, args in script_of(case):
        if thread is None:                     # a parallel block: op is its event, args the threads' ops
            n += 1
            lines += ["", f"# parallel group race{n}: these threads run concurrently"]
            for t, tops in args.items():
                for o, a in tops:
                    lines += step(t, o, a, f"race{n}")
        else:
            lines += step(thread, op, args)
    text = "\n".join(lines) + "\n"
    back = _load_text(text, f"<export of {case.id}>")
    if not same_case(back, case):
        raise ExportError(f"{case.id}: its export would not load back as the same case (threads unordered "
                          f"against the script cannot be written as steps)")
    return text


def _load_text(text: str, path: str) -> Case:
    import tomllib
    from .toml_format import parse_case
    return parse_case(tomllib.loads(text), text, path)


def shape(case: Case) -> tuple:
    """What the model runs of a case (operations without their file lines)."""
    return (case.pages, case.hpage_pmd_nr, case.processes, case.expect_stuck, tuple(case.settings),
            tuple((t.name, t.process, tuple((o.name, o.args) for o in t.ops)) for t in case.threads))


def same_case(a: Case, b: Case) -> bool:
    return shape(a) == shape(b) and (a.id, a.title, a.source, tuple(a.tags)) == (b.id, b.title, b.source,
                                                                                 tuple(b.tags))


# ----------------------------------------------------------------------------- the scenario format, from the code
def _type_name(t) -> str:
    import typing
    if t is int:
        return "integer"
    if t is bool:
        return "boolean"
    if t is str:
        return "string"
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{x}`" for x in typing.get_args(t))
    if origin is typing.Union:
        return " or ".join(_type_name(x) for x in typing.get_args(t))
    return str(t)


def ops_schema() -> list[dict]:
    """Every operation: its kernel entry, meaning and arguments, each with
    type, whether required, its default (a value, or ``default_rule`` when
    the default is a rule) and what it means (from ``OPS`` and
    ``toml_format``'s ARG_TYPES, REQUIRED, ARG_DEFAULTS, ARG_DOC)."""
    from .kernel import registry  # noqa: F401
    from .kernel.paths import OPS
    from .toml_format import ARG_DEFAULTS, ARG_DOC, ARG_TYPES, NAME_ARGS, REQUIRED, op_default
    rows = []
    for name, (start, entry, args, doc) in sorted(OPS.items()):
        need = REQUIRED.get(name, {"addr"} & set(args))
        a = []
        for k in args:
            t = ARG_TYPES.get(k, str)
            row = {"name": k, "type": _type_name(t) + (" (a name)" if k in NAME_ARGS else ""),
                   "required": k in need, "doc": ARG_DOC.get(k, "")}
            if k not in need:
                if k in ARG_DEFAULTS:
                    row["default"] = op_default(name, k)
                else:
                    row["default_rule"] = op_default(name, k)
            a.append(row)
        rows.append({"op": name, "entry": entry, "doc": doc, "args": a})
    return rows


def _default_text(d) -> str:
    if isinstance(d, bool):
        return "`true`" if d else "`false`"
    if d is None:
        return "-"
    return f"`{json.dumps(d)}`" if isinstance(d, str) else f"`{d}`"


def scenario_format_markdown() -> str:
    """``docs/scenario-format.md``: generated by ``cowlab ops --format
    markdown``; a test keeps the file current."""
    from .toml_format import CaseModel, StepModel, ThreadModel
    out = ["# Scenario files: the format", "",
           "Generated from the code (`cowlab/toml_format.py`, the operations' registrations in `cowlab/kernel/`) by",
           "`cowlab ops --format markdown > docs/scenario-format.md`; `tests/cli/test_select.py` fails when it is",
           "not current. `cowlab export CASE > case.toml` writes any catalog case in this format.", "",
           "## Top level", "", "| field | type | default | |", "|---|---|---|---|"]
    top_doc = {"id": "stable kebab-case id (required)", "title": "one line", "source": "where the expected "
               "behaviour comes from (default: the file's path)", "pages": "each process's address space, in "
               "pages (1..1024)", "hpage_pmd_nr": "subpages of a THP / hugetlb page: a power of two, 2..512",
               "tags": "labels `cowlab cases --tag` and `-c ... --tag` select by", "swap_device": "the swap device "
               "the model assumes: `zram` (SWP_SYNCHRONOUS_IO: a swap-in may skip the swap cache) or `disk`",
               "thp_sizes": "anonymous THP sizes in pages enabled in MADV_HUGEPAGE vmas (powers of two, 4 .. "
               "`hpage_pmd_nr`; like `hugepages-<kB>kB/enabled = madvise`); sizes below `hpage_pmd_nr` are mTHP "
               "(designs with `anon_mthp`, 6.8+); default `[hpage_pmd_nr]`, PMD THP only",
               "expect_stuck": "a thread left waiting for ever is the expected end (otherwise the run is inconclusive)",
               "step": "the sequential script: `[[step]]` tables, run in order", "thread": "`[[thread]]` tables: "
               "concurrent threads, unordered against the script"}
    for name, f in CaseModel.model_fields.items():
        d = "required" if f.is_required() else "`[]`" if isinstance(f.default, list) else _default_text(f.default)
        out.append(f"| `{name}` | {_annot(f.annotation)} | {d} | {top_doc.get(name, '')} |")
    out += ["", "## `[[step]]`", "", "| field | type | default | |", "|---|---|---|---|"]
    step_doc = {"thread": "the thread that runs the step; by default a process's own thread of that name",
                "process": "the thread's process, for a second thread (CPU) of a process",
                "op": "the operation (below); its arguments are the step's other fields",
                "parallel": "a group name: consecutive steps with the same name run concurrently (each "
                            "thread's steps of the group in order); the next step waits for all of them"}
    for name, f in StepModel.model_fields.items():
        d = "required" if f.is_required() else _default_text(f.default)
        out.append(f"| `{name}` | {_annot(f.annotation)} | {d} | {step_doc.get(name, '')} |")
    out += ["", "## `[[thread]]`", "", "| field | type | default | |", "|---|---|---|---|"]
    th_doc = {"name": "the thread's name (unique; not a process's name)", "process": "the process it runs in",
              "ops": "inline tables `{ op = \"...\", ARG = VALUE, ... }`, run in order"}
    for name, f in ThreadModel.model_fields.items():
        d = "required" if f.is_required() else _default_text(f.default)
        out.append(f"| `{name}` | {_annot(f.annotation)} | {d} | {th_doc.get(name, '')} |")
    out += ["", "## Operations", "",
            "An address (`addr`, `other_addr`, `new_addr`) is a page index inside the address space (with `pages`,",
            "the whole range is); integers are >= 0 and `pages` >= 1; a name is 1 to 64 letters, digits, `_`, `.`,",
            "`+` or `-`.", ""]
    for row in ops_schema():
        out += [f"### `{row['op']}`", "", f"{row['doc']} (kernel: {row['entry']})", ""]
        if not row["args"]:
            out += ["No arguments.", ""]
            continue
        out += ["| argument | type | required | default | |", "|---|---|---|---|---|"]
        for a in row["args"]:
            d = "-" if a["required"] else a.get("default_rule") or _default_text(a["default"])
            out.append(f"| `{a['name']}` | {a['type']} | {'yes' if a['required'] else 'no'} | {d} | {a['doc']} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _annot(t) -> str:
    import typing
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Union and type(None) in args:
        return _annot(next(a for a in args if a is not type(None)))
    if origin is list:
        inner = args[0] if args else None
        return "array of " + ("strings" if inner is str else "integers" if inner is int else "tables")
    return _type_name(t)


# ----------------------------------------------------------------------------- abbreviations
def _shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters by cutting its longest
    dash-separated words first (so short words -- thp, pte, swap -- stay
    whole); initials when even one letter a word does not fit."""
    words = name.split("-")
    if 2 * len(words) - 1 > width:
        return "".join(w[:1] for w in words)[:width]
    lens = [len(w) for w in words]
    while sum(lens) + len(words) - 1 > width:
        i = max(range(len(lens)), key=lambda j: (lens[j], j))
        lens[i] -= 1
    return "-".join(w[:n] for w, n in zip(words, lens))


def abbreviate(names, width: int) -> dict:
    """{name: a string of at most ``width`` characters}, distinct for
    distinct names: a name that fits is kept; the others are shortened word
    by word (``_shorten``), or keep a prefix and a suffix around "…" where
    that collides, or else a prefix and a number."""
    names = list(dict.fromkeys(names))
    width = max(width, 3)
    kept = {n for n in names if len(n) <= width}
    short = [n for n in names if len(n) > width]
    if not short:
        return {n: n for n in names}

    def unique(ab):
        vals = list(ab.values())
        return len(set(vals)) == len(vals) and not set(vals) & kept

    ab = {n: _shorten(n, width) for n in short}
    if not unique(ab):
        ab = None
        for pre in range(width - 1, 0, -1):
            suf = width - 1 - pre
            cand = {n: n[:pre] + "…" + (n[-suf:] if suf else "") for n in short}
            if unique(cand):
                ab = cand
                break
    if ab is None:                           # nothing works for all: a prefix and a number
        digits = len(str(len(short)))
        ab = {n: f"{n[:max(width - digits - 1, 1)]}…{i}" for i, n in enumerate(short, 1)}
    return {n: ab.get(n, n) for n in names}
