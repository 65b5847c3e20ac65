"""Scenario files (TOML).

::

    id = "my-vmsplice-case"          # stable kebab-case id
    title = "vmsplice() + unmap in child"
    source = "where the expected behaviour comes from"
    pages = 1                        # size of each process's address space, in pages
    hpage_pmd_nr = 2                 # optional geometry: subpages of a THP / hugetlb page
                                     # (a power of two >= 2; default 2; pages a multiple of it
                                     # when the case maps a THP or hugetlb page)
    expect_stuck = false             # true: a thread left waiting for ever is the expected end (else inconclusive)
    swap_device = "zram"             # the swap device the model assumes: "zram" (SWP_SYNCHRONOUS_IO, the default,
                                     # as conformance sets up) or "disk" (every swap-in through the swap cache)
    thp_sizes = [4]                  # optional: the anonymous THP sizes (in pages: powers of two, 4 .. hpage_pmd_nr)
                                     # enabled in MADV_HUGEPAGE vmas, like hugepages-<kB>kB/enabled = madvise; sizes
                                     # below hpage_pmd_nr are mTHP (6.8+ designs); default [hpage_pmd_nr]

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

What a file may say (checked when it is loaded, before anything runs):

- Names (threads, processes, pins, pipes, buffers, events, ...) are 1 to 64
  letters, digits, ``_``, ``.``, ``+`` or ``-``; titles and sources at most
  1,000 characters; no string holds a control character; integers are below
  2**63; a file is at most 1 MiB and 1,000 operations.
- The process of the first step is the one that exists at start; every other
  process is created by a ``fork`` (``child = ...``) before a step runs in it
  (a ``[[thread]]``'s fork is unordered against the script, so a step may wait
  for it).  Thread names are unique; a thread named after a process belongs to
  that process; a process runs nothing after its ``exit`` step.
- Every argument an operation needs is given, with its type and range (an
  address range lies inside the address space; ``pages`` >= 1).
- A pin, pipe, io_uring buffer or speculative reference that an operation uses
  (``pin_read``, ``unpin``, ``put_user_pages``, ``pipe_read``,
  ``io_uring_read_fixed`` / ``_write_fixed`` / ``_unregister``,
  ``speculative_put``) was made by an earlier operation of the same process
  (any operation of a ``[[thread]]``, which is unordered): pins, pipes and
  buffers belong to the process that made them.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import tomllib
import unicodedata
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from .kernel import registry  # noqa: F401
from .kernel.mm.gup_test import OWNER as GUP_TEST_OWNER
from .kernel.paths import OPS
from .kernel.types import HPAGE_PMD_NR
from .scenario import ScenarioError, compile_case

ARG_TYPES = {
    "addr": int, "pages": int, "other_addr": int, "new_addr": int,
    "prot": Literal["r", "rw", "none"],
    "advice": Literal["dontneed", "dontfork", "dofork", "hugepage", "nohugepage", "mergeable",
                      "collapse"],
    "pipe": str, "buf": str, "pin": str, "io": str, "who": str, "of": str, "child": str, "event": str,
    "fast": bool, "write": bool, "all": bool, "thp": bool, "hugetlb": bool, "shared_ok": bool,
    "value": Union[int, str],
}
#: what an optional argument is when a step leaves it out (the kernel modules' own defaults: memory.py,
#: mmap.py, gup_test.OWNER, rsrc.buf_owner(), direct_io's "dio"); a test runs the catalog with each written out
ARG_DEFAULTS = {"pages": 1, "prot": "rw", "fast": False, "write": False, "all": False, "thp": False,
                "hugetlb": False, "shared_ok": False, "pin": GUP_TEST_OWNER, "buf": "buf", "io": "dio"}
#: optional arguments whose default is a rule, not a value
ARG_DEFAULT_RULES = {"value": "a fresh value (one no page held before)", "other_addr": "the same as `addr`",
                     "of": "the step's own process", "who": "the thread's own reference"}
#: what each argument means (``cowlab ops``, docs/scenario-format.md)
ARG_DOC = {
    "addr": "first page (index into the address space)", "pages": "how many pages from `addr`",
    "other_addr": "the page of process `of` to merge with", "new_addr": "where mremap() moves the range",
    "prot": "protection", "advice": "MADV_* advice", "pipe": "the pipe (made by vmsplice, read by pipe_read)",
    "buf": "the io_uring fixed buffer", "pin": "the pin (gup_test) or get_user_pages reference",
    "io": "the O_DIRECT request", "who": "the speculative reference's owner", "of": "another process",
    "child": "the new process", "event": "a sync event (not s<N> / p<N>: those order the steps)",
    "fast": "through gup-fast", "write": "FOLL_WRITE", "all": "lru_add_drain_all() (every CPU)",
    "thp": "a THP-aligned mapping with MADV_HUGEPAGE", "hugetlb": "MAP_HUGETLB",
    "shared_ok": "reclaim a page mapped by more than one process too", "value": "the data written",
}


def op_default(op: str, arg: str):
    """The default of an optional argument: a value, or a rule (a str in
    ARG_DEFAULT_RULES) -- None for a required one."""
    if arg in REQUIRED.get(op, {"addr"} & set(OPS[op][2])):
        return None
    return ARG_DEFAULTS[arg] if arg in ARG_DEFAULTS else ARG_DEFAULT_RULES[arg]


#: arguments an operation cannot do without
REQUIRED = {"pipe_read": {"pipe"}, "vmsplice": {"addr", "pipe"}, "fork": {"child"}, "signal": {"event"},
            "wait": {"event"}, "mprotect": {"addr", "prot"}, "madvise": {"addr", "advice"},
            "ksm_merge": {"addr", "of"}, "mremap": {"addr", "new_addr"}}
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9.]+)*$")

MAX_FILE_BYTES = 1 << 20
MAX_OPS = 1000
MAX_NAME = 64
MAX_TEXT = 1000                  # title, source
MAX_INT = 2 ** 63 - 1
NAME = re.compile(r"^\w[\w.+-]*$")
#: string arguments that name something (the others are data: value, prot, advice)
NAME_ARGS = ("pipe", "buf", "pin", "io", "who", "of", "child", "event")
#: the events compile_case() makes for the script's order
RESERVED_EVENT = re.compile(r"^[sp]\d+(\..*)?$")
#: operations that make (+) or use (-) a named kernel reference:
#: op -> (what, argument, its default, role); the defaults are the kernel
#: modules' (gup_test.OWNER, rsrc.buf_owner(), agents.speculative_get())
REFS = {
    "vmsplice": ("pipe", "pipe", None, "+"), "pipe_read": ("pipe", "pipe", None, "-"),
    "io_uring_register": ("io_uring buffer", "buf", "buf", "+"),
    "io_uring_read_fixed": ("io_uring buffer", "buf", "buf", "-"),
    "io_uring_write_fixed": ("io_uring buffer", "buf", "buf", "-"),
    "io_uring_unregister": ("io_uring buffer", "buf", "buf", "-"),
    "pin_longterm": ("pin", "pin", GUP_TEST_OWNER, "+"), "pin_read": ("pin", "pin", GUP_TEST_OWNER, "-"),
    "unpin": ("pin", "pin", GUP_TEST_OWNER, "-"),
    "get_user_pages": ("get_user_pages reference", "pin", GUP_TEST_OWNER, "+"),
    "put_user_pages": ("get_user_pages reference", "pin", GUP_TEST_OWNER, "-"),
    "speculative_get": ("speculative reference", "who", None, "+"),
    "speculative_put": ("speculative reference", "who", None, "-"),
}
_MAKER = {"pipe": "vmsplice", "io_uring buffer": "io_uring_register", "pin": "pin_longterm",
          "get_user_pages reference": "get_user_pages", "speculative reference": "speculative_get"}


class StepModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    thread: str
    process: Optional[str] = None
    op: str
    #: consecutive steps with the same ``parallel`` name run concurrently (``Script.parallel``): each thread's
    #: steps of the group in their order, unordered against the group's other threads; the step after the group
    #: waits for all of them
    parallel: Optional[str] = None


class ThreadModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    process: str
    ops: list[dict]


class CaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str
    title: str = ""
    source: str = ""
    pages: int = Field(1, ge=1, le=1024)     # (up to two huge pages at the kernel's THP size)
    hpage_pmd_nr: int = Field(HPAGE_PMD_NR, ge=2, le=512, strict=True)
    tags: list[str] = []
    expect_stuck: bool = False
    swap_device: Literal["zram", "disk"] = "zram"
    thp_sizes: Optional[list[int]] = None
    step: list[StepModel] = []
    thread: list[ThreadModel] = []

    @field_validator("id")
    @classmethod
    def kebab(cls, v):
        if not KEBAB.match(v):
            raise ValueError("must be kebab-case (lowercase letters, digits and dashes)")
        return v

    @field_validator("hpage_pmd_nr")
    @classmethod
    def power_of_two(cls, v):
        if v & (v - 1):
            raise ValueError("must be a power of two (2, 4, 8, ... 512)")
        return v


class _Lines:
    """Find the line of a field in the raw TOML text."""

    def __init__(self, text: str):
        self.lines = text.split("\n")      # TOML's lines (splitlines() also breaks at \x0c, \u2028, ...)
        self._headers: dict[str, list[int]] = {}
        for i, line in enumerate(self.lines):
            m = re.match(r"^\s*\[\[\s*([^\]\s]+)\s*\]\]", line)
            if m:
                self._headers.setdefault(m.group(1), []).append(i + 1)

    def header(self, table: str, index: int) -> int | None:
        hs = self._headers.get(table, [])
        return hs[index] if 0 <= index < len(hs) else None

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

    def of(self, loc: tuple) -> int | None:
        """The line of a field given as a path (``("step", 3, "addr")``)."""
        if loc and loc[0] in ("step", "thread") and len(loc) > 1 and isinstance(loc[1], int):
            h = self.header(loc[0], loc[1])
            if loc[0] == "thread" and len(loc) > 3 and loc[2] == "ops" and isinstance(loc[3], int):
                return self.inline(h, loc[3])
            return self.key(h, str(loc[2])) if len(loc) > 2 else h
        if loc:
            return self.key(None, str(loc[0]))
        return None


def _err(path, line, field, msg) -> ScenarioError:
    return ScenarioError(f"{path}:{line or '?'}: {field}: {msg}")


def _show(v, n: int = 40) -> str:
    """A value for a message: its repr, cut short."""
    r = repr(v)
    return r if len(r) <= n else f"{r[:n]}... ({len(r):,} characters)"


def _hint(name, names) -> str:
    close = difflib.get_close_matches(str(name), [str(x) for x in names], n=2, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _deepest(text: str) -> int | None:
    """The line that opens the most arrays / inline tables (for a nesting error)."""
    lines = text.split("\n")
    if not lines:
        return None
    return max(range(len(lines)), key=lambda i: lines[i].count("[") + lines[i].count("{")) + 1


def load_case(path: str):
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _err(path, None, "file", f"{len(raw):,} bytes; a scenario file is at most {MAX_FILE_BYTES:,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise _err(path, line, "encoding", f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {col})") from None
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ScenarioError(f"{path}:{m.group(1) if m else '?'}: syntax: {e}") from None
    except RecursionError:
        raise _err(path, _deepest(text), "syntax", "arrays or inline tables nested too deeply") from None
    return parse_case(data, text, str(p))


_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _bad_char(s: str):
    for i, c in enumerate(s):
        if c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            return i, c
    return None


def _check_values(path, lines, data):
    """Every key and string: no control character, bounded length; every
    integer below 2**63.  Walks without recursion (the data may be deep)."""
    stack = [((), data)]
    while stack:
        loc, v = stack.pop()
        field = ".".join(str(x) for x in loc) or "file"
        if isinstance(v, dict):
            for k in v:
                _check_str(path, lines, loc, f"{field} key", k, MAX_NAME)
            stack.extend(reversed([(loc + (k,), x) for k, x in v.items()]))
        elif isinstance(v, list):
            stack.extend(reversed([(loc + (i,), x) for i, x in enumerate(v)]))
        elif isinstance(v, str):
            _check_str(path, lines, loc, field, v, MAX_TEXT if loc in (("title",), ("source",)) else MAX_NAME)
        elif isinstance(v, int) and not isinstance(v, bool) and not -MAX_INT - 1 <= v <= MAX_INT:
            raise _err(path, lines.of(loc), field, f"number too large ({len(str(abs(v)))} digits; integers are "
                                                   f"below 2**63)")


def _check_str(path, lines, loc, field, s, limit):
    if len(s) > limit:
        raise _err(path, lines.of(loc), field, f"{len(s):,} characters; at most {limit}")
    bad = _bad_char(s)
    if bad:
        raise _err(path, lines.of(loc), field, f"control character U+{ord(bad[1]):04X} at position {bad[0] + 1}")


def _check_name(path, line, field, v):
    if not NAME.match(v) or v == "__parallel__":
        raise _err(path, line, field, f"{_show(v)} is not a name: use letters, digits, '_', '.', '+' and '-' "
                                      f"(starting with a letter, digit or '_'), at most {MAX_NAME} characters")


def parse_case(data: dict, text: str, path: str):
    lines = _Lines(text)
    _check_values(path, lines, data)
    try:
        cm = CaseModel.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = first["loc"]
        field = ".".join(str(x) for x in loc)
        line = lines.of(loc)
        msg = first["msg"]
        if first["type"] == "extra_forbidden" and len(loc) == 1:
            close = difflib.get_close_matches(str(loc[0]), CaseModel.model_fields, n=2)
            msg = "unknown field" + (f"; did you mean {', '.join(close)}?" if close else "")
        raise _err(path, line, field, msg) from None
    n_ops = len(cm.step) + sum(len(th.ops) for th in cm.thread)
    if n_ops > MAX_OPS:
        raise _err(path, lines.header("step", MAX_OPS) if len(cm.step) > MAX_OPS else None, "step",
                   f"{n_ops:,} operations; a scenario has at most {MAX_OPS:,}")

    script, threads, groups = [], {}, []
    for i, st in enumerate(cm.step):
        h = lines.header("step", i)
        args = dict(st.model_extra or {})
        _check_name(path, lines.key(h, "thread"), f"step.{i}.thread", st.thread)
        _check_op(path, h, f"step.{i}", st.op, args, lambda k, h=h: lines.key(h, k), cm.pages)
        if st.process is not None:
            _check_name(path, lines.key(h, "process"), f"step.{i}.process", st.process)
            if threads.get(st.thread, st.process) != st.process:
                raise _err(path, lines.key(h, "process"), f"step.{i}.process",
                           f"thread {st.thread!r} is in process {threads[st.thread]!r} at an earlier step; "
                           f"a thread stays in one process")
            threads[st.thread] = st.process
        script.append((st.thread, st.op, args, h))
        groups.append(st.parallel)
    free, free_lines = [], []
    for i, th in enumerate(cm.thread):
        h = lines.header("thread", i)
        _check_name(path, lines.key(h, "name"), f"thread.{i}.name", th.name)
        _check_name(path, lines.key(h, "process"), f"thread.{i}.process", th.process)
        ops, lns = [], []
        for j, od in enumerate(th.ops):
            od = dict(od)
            ln = lines.inline(h, j)
            if "op" not in od:
                raise _err(path, ln, f"thread.{i}.ops.{j}.op", "missing")
            name = od.pop("op")
            _check_op(path, ln, f"thread.{i}.ops.{j}", name, od, lambda k, ln=ln: ln, cm.pages)
            ops.append((name, od))
            lns.append(ln)
        free.append((th.name, th.process, ops))
        free_lines.append((h, lns))
    procs = _check_processes(path, lines, script, threads, free, free_lines)
    _check_refs(path, lines, script, threads, free, free_lines)
    script = _parallel_groups(path, lines, script, groups)
    try:
        case = compile_case(cm.id, cm.title, cm.source or path, cm.pages, procs, threads, script, free, cm.tags,
                            hpage_pmd_nr=cm.hpage_pmd_nr, thp_sizes=tuple(cm.thp_sizes or ()))
    except ScenarioError as e:
        raise _err(path, None, "case", str(e)) from None
    settings = {}
    if cm.swap_device != "zram":
        settings["swap_device"] = cm.swap_device
    if cm.thp_sizes is not None:
        from .scenario import thp_sizes_problem
        err = thp_sizes_problem(cm.thp_sizes, cm.hpage_pmd_nr)
        if err:
            raise _err(path, lines.key(None, "thp_sizes"), "thp_sizes", err)
        settings["thp_sizes"] = tuple(cm.thp_sizes)
    if settings:
        case = dataclasses.replace(case, settings=tuple(sorted(settings.items())))
    return dataclasses.replace(case, expect_stuck=True) if cm.expect_stuck else case


def _parallel_groups(path, lines, script, groups) -> list:
    """The script with each run of consecutive steps of one ``parallel``
    name made into one concurrent block (compile_case's ``__parallel__``
    entry: {thread: [(op, args), ...]}).  A group's name is used once; a
    process forked in a group runs nothing in that group."""
    out, seen, i = [], set(), 0
    while i < len(script):
        g = groups[i]
        if g is None:
            out.append(script[i])
            i += 1
            continue
        h = script[i][3]
        _check_name(path, lines.key(h, "parallel"), f"step.{i}.parallel", g)
        if g in seen:
            raise _err(path, lines.key(h, "parallel"), f"step.{i}.parallel",
                       f"parallel group {g!r} was used by earlier steps; a group is one run of consecutive steps")
        seen.add(g)
        block, forked = {}, set()
        while i < len(script) and groups[i] == g:
            t, op, args, h = script[i]
            if t in forked:
                raise _err(path, lines.key(h, "thread"), f"step.{i}.thread",
                           f"process {t!r} is forked in parallel group {g!r}: it can run only after the group")
            if op == "fork":
                forked.add(args["child"])
            block.setdefault(t, []).append((op, args))
            i += 1
        out.append(("__parallel__", None, block, h))
    return out


def _check_processes(path, lines, script, thread_of, free, free_lines) -> list[str]:
    """The processes, in mm-id order: the first step's (else the first
    [[thread]]'s), which exists at start, then each fork's child.  A step
    runs in a process that exists by then (or that a [[thread]] forks: that
    fork is unordered, the step waits for it); names are not reused."""
    if script:
        t0 = script[0][0]
        initial = thread_of.get(t0, t0)
    elif free:
        initial = free[0][1]
    else:
        return []
    step_fork = {}                              # child -> the step that forks it
    for i, (t, op, args, h) in enumerate(script):
        if op == "fork":
            c = args["child"]
            if c == initial or c in step_fork:
                raise _err(path, lines.key(h, "child"), f"step.{i}.child", f"process {c!r} already exists")
            step_fork[c] = i
    free_fork = {}                              # child -> (thread index, op index)
    for i, (name, proc, ops) in enumerate(free):
        for j, (o, a) in enumerate(ops):
            if o == "fork":
                c = a["child"]
                if c == initial or c in step_fork or c in free_fork:
                    raise _err(path, free_lines[i][1][j], f"thread.{i}.ops.{j}.child",
                               f"process {c!r} already exists")
                free_fork[c] = (i, j)
    procs = [initial] + list(step_fork) + list(free_fork)

    def unknown(p):
        return (f"no process {p!r}: a process is the initial one ({initial!r}, the first step's) or made by a "
                f"fork (child = ...)" + _hint(p, [q for q in procs if q != p]))

    for c in procs[1:]:
        if c in thread_of and thread_of[c] != c:
            i = step_fork.get(c)
            raise _err(path, lines.key(script[i][3], "child") if i is not None else free_lines[free_fork[c][0]][0],
                       f"step.{i}.child" if i is not None else f"thread.{free_fork[c][0]}.ops.{free_fork[c][1]}.child",
                       f"{c!r} is already a thread of process {thread_of[c]!r}")
    known = {initial} | set(free_fork)
    exited = {}                                 # process -> the step where it exits
    for i, (t, op, args, h) in enumerate(script):
        proc = thread_of.get(t, t)
        field = "process" if t in thread_of else "thread"
        if proc in exited and op not in ("signal", "wait"):
            raise _err(path, lines.key(h, "op"), f"step.{i}.op",
                       f"process {proc!r} exited at step {exited[proc]}: it runs no {op} after that")
        if op == "exit":
            exited[proc] = i
        if proc not in known:
            if proc in step_fork:
                raise _err(path, lines.key(h, field), f"step.{i}.{field}",
                           f"process {proc!r} runs here (step {i}) before the fork that makes it (step "
                           f"{step_fork[proc]})")
            raise _err(path, lines.key(h, field), f"step.{i}.{field}", unknown(proc))
        if t in procs and proc != t:
            raise _err(path, lines.key(h, "process"), f"step.{i}.process",
                       f"thread {t!r} has the name of process {t!r} but runs in {proc!r}; give it another name")
        if op == "fork":
            known.add(args["child"])
        if "of" in args and args["of"] not in known:
            raise _err(path, lines.key(h, "of"), f"step.{i}.of",
                       f"process {args['of']!r} does not exist at this step" if args["of"] in procs
                       else unknown(args["of"]))
    step_threads = {t for t, _, _, _ in script} | set(procs)
    seen = {}
    for i, (name, proc, ops) in enumerate(free):
        h, lns = free_lines[i]
        if proc not in procs:
            raise _err(path, lines.key(h, "process"), f"thread.{i}.process", unknown(proc))
        if name in seen:
            raise _err(path, lines.key(h, "name"), f"thread.{i}.name",
                       f"thread {name!r} is already defined (thread.{seen[name]}); thread names are unique")
        if name in step_threads:
            raise _err(path, lines.key(h, "name"), f"thread.{i}.name",
                       f"{name!r} is already the name of a thread of the steps" if name not in procs else
                       f"{name!r} is the name of process {name!r}'s own thread; give this one another name")
        seen[name] = i
        for j, (o, a) in enumerate(ops):
            if "of" in a and a["of"] not in procs:
                raise _err(path, lns[j], f"thread.{i}.ops.{j}.of", unknown(a["of"]))
    return procs


def _check_refs(path, lines, script, thread_of, free, free_lines):
    """An operation that uses a pin, pipe, io_uring buffer or speculative
    reference names one an earlier operation made (see the module doc)."""

    def key(op, args, proc, thread):
        what, arg, default, role = REFS[op]
        name = args.get(arg, default)
        if what == "speculative reference":
            scope = "" if arg in args else thread         # the default owner is the thread's own (t<tid>)
        else:
            scope = proc
        return (what, scope, name), role

    def fail(line, field, k, op, proc, args):
        what, scope, name = k
        arg = REFS[op][1]
        dflt = "" if arg in args or name is None else f" (the default: the operation names no {arg})"
        if k in step_first:
            label = repr(name) if name is not None else f"of thread {scope!r}"
            raise _err(path, line, f"{field}.{arg}",
                       f"the {what} {label} is made only later (step {step_first[k]}); an operation uses it after "
                       f"the one that makes it")
        same = sorted({n for (w, sc, n) in made_any if w == what and sc == scope and n is not None})
        if what == "speculative reference":
            msg = (f"no speculative reference {name!r}: no earlier speculative_get with who = {name!r} takes it"
                   if name is not None else f"no speculative reference of thread {scope!r}: no earlier "
                   f"speculative_get of this thread without 'who' takes one")
        else:
            msg = (f"no {what} {name!r}{dflt} in process {proc!r}: no earlier {_MAKER[what]} of this process makes it"
                   f"{' (' + what + 's belong to the process that made them)' if what != 'pin' else ''}")
        if same:
            msg += f"; {what}s there: {', '.join(same)}" + _hint(name, same)
        raise _err(path, line, f"{field}.{arg}", msg)

    made_any, free_made = set(), {}
    for i, (name, proc, ops) in enumerate(free):
        for o, a in ops:
            if o in REFS:
                k, role = key(o, a, proc, name)
                if role == "+":
                    free_made.setdefault(k, set()).add(i)
                    made_any.add(k)
    step_first = {}                             # key -> the first step that makes it
    for i, (t, op, args, h) in enumerate(script):
        if op in REFS:
            k, role = key(op, args, thread_of.get(t, t), t)
            if role == "+":
                made_any.add(k)
                step_first.setdefault(k, i)
    step_made = set()
    for i, (t, op, args, h) in enumerate(script):
        if op in REFS:
            k, role = key(op, args, thread_of.get(t, t), t)
            if role == "+":
                step_made.add(k)
            elif k not in step_made and k not in free_made:
                fail(lines.key(h, REFS[op][1]), f"step.{i}", k, op, thread_of.get(t, t), args)
    for i, (name, proc, ops) in enumerate(free):
        own = set()
        for j, (o, a) in enumerate(ops):
            if o in REFS:
                k, role = key(o, a, proc, name)
                if role == "+":
                    own.add(k)
                elif k not in own and k not in step_made and not free_made.get(k, set()) - {i}:
                    fail(free_lines[i][1][j], f"thread.{i}.ops.{j}", k, o, proc, a)


@functools.cache
def _adapter(t) -> TypeAdapter:
    return TypeAdapter(t)


def _check_op(path, h, where, name, args, keyline, pages):
    if not isinstance(name, str):
        raise _err(path, keyline("op"), f"{where}.op", f"must be a string naming an operation, not {_show(name)}; "
                                                       f"see `cowlab ops`")
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
                       (f"; did you mean {', '.join(close)}?" if close
                        else f" (arguments: {', '.join(allowed) or 'none'})"))
        t = ARG_TYPES.get(k, str)
        try:
            _adapter(t).validate_python(v, strict=True)
        except ValidationError as e:
            raise _err(path, keyline(k), f"{where}.{k}", e.errors()[0]["msg"]) from None
        if t is int and v < 0:
            raise _err(path, keyline(k), f"{where}.{k}", "must be >= 0")
        if k == "pages" and v < 1:
            raise _err(path, keyline(k), f"{where}.{k}", "must be >= 1")
        if k in NAME_ARGS:
            _check_name(path, keyline(k), f"{where}.{k}", v)
        if k == "event" and RESERVED_EVENT.match(v):
            raise _err(path, keyline(k), f"{where}.{k}",
                       f"{v!r} is reserved (the events that order the steps are s<N> and p<N>)")
    need = REQUIRED.get(name, {"addr"} & set(allowed))
    for k in sorted(need):
        if k not in args:
            raise _err(path, h, f"{where}.{k}", f"operation {name} needs {k!r}")
    n = args.get("pages", 1)
    for k in ("addr", "other_addr", "new_addr"):
        if k in args and not 0 <= args[k] + n - 1 < pages:
            where_ = f"{args[k]}" if n == 1 or args[k] >= pages else f"{args[k]}..{args[k] + n - 1} (pages = {n})"
            raise _err(path, keyline(k), f"{where}.{k}", f"{where_} is outside the {pages}-page address space")
    if name == "mmap" and (args.get("thp") or args.get("hugetlb")) and pages % HPAGE_PMD_NR:
        k = "thp" if args.get("thp") else "hugetlb"
        raise _err(path, keyline(k), f"{where}.{k}",
                   f"the address space (pages = {pages}) must be a multiple of {HPAGE_PMD_NR} pages for THP/hugetlb")
