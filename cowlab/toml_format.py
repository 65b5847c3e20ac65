"""Scenario files (TOML).

::

    id = "my-vmsplice-case"          # stable kebab-case id
    title = "vmsplice() + unmap in child"
    source = "where the expected behaviour comes from"
    pages = 1                        # size of each process's address space, in pages

    [[step]]                         # a sequential script: steps run in this order
    thread = "parent"                # a thread; by default its own process
    op = "mmap"
    addr = 0
    pages = 1

    [[step]]
    thread = "parent"
    op = "fork"
    child = "child"

    [[step]]
    thread = "parent.cpu1"           # a second thread (CPU) of process "parent"
    process = "parent"
    op = "speculative_get"
    addr = 0

    [[thread]]                       # a concurrent thread, unordered against the script
    name = "reclaim"
    process = "parent"
    ops = [ { op = "pageout", addr = 0 } ]

``cowlab ops`` lists the operations and their arguments.  Errors name the
file, line and field, and suggest close names.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .kernel import registry  # noqa: F401
from .kernel.paths import OPS
from .kernel.types import HPAGE_PMD_NR
from .scenario import ScenarioError, compile_case

ARG_TYPES = {
    "addr": int, "pages": int, "other_addr": int, "new_addr": int,
    "prot": Literal["r", "rw", "none"],
    "advice": Literal["dontneed", "dontfork", "dofork", "hugepage", "nohugepage", "mergeable"],
    "pipe": str, "buf": str, "pin": str, "io": str, "who": str, "of": str, "child": str, "event": str,
    "fast": bool, "write": bool, "all": bool, "thp": bool, "hugetlb": bool, "shared_ok": bool,
    "value": Union[int, str],
}
#: arguments an operation cannot do without
REQUIRED = {"pipe_read": {"pipe"}, "vmsplice": {"addr", "pipe"}, "fork": {"child"}, "signal": {"event"},
            "wait": {"event"}, "mprotect": {"addr", "prot"}, "madvise": {"addr", "advice"},
            "ksm_merge": {"addr", "of"}}
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9.]+)*$")


class StepModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    thread: str
    process: Optional[str] = None
    op: str


class ThreadModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    process: str
    ops: list[dict]


class CaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    title: str = ""
    source: str = ""
    pages: int = Field(1, ge=1, le=max(64, 2 * HPAGE_PMD_NR))     # (two huge pages at the kernel's THP size)
    tags: list[str] = []
    step: list[StepModel] = []
    thread: list[ThreadModel] = []

    @field_validator("id")
    @classmethod
    def kebab(cls, v):
        if not KEBAB.match(v):
            raise ValueError("must be kebab-case (lowercase letters, digits and dashes)")
        return v


class _Lines:
    """Find the line of a field in the raw TOML text."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def header(self, table: str, index: int) -> int | None:
        n = -1
        for i, line in enumerate(self.lines):
            if re.match(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]", line):
                n += 1
                if n == index:
                    return i + 1
        return None

    def key(self, start: int | None, key: str) -> int | None:
        if start is None:
            for i, line in enumerate(self.lines):
                if re.match(r"^\s*\[", line):
                    return None
                if re.match(rf"^\s*{re.escape(key)}\s*=", line):
                    return i + 1
            return None
        for i in range(start, len(self.lines)):
            line = self.lines[i]
            if re.match(r"^\s*\[", line):
                break
            if re.match(rf"^\s*{re.escape(key)}\s*=", line):
                return i + 1
        return start

    def inline(self, start: int | None, index: int) -> int | None:
        if start is None:
            return None
        n = -1
        for i in range(start, len(self.lines)):
            line = self.lines[i]
            if i > start and re.match(r"^\s*\[", line):
                break
            for _ in re.finditer(r"\{", line):
                n += 1
                if n == index:
                    return i + 1
        return start


def _err(path, line, field, msg) -> ScenarioError:
    return ScenarioError(f"{path}:{line or '?'}: {field}: {msg}")


def load_case(path: str):
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ScenarioError(f"{path}:{m.group(1) if m else '?'}: syntax: {e}") from None
    return parse_case(data, text, str(p))


def parse_case(data: dict, text: str, path: str):
    lines = _Lines(text)
    try:
        cm = CaseModel.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = first["loc"]
        field = ".".join(str(x) for x in loc)
        line = None
        if loc and loc[0] in ("step", "thread") and len(loc) > 1 and isinstance(loc[1], int):
            h = lines.header(loc[0], loc[1])
            line = lines.key(h, str(loc[2])) if len(loc) > 2 else h
        elif loc:
            line = lines.key(None, str(loc[0]))
        msg = first["msg"]
        if first["type"] == "extra_forbidden" and len(loc) == 1:
            close = difflib.get_close_matches(str(loc[0]), CaseModel.model_fields, n=2)
            msg = "unknown field" + (f"; did you mean {', '.join(close)}?" if close else "")
        raise _err(path, line, field, msg) from None

    script, threads = [], {}
    for i, st in enumerate(cm.step):
        h = lines.header("step", i)
        args = dict(st.model_extra or {})
        _check_op(path, lines, h, f"step.{i}", st.op, args, lambda k: lines.key(h, k))
        if st.process:
            threads[st.thread] = st.process
        script.append((st.thread, st.op, args, h))
    free = []
    for i, th in enumerate(cm.thread):
        h = lines.header("thread", i)
        ops = []
        for j, od in enumerate(th.ops):
            od = dict(od)
            ln = lines.inline(h, j)
            if "op" not in od:
                raise _err(path, ln, f"thread.{i}.ops.{j}.op", "missing")
            name = od.pop("op")
            _check_op(path, lines, ln, f"thread.{i}.ops.{j}", name, od, lambda k: ln)
            ops.append((name, od))
        free.append((th.name, th.process, ops))
    procs = []
    for t, op, args, h in script:
        proc = threads.get(t, t)
        if proc not in procs and op != "fork":
            procs.append(proc)
        if op == "fork":
            if proc not in procs:
                procs.append(proc)
            if args["child"] in procs:
                raise _err(path, lines.key(h, "child"), "child", f"process {args['child']!r} already exists")
            procs.append(args["child"])
    for t, op, args, h in script:
        if "of" in args and args["of"] not in procs:
            raise _err(path, lines.key(h, "of"), "of", f"no process {args['of']!r}; processes: {', '.join(procs)}")
        for k in ("addr", "other_addr", "new_addr"):
            if k in args and not 0 <= args[k] + args.get("pages", 1) - 1 < cm.pages:
                raise _err(path, lines.key(h, k), k, f"{args[k]} is outside the {cm.pages}-page address space")
    try:
        return compile_case(cm.id, cm.title, cm.source or path, cm.pages, procs, threads, script, free, cm.tags)
    except ScenarioError as e:
        raise _err(path, None, "case", str(e)) from None


def _check_op(path, lines, h, where, name, args, keyline):
    if name not in OPS:
        close = difflib.get_close_matches(name, OPS, n=3, cutoff=0.5)
        raise _err(path, keyline("op"), f"{where}.op",
                   f"unknown operation {name!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                    "; see `cowlab ops`"))
    allowed = OPS[name][2]
    for k, v in args.items():
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=2)
            raise _err(path, keyline(k), f"{where}.{k}",
                       f"operation {name} has no argument {k!r}" +
                       (f"; did you mean {', '.join(close)}?" if close else f" (arguments: {', '.join(allowed) or 'none'})"))
        t = ARG_TYPES.get(k, str)
        from pydantic import TypeAdapter
        try:
            TypeAdapter(t).validate_python(v, strict=t in (int, bool))
        except ValidationError as e:
            raise _err(path, keyline(k), f"{where}.{k}", e.errors()[0]["msg"]) from None
        if t is int and v < 0:
            raise _err(path, keyline(k), f"{where}.{k}", "must be >= 0")
    need = REQUIRED.get(name, {"addr"} & set(allowed))
    for k in sorted(need):
        if k not in args:
            raise _err(path, h, f"{where}.{k}", f"operation {name} needs {k!r}")
