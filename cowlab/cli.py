"""The ``cowlab`` command."""
from __future__ import annotations

import json
import sys

try:
    import click
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from . import catalog, designs
    from . import exitcodes as ec
    from .catalog import CatalogError
    from .designs import DesignError
    from .scenario import ScenarioError
except KeyboardInterrupt:            # Ctrl-C while the command is still starting: one line, no traceback
    sys.stderr.write("cowlab: interrupted\n")
    raise SystemExit(130) from None

def _out_width() -> int | None:
    """The width of standard output: COLUMNS when set (a pipe too), else the terminal's; a pipe without
    COLUMNS keeps 160."""
    import os
    cols = os.environ.get("COLUMNS", "")
    if cols.isascii() and cols.isdigit() and int(cols) >= 20:
        return int(cols)
    return None if sys.stdout.isatty() else 160


out = Console(highlight=False, soft_wrap=True, emoji=False, width=_out_width())
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class UserError(click.ClickException):
    """One clear line, no traceback; a usage or input error (exit status 2)."""
    exit_code = ec.USAGE

    def show(self, file=None):
        err.print(f"cowlab: error: {self.message}", markup=False, emoji=False)


class Inconclusive(UserError):
    """Interrupted (Ctrl-C) or otherwise inconclusive, said in one line: exit status 3."""
    exit_code = ec.INCONCLUSIVE

    def show(self, file=None):
        err.print(f"cowlab: {self.message}", markup=False, emoji=False)


def _error_of(message: str) -> UserError:
    """The error for a message: an interruption is inconclusive (3), anything else a usage error (2)."""
    return (Inconclusive if message.startswith("interrupted") else UserError)(message)


def _exit(code: int):
    """End the command with the exit status of ``cowlab.exitcodes`` (nothing printed)."""
    if code:
        sys.exit(code)


def _guard(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except (CatalogError, DesignError, ScenarioError) as e:
            raise UserError(str(e)) from None        # a bad case, scenario file or design: usage error, 2
        except KeyboardInterrupt:
            raise Inconclusive("interrupted: the result is inconclusive") from None
    return wrapper


class _Progress:
    """Progress on a terminal (states, states/s, frontier, depth, elapsed for an
    exploration; runs done for a sweep); silent when stderr is not a terminal
    or with --quiet."""

    def __init__(self, quiet: bool, total: int | None = None, what: str = ""):
        self.on = not quiet and sys.stderr.isatty()
        self.total, self.what = total, what
        self.p = None

    def __enter__(self):
        if self.on:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, \
                TimeElapsedColumn
            cols = [SpinnerColumn(), TextColumn("{task.description}")]
            if self.total:
                cols += [BarColumn(), MofNCompleteColumn()]
            self.p = Progress(*cols, TimeElapsedColumn(), console=err, transient=True)
            self.p.start()
            self.task = self.p.add_task(self.what, total=self.total)
        return self

    def explore(self, states, transitions, frontier, depth, elapsed):
        if self.p:
            self.p.update(self.task, description=f"{self.what}: {states:,} states, {states / max(elapsed, 1e-9):,.0f}"
                                                 f" states/s, frontier {frontier:,}, depth {depth}")

    def advance(self):
        if self.p:
            self.p.advance(self.task)

    def __exit__(self, *a):
        if self.p:
            self.p.stop()


def _settings(pairs) -> dict:
    """``--set NAME=VALUE`` pairs -> {name: text}; each design types and checks them."""
    out_ = {}
    for p in pairs:
        k, eq, v = p.partition("=")
        if not eq or not k:
            raise UserError(f"--set {p!r}: expected NAME=VALUE")
        out_[k] = v
    return out_


def _design_spec(spec: str) -> str:
    """A kernel version (``6.6``, ``v5.15.120``, ``host``) resolved to its design's name, said on
    stderr; any other spec as it is (its ``:key=value`` settings kept)."""
    try:
        name, own = designs.split_spec(spec)
    except DesignError as e:
        raise UserError(str(e)) from None
    resolved, note = designs.resolve(name)
    if note:
        err.print(f"cowlab: -d {name}: {note}", markup=False, emoji=False)
    return resolved + (":" + ",".join(f"{k}={v}" for k, v in own.items()) if own else "")


def _load_design(spec: str, sets=()):
    """The design of ``-d SPEC`` with ``--set`` (checked: the design must declare each setting)."""
    return designs.load(_design_spec(spec), _settings(sets) or None)


class _Command(click.Command):
    """Every command's --help ends with the exit statuses (cowlab.exitcodes)."""

    def __init__(self, *a, **kw):
        kw.setdefault("epilog", ec.EPILOG)
        super().__init__(*a, **kw)


#: counts, limits and seeds: click checks them (a bad one is a one-line usage error, exit 2)
COUNT = click.IntRange(min=1, max=10**9)
SEED = click.IntRange(min=0, max=2**63 - 1)


class _Seconds(click.FloatRange):
    """Seconds: positive, finite or ``inf`` (no limit), never NaN."""

    def __init__(self):
        super().__init__(min=0, min_open=True)

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if v != v:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return v


SECONDS = _Seconds()


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=ec.EPILOG)
@click.version_option(version=__import__("cowlab").__version__, prog_name="cowlab")
def main():
    """cowlab: Linux anonymous-memory COW and GUP designs, executed and judged."""


main.command_class = _Command


@main.command()
@click.option("--design", "-d", "design_specs", multiple=True,
              help="design: a name, a kernel version (6.6, v5.15.120, host) or ./file.py, with settings of its own "
                   "as NAME:key=value[,key=value] (repeatable: -d rfc-mapcount:page_lock=true -d rfc-mapcount gives "
                   "two columns; default all)")
@click.option("--case", "-c", "case_ids", multiple=True,
              help="case id, file.toml or a glob over the catalog ids, e.g. 'race-*' (repeatable; default the catalog)")
@click.option("--tag", "tags", multiple=True, help="only cases with this tag (a glob; repeatable: every tag given)")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="a setting for every selected design that declares it (checked; prefer -d NAME:key=value)")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit", "csv"]), default="text")
@click.option("--summary", is_flag=True, help="the seed's table alone (text, csv), without the case x design grid")
@click.option("--only-violations", is_flag=True,
              help="the grid's rows (text, csv) only for cases with a missed, unnecessary or wrong COW or an "
                   "unknown result")
@click.option("--jobs", "-j", type=click.IntRange(min=1, max=1024), default=None,
              help="worker processes (default: the CPU count)")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
@ec.fail_on_option
@_guard
def matrix(design_specs, case_ids, tags, sets, fmt, summary, only_violations, jobs, quiet, fail_on):
    """The seed's table (missed / unnecessary / wrong COW per design, with the
    shortest witness case), then every case under every design."""
    import os
    from .matrix import compute
    from .selection import select_cases
    if case_ids or tags:
        case_ids = tuple(select_cases(case_ids, tags))
    specs = [_design_spec(x) for x in design_specs] or designs.names()
    pairs = [(x, {}) for x in specs]
    given = _settings(sets)
    if given:                       # --set: for each design that declares the setting; a bad value is an error
        takers = {k: [] for k in given}
        for i, x in enumerate(specs):
            d = designs.load(x)
            own = {k: v for k, v in given.items() if k in d.setting_types()}
            for k in own:
                takers[k].append(d.name)
            pairs[i] = (x, own)
        for k, who in takers.items():
            if not who:
                raise UserError(f"--set {k}: no selected design has the setting {k} "
                                f"(`cowlab designs NAME` lists a design's settings)")
            if len(who) < len(specs):
                err.print(f"cowlab: --set {k} applies to {', '.join(who)} (the other designs have no such setting)",
                          markup=False)
    n_units = len(case_ids or catalog.ids()) * len(pairs)
    with _Progress(quiet, n_units, "matrix") as prog:
        m = compute(pairs, case_ids or None, None, jobs=min(jobs or os.cpu_count() or 1, n_units),
                    progress=prog.advance)
    if fmt == "json":
        click.echo(json.dumps(m.as_json(), indent=2))
    elif fmt == "junit":
        from .report.junit import from_results
        click.echo(from_results("cowlab matrix", m.results, bad=tuple(k for k in ec.KINDS if k in fail_on)))
    elif fmt == "csv":
        from .cli_select import matrix_csv
        click.echo(matrix_csv(m, summary, only_violations), nl=False)
    else:
        from .cli_select import matrix_text
        matrix_text(m, out, summary, only_violations)
    code = ec.of_results(m.results, fail_on, interrupted=m.interrupted or not m.complete)
    if m.interrupted:
        if code == ec.FOUND:
            err.print("cowlab: interrupted (Ctrl-C): the result is inconclusive", markup=False)
            _exit(code)
        raise Inconclusive("interrupted (Ctrl-C): the result is inconclusive")
    _exit(code)


DESIGN_HELP = ("design: a name, a kernel version (6.6, v5.15.120, host) or ./file.py; settings as "
               "NAME:key=value[,key=value]")
SET_HELP = "a setting of the design (checked against the ones it declares: `cowlab designs NAME`)"


@main.command()
@click.argument("case")
@click.option("--design", "-d", "design_spec", required=True, help=DESIGN_HELP)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help=SET_HELP)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@ec.fail_on_option
@_guard
def run(case, design_spec, sets, fmt, fail_on):
    """Run one case under one design on the sequential schedule and show every
    step.  A race case (threads that can interleave) runs one schedule only:
    `cowlab explore` tries them all; with nothing found on it the status is 3."""
    from .model import CowModel
    from .run import run_sequential
    c = catalog.get(case)
    d = _load_design(design_spec, sets)
    r = run_sequential(CowModel(c, d))
    m = CowModel(c, d)
    names = [t.name for t in c.threads]
    steps = [(names.index(st["thread"]), st["label"]) for st in r.trace]
    from .report.trace import can_interleave
    race = "race" in c.tags or can_interleave(m, steps)
    note = (f"{c.id} is a race case: this ran one schedule (the sequential one) of many; "
            f"`cowlab explore {c.id} -d {design_spec}` tries every interleaving") if race else ""
    code = ec.of_results([r], fail_on)
    if race and code == ec.OK:
        code = ec.INCONCLUSIVE          # one schedule of a race shows no absence
    if fmt == "json":
        j = r.as_json(with_trace=True)
        j["schedule"] = "sequential"
        j["race"] = race
        if note:
            j["note"] = note
        click.echo(json.dumps(j, indent=2))
        _exit(code)
        return
    from .explore import replay as _replay
    from .report import terminal, trace as _trace
    out.print(f"[bold]{escape(c.id)}[/]: {escape(c.title)}  [dim]({escape(c.source)})[/]")
    out.print(f"design [bold]{escape(d.label)}[/] ({escape(d.kernel)}): {escape(d.summary)}")
    doc = _trace.build(m, list(_replay(m, steps)))
    out.print(terminal.table(doc))
    o = r.outcomes
    out.print(escape(f"outcomes: missed {o['missed']}, unnecessary {o['unnecessary']}, wrong {o['wrong']}; "
                     f"copies {r.copies}; status {r.status}{' (' + r.reason + ')' if r.reason else ''}"))
    if note:
        out.print(f"[yellow]note:[/] {escape(note)}")
    _exit(code)


def _explore_json(case, d, rep, model, kinds) -> dict:
    from .explore import replay
    out_ = {"case": case.id, "design": d.label, "settings": d.settings, "outcomes": rep.outcomes(kinds),
            "status": rep.status, "states": rep.states, "transitions": rep.transitions,
            "seconds": round(rep.seconds, 3), "depth": rep.depth}
    if rep.reason:
        out_["reason"] = rep.reason
    if rep.omission is not None:                         # hash compaction: what "complete" rests on
        out_["omission_probability"] = rep.omission
    if rep.found:
        first = min(rep.found.values(), key=lambda w: (w.depth, w.kind))
        out_["verdicts"] = {k: {"depth": w.depth, "text": w.text} for k, w in sorted(rep.found.items())}
        out_["kind"] = first.kind
        # every kind's shortest trace; "trace" is the shortest of them all (as before)
        out_["traces"] = {k: [_step_json(model, tr) for tr in replay(model, w.trace)]
                          for k, w in sorted(rep.found.items())}
        out_["trace"] = out_["traces"][first.kind]
    if rep.bugs:
        out_["model_bugs"] = [b for b, _ in rep.bugs]
    if rep.deadlocks:
        out_["stuck"] = len(rep.deadlocks)
    return out_


def _write(path: str, text: str) -> None:
    """Write an output file; a path that cannot be written is a one-line usage error."""
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None


def _kind_path(path: str, kind: str) -> str:
    """t.json -> t.missed.json (one file per kind when several are saved)."""
    import os
    root, ext = os.path.splitext(path)
    return f"{root}.{kind}{ext or '.json'}"


def _step_json(model, tr) -> dict:
    return {"thread": model.thread_name(tr.tid), "tid": tr.tid, "op": tr.op, "label": tr.label,
            "function": tr.func, "events": [f"{e.kind}: {e.text}" for e in tr.events], "bugs": list(tr.bugs)}


@main.command()
@click.argument("case")
@click.option("--design", "-d", "design_spec", required=True, help=DESIGN_HELP)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help=SET_HELP)
@click.option("--max-states", type=COUNT, default=2_000_000, show_default=True)
@click.option("--max-seconds", type=SECONDS, default=600.0, show_default=True)
@click.option("--max-depth", type=COUNT, default=10_000, show_default=True)
@click.option("--dfs", is_flag=True, help="depth-first (default breadth-first: shortest traces)")
@click.option("--no-por", is_flag=True, help="no partial-order reduction (search every interleaving)")
@click.option("--symmetry", type=click.Choice(["pages", "procs", "threads"]), is_flag=False, flag_value="pages",
              default=None,
              help="merge states equal up to renaming page frames and swap slots (--symmetry, --symmetry=pages); "
                   "--symmetry=procs: and up to permuting interchangeable processes (children one thread forks "
                   "with the same operations; searched without partial-order reduction); --symmetry=threads: "
                   "and up to permuting interchangeable threads of one process (each on a CPU of its own, running "
                   "the same operations up to their own pins', pipes' and events' names)")
@click.option("--dpor", is_flag=True,
              help="dynamic partial-order reduction from each step's footprint (depth-first: traces not shortest)")
@click.option("--fingerprints", is_flag=True,
              help="hash compaction: keep 64-bit fingerprints of visited states (less memory; \"complete\" then "
                   "comes with the probability that a state was missed)")
@click.option("--frontier", type=click.Choice(["memory", "disk"]), default="memory", show_default=True,
              help="where breadth-first search keeps the states waiting to be expanded: disk spools them to a "
                   "temporary file (with --fingerprints, memory is then about the fingerprint store's)")
@click.option("--random", "walks", type=click.IntRange(min=0, max=10**9), default=0,
              help="seeded random walks instead of exhaustive search")
@click.option("--seed", type=SEED, default=0)
@click.option("--kind", "kinds", type=click.Choice(["shortest", "missed", "wrong", "unnecessary", "all"]),
              multiple=True, help="which trace to print and save: the shortest violation's (default), one kind's "
                                  "shortest, or all (repeatable)")
@click.option("--save-trace", type=click.Path(dir_okay=False),
              help="write the trace for `cowlab replay` (several kinds: FILE.KIND.json each)")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
@ec.fail_on_option
@_guard
def explore(case, design_spec, sets, max_states, max_seconds, max_depth, dfs, no_por, symmetry, dpor, fingerprints,
            frontier, walks, seed, kinds, save_trace, fmt, quiet, fail_on):
    """Try every interleaving of the case's threads; report the shortest trace
    to each violation (--kind: which ones to print and save)."""
    if frontier == "disk" and (dfs or dpor or walks):
        raise click.UsageError("--frontier disk is breadth-first search's queue: not with --dfs, --dpor or --random")
    from .explore import Limits, explore as run_explore, random_walks
    from .model import CowModel
    from .verdict import VERDICTS
    c = catalog.get(case)
    design_spec = _design_spec(design_spec)
    d = _load_design(design_spec, sets)
    m = CowModel(c, d)
    lim = Limits(max_states=max_states, max_seconds=max_seconds, max_depth=max_depth)
    if walks:
        rep = random_walks(m, walks, seed, limits=lim)
    else:
        with _Progress(quiet, None, f"exploring {c.id} under {d.label}") as prog:
            rep = run_explore(m, lim, order="dfs" if dfs else "bfs", por=not no_por,
                              symmetry={None: False, "pages": True}.get(symmetry, symmetry),
                              progress=prog.explore, expect_stuck=c.expect_stuck, dpor=dpor,
                              fingerprints=fingerprints, frontier=frontier)
    res = _explore_json(c, d, rep, m, VERDICTS)
    code = ec.status(set(rep.found), fail_on, inconclusive=rep.status != "complete" or bool(rep.bugs))
    # the kinds whose traces are shown and saved
    want = set(kinds) or {"shortest"}
    show = [k for k in ("missed", "wrong", "unnecessary") if k in res.get("traces", {})
            and (k in want or "all" in want)]
    if "shortest" in want and "kind" in res and res["kind"] not in show:
        show.insert(0, res["kind"])
    missing = [k for k in ("missed", "wrong", "unnecessary") if k in want and k not in res.get("traces", {})]
    if save_trace:                       # the case, the design and its hash go with it (cli_select.save_trace)
        from .cli_select import save_trace as _save, say_no_trace
        if not show and not missing:
            say_no_trace(save_trace)
        elif not show:
            err.print(f"cowlab: --save-trace: no {' or '.join(missing) or 'violation'} trace found; "
                      f"{save_trace} not written", markup=False)
        for k in show:
            path = save_trace if len(show) == 1 else _kind_path(save_trace, k)
            _save(path, case, c, design_spec, d, [(s["tid"], s["label"]) for s in res["traces"][k]], k)
            if fmt == "text":
                err.print(f"cowlab: wrote {path} ({k} COW, {len(res['traces'][k])} steps)", markup=False)
    if fmt == "json":
        click.echo(json.dumps(res, indent=2))
        _exit(code)
        return
    if fmt == "junit":
        from .report.junit import from_results
        click.echo(from_results("cowlab explore", [res], bad=tuple(k for k in ec.KINDS if k in fail_on)))
        _exit(code)
        return
    out.print(f"[bold]{escape(c.id)}[/]: {escape(c.title)}  [dim]({escape(c.source)})[/]")
    out.print(f"design [bold]{escape(d.name)}[/] ({escape(d.kernel)}) settings {escape(str(d.settings or '{}'))}")
    out.print(f"{res['states']} states, {res['transitions']} transitions, depth {res['depth']}, "
              f"{res['seconds']:.2f}s: [bold]{res['status']}[/]"
              + (f" ({escape(res['reason'])})" if res.get("reason") else ""))
    for k in VERDICTS:
        v = res.get("verdicts", {}).get(k)
        if v:
            out.print(f"  [red]{k} COW[/]: shortest trace {v['depth']} steps: {escape(v['text'])}")
        elif res["status"] == "complete":
            out.print(f"  [green]no {k} COW[/] in any interleaving")
        else:
            out.print(f"  [yellow]{k} COW: not found (inconclusive)[/]")
    if show:
        from .explore import replay as _replay
        from .report import terminal, trace as _trace
        for k in show:
            w = rep.found[k]
            out.print(terminal.table(_trace.build(m, list(_replay(m, w.trace))), f"shortest trace to the {k} COW"))
    for k in missing:
        out.print(f"[yellow]--kind {k}:[/] no {k} COW found, no trace to show")
    for b in res.get("model_bugs", [])[:3]:
        out.print(f"[bold red]model bug:[/] {escape(b)}")
    _exit(code)


@main.command()
@click.argument("trace_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@ec.fail_on_option
@_guard
def replay(trace_file, fmt, fail_on):
    """Re-run a trace saved by `cowlab explore --save-trace` step by step."""
    from .explore import replay as run_replay
    from .model import CowModel
    from .cli_select import replay_inputs
    data, trace, lines = _load_trace(trace_file)
    c, d = replay_inputs(trace_file, data, lines)      # the embedded case; a warning if the design differs
    for i, (tid, _) in enumerate(trace):
        if not 0 <= tid < len(c.threads):
            raise UserError(f"{trace_file}:{_json_line(lines, 'trace')}: trace.{i}: thread {tid} does not exist "
                            f"(case {c.id} has {len(c.threads)} threads); not a trace of this case")
    m = CowModel(c, d)
    try:
        trs = list(run_replay(m, trace))
    except ValueError as e:
        raise UserError(f"{trace_file}:{_json_line(lines, 'trace')}: trace: {e}") from None
    from .report import terminal, trace as _trace
    doc = _trace.build(m, trs)
    code = ec.status(ec.found_kinds(doc["verdicts"]), fail_on, inconclusive=any(st["bugs"] for st in doc["steps"]))
    if fmt == "json":
        click.echo(json.dumps({"case": c.id, "design": d.label, "trace": [_step_json(m, tr) for tr in trs],
                               "verdicts": doc["verdicts"]}, indent=2))
        _exit(code)
        return
    out.print(terminal.table(doc, f"{c.id} under {d.label}: {len(trs)} steps replayed"))
    _exit(code)


def _json_line(lines, key) -> str:
    """The line of ``"key":`` in a trace file, for an error message."""
    for i, line in enumerate(lines):
        if f'"{key}"' in line:
            return str(i + 1)
    return "?"


def _load_trace(path):
    """A trace file written by ``explore --save-trace``, checked field by
    field: {"case": str, "design": str, "settings": {} | null, "trace":
    [[thread index, step label or null], ...]}."""
    try:
        with open(path, "rb") as f:
            raw = f.read(16 << 20)
        text = raw.decode("utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: encoding: not UTF-8; not a cowlab trace") from None
    lines = text.split("\n")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: syntax: {e.msg} (column {e.colno}); not a cowlab trace "
                        f"(truncated?)") from None
    except RecursionError:
        raise UserError(f"{path}:?: syntax: nested too deeply; not a cowlab trace") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: trace: not a cowlab trace (expected an object with case, design and trace)")
    for key in ("case", "design", "trace"):
        if key not in data:
            raise UserError(f"{path}:?: {key}: missing; not a cowlab trace")
    for key in ("case", "design"):
        if not isinstance(data[key], str) or not data[key] or "\n" in data[key]:
            raise UserError(f"{path}:{_json_line(lines, key)}: {key}: must be a case id or file name (a string)")
    if not isinstance(data.get("settings") or {}, dict):
        raise UserError(f"{path}:{_json_line(lines, 'settings')}: settings: must be an object")
    trace = data["trace"]
    if not isinstance(trace, list):
        raise UserError(f"{path}:{_json_line(lines, 'trace')}: trace: must be a list of [thread, label] pairs")
    out_ = []
    for i, x in enumerate(trace):
        if not (isinstance(x, list) and len(x) == 2 and isinstance(x[0], int) and not isinstance(x[0], bool)
                and (x[1] is None or isinstance(x[1], str))):
            raise UserError(f"{path}:{_json_line(lines, 'trace')}: trace.{i}: must be [thread index, step label], "
                            f"not {json.dumps(x)[:40]}")
        out_.append((x[0], x[1]))
    return data, out_, lines


@main.command()
@click.option("--design", "-d", "design_spec", default=None,
              help=DESIGN_HELP + " (required; with --compare the default is host)")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help=SET_HELP)
@click.option("--format", "fmt", type=click.Choice(["ktap", "json", "junit"]), default="ktap",
              help="ktap (with --compare: a table), json, junit")
@click.option("--test", "-t", "tests", multiple=True, metavar="PATTERN",
              help="only these tests, like run_vmtests.sh -t: a variant (hugetlb, pte-thp, zeropage), a glob over "
                   "the case ids ('vmsplice-*', '*-16k'), or words of the test's name or title (repeatable)")
@click.option("--sizes", "sizes", default=None, metavar="host|all|KB,KB...",
              help="the THP sizes cow.c runs: host (what this machine lists in /sys/kernel/mm/transparent_hugepage/"
                   "hugepages-*kB and /sys/kernel/mm/hugepages/, as cow.c detects them), all (x86-64's 16 .. 2048 kB "
                   "and hugetlb 2048, 1048576 kB; the default) or THP sizes in kB (the PMD size, 2048, is always "
                   "one)")
@click.option("--hugetlb-sizes", "hugetlb_sizes", default=None, metavar="KB,KB...|none",
              help="the hugetlb sizes in kB (x86-64: 2048, 1048576); default: the host's with --sizes host, else "
                   "both")
@click.option("--geometry", type=click.Choice(["model", "real"]), default="model", show_default=True,
              help="model: THPs of the model's size; real: the kernel's (512 subpages per PMD THP; slower)")
@click.option("--compare", "compare_file", default=None, metavar="KTAP_FILE", multiple=True,
              help="compare a real cow.c run (its KTAP output, runner prefixes allowed) with the model, test by "
                   "test: agree, disagree, model has none, kernel skipped; repeat it for several runs of the "
                   "kernel: a test they disagree on is 'kernel varies' if the model's verdict is one of theirs")
@_guard
def selftest(design_spec, sets, fmt, tests, sizes, hugetlb_sizes, geometry, compare_file):
    """Run tools/testing/selftests/mm/cow.c on the model: its tests named,
    ordered and counted as cow.c prints them (anon tests in every memory
    variant and THP size, the collapse tests, the non-anon tests), judged as
    cow.c judges them (a leak test fails on a missed COW, a pin test on a
    wrong one, a hugetlb vmsplice leak is XFAIL; a test the model has no
    case for is SKIP "model has none"), printed as KTAP; exits 1 if a test
    fails.  With --compare: a real cow.c run's KTAP against the model's
    verdict of each of its tests; exits 1 on a disagreement."""
    from . import selftest as st
    from .cli_select import selftest_compare, selftest_select, selftest_sizes
    real = geometry == "real"
    if compare_file:
        if sizes is not None or hugetlb_sizes is not None:
            raise UserError("--sizes/--hugetlb-sizes: a --compare run has the sizes of its KTAP file")
        if fmt == "junit":
            raise UserError("--format junit: not with --compare (ktap: a table, or json)")
        selftest_compare(compare_file, _load_design(design_spec or "host", sets), fmt, tests, real)
        return
    if design_spec is None:
        raise UserError("selftest: --design/-d is required (a name, a kernel version or host)")
    d = _load_design(design_spec, sets)
    size_info = selftest_sizes(sizes, hugetlb_sizes)
    ktests = selftest_select(tests, st.kernel_tests(size_info[1], size_info[2], size_info[0]))
    with _Progress(False, len(ktests), "cow.c tests") as prog:
        rows = st.run(d, ktests, progress=prog.advance, real=real)
    if fmt == "json":
        click.echo(json.dumps(st.as_json(d, rows, size_info), indent=2))
    elif fmt == "junit":
        from .report.junit import suite
        click.echo(suite(f"cow.c under {d.name}", [
            {"classname": f"cow.{d.name}", "name": row.test.name,
             "failure": "; ".join([row.message] + [t for _, _, t in (row.result.events if row.result else [])])
             if row.verdict == "fail" else None,
             "skipped": row.message if row.verdict in ("skip", "none") else None,
             "out": f"XFAIL: expected failure (hugetlb vmsplice): {row.message}" if row.verdict == "xfail" else ""}
            for row in rows]))
    else:
        click.echo(st.ktap(d, rows, size_info))
    _exit(ec.status(failed=any(row.verdict == "fail" for row in rows)))


@main.command()
def table():
    """Print the generated catalog table (Markdown) -- docs/catalog.md."""
    from .docs import markdown
    click.echo(markdown(), nl=False)


@main.command()
@click.argument("case")
@click.option("--design", "-d", "design_spec", required=True, help=DESIGN_HELP)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help=SET_HELP)
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help="also write a self-contained HTML page")
@click.option("--schedule", "--mode", "mode", type=click.Choice(["auto", "sequential", "explore"]), default="auto",
              show_default=True,
              help="auto: a race case (threads that can interleave) is explored, the others run sequentially; "
                   "explore: search every interleaving of any case (--mode is the old name)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@ec.fail_on_option
@_guard
def explain(case, design_spec, sets, html_file, mode, fmt, fail_on):
    """Tell a case under a design as a short story (the shortest
    counterexample for a race), optionally as an HTML page."""
    from .report import explain as ex, html as h, trace as tr
    c = catalog.get(case)
    d = _load_design(design_spec, sets)
    m, trs, meta = tr.transitions_for(c, d, mode)
    doc = tr.build(m, trs, meta)
    if html_file:
        _write(html_file, h.render(doc))
    found = ec.found_kinds(doc["verdicts"]) | set(meta.get("explored", {}).get("found", ()))
    inconclusive = meta.get("status") != "complete" or any(st["bugs"] for st in doc["steps"])
    if meta.get("race") and "explored" not in meta and not found:
        inconclusive = True             # one schedule of a race case, not explored: shows no absence
    code = ec.status(found, fail_on, inconclusive=inconclusive)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1))
    else:
        click.echo(ex.story(doc))
        if html_file:
            click.echo(f"\nwrote {html_file}")
    _exit(code)


@main.command()
@click.option("--out", "out_dir", default="plots", show_default=True, help="directory for the PNG and SVG files")
@click.option("--walks", type=click.IntRange(min=1, max=100_000), default=40, show_default=True,
              help="random schedules per point")
@click.option("--seed", type=SEED, default=1, show_default=True)
@_guard
def plots(out_dir, walks, seed):
    """Unnecessary COWs per design vs background load; state-space size with
    and without each reduction (PNG and SVG)."""
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:      # an extra: pip install 'cowlab[plots]'
        u = UserError("`cowlab plots` needs matplotlib, which is not installed: pip install 'cowlab[plots]'")
        u.exit_code = 2                                     # exit codes: 2 = usage or input error
        raise u
    from .plots import make
    try:
        files = make(out_dir, walks, seed)
    except OSError as e:
        raise UserError(f"{out_dir}: cannot write the plots: {e.strerror or e}") from None
    for f in files:
        click.echo(f"wrote {f}")


@main.command()
@click.argument("cases", nargs=-1)
@click.option("--swap/--no-swap", default=True, show_default=True,
              help="set up a temporary zram swap device for the swapped-out variants (restored afterwards)")
@click.option("--controls/--no-controls", default=True, show_default=True, help="run the MAP_SHARED negative controls")
@click.option("--thp", is_flag=True, help="also the THP variants, with the model's THP at the kernel's size (slow)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--design", "-d", "design_spec", default=None,
              help="compare with this design (name or file) instead of this kernel's: an older design disagrees "
                   "where the kernel changed")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
@click.option("--random", "random_n", type=COUNT, default=None,
              help="run N random scenarios instead (cowlab.scenario_gen); disagreements are shrunk to TOML files")
@click.option("--seed", type=SEED, default=1, show_default=True,
              help="with --random: the same seed, the same scenarios")
@click.option("--exclude", multiple=True, metavar="CLASS",
              help="with --random: leave out a known false-verdict class ('known' for all) or the steps the "
                   "kernel refuses (segfault, efault, write-gup-prot-read); by default nothing is left out")
@click.option("--findings", "findings_dir", default="cowlab-findings", show_default=True,
              help="with --random: where the shrunk reproducers go")
@_guard
def conformance(cases, swap, controls, thp, fmt, quiet, design_spec, random_n, seed, exclude, findings_dir):
    """Run catalog cases (or scenario files, or --random N scenarios) as real
    programs on this machine's kernel and compare, step by step, with the
    model's design for this kernel version (root)."""
    from . import conformance as conf
    if random_n is not None or any(c.endswith(".toml") or "/" in c for c in cases):
        from .conformance.random import cli_main
        return cli_main(cases, random_n, seed, exclude, findings_dir, swap, fmt, quiet,
                        design_spec and _design_spec(design_spec), _Progress, out, _error_of)
    for c in cases:
        catalog.get(c)
    if design_spec:
        design_spec = _design_spec(design_spec)
        designs.load(design_spec)        # a bad name is a one-line error before anything is changed
    interrupted = False
    total = len(cases or catalog.ids()) + (len(conf.NEGATIVE_CONTROLS) if controls else 0)
    try:
        with _Progress(quiet, total, "conformance") as prog:
            rel, dname, note, results, changed = conf.run(list(cases) or None, swap=swap, controls=controls, thp=thp,
                                                          log=lambda r: prog.advance(), design_spec=design_spec)
    except conf.Interrupted as e:
        rel, dname, note, results, changed = e.args
        interrupted = True
    if fmt == "json":
        click.echo(json.dumps({"kernel": rel, "design": dname, "note": note, "interrupted": interrupted,
                               "cases": [r.as_json() for r in results], "changed": changed}, indent=2))
    else:
        out.print(f"{note}")
        t = Table()
        for col in ("case", "result", "steps compared", "detail"):
            t.add_column(col, overflow="fold")
        for r in results:
            style = {"agree": "green", "disagree": "red", "skip": "yellow"}[r.result]
            res = r.result + (" (expected)" if r.control and r.result == "disagree" else "")
            if r.control and r.result != "disagree":
                res, style = r.result + " (CONTROL FAILED)", "bold red"
            t.add_row(r.case, f"[{style}]{res}[/]", str(r.steps_compared), r.reason)
        out.print(t)
        n = {k: sum(1 for r in results if r.result == k and not r.control) for k in ("agree", "disagree", "skip")}
        out.print(f"agree {n['agree']}, disagree {n['disagree']}, skip {n['skip']}; controls "
                  f"{sum(1 for r in results if r.control and r.result == 'disagree')}/"
                  f"{sum(1 for r in results if r.control)} "
                  f"disagreed as they must")
        for line in changed:
            out.print(f"machine: {line}")
    bad = any(r.result == "disagree" and not r.control for r in results) or \
        any(r.control and r.result != "disagree" for r in results)
    if interrupted and not bad:
        raise Inconclusive(f"interrupted after {len(results)} cases: the result is inconclusive "
                           f"(the machine was put back: {len(changed)} changes listed)")
    _exit(ec.status(failed=bad))


@main.command("designs")
@click.argument("name", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_guard
def list_designs(name, fmt):
    """The built-in designs; with NAME (a name, a kernel version or ./file.py), that
    design: its kernel, rules, sources and the settings it declares."""
    if name:
        return _show_design(name)
    if fmt == "json":
        from .cli_select import designs_json
        click.echo(json.dumps(designs_json(), indent=2))
        return
    t = Table()
    for col in ("name", "kernel", "summary", "settings"):
        t.add_column(col)
    for n in designs.names():
        d = designs.load(n)
        types = d.setting_types()
        t.add_row(d.name, d.kernel, d.summary, ", ".join(f"{k}={types[k].show(v) if k in types else v}"
                                                         for k, v in d.settings.items()))
    out.print(t)


def _show_design(spec):
    d = _load_design(spec)
    rng = designs.releases(d.name)
    rel = designs.release_text(rng) if rng else ""
    out.print(f"[bold]{escape(d.name)}[/] ({escape(d.kernel)}"
              f"{', releases ' + rel if rel and rel not in d.kernel else ''}"
              f"): {escape(d.summary)}")
    for src in d.sources:
        out.print(f"  source: {escape(src)}")
    types = d.setting_types()
    if not types:
        out.print("settings: none")
        return
    t = Table(title=f"settings (-d {d.name}:NAME=VALUE)")
    for col in ("setting", "type", "default", "allowed", "meaning"):
        t.add_column(col, overflow="fold")
    for n, st in types.items():
        t.add_row(n, st.type, st.show(), st.allowed(), st.help)
    out.print(t)


@main.command("cases")
@click.argument("patterns", nargs=-1)
@click.option("--tag", "tags", multiple=True, help="only cases with this tag (a glob; repeatable: every tag given)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_guard
def list_cases(patterns, tags, fmt):
    """The built-in case catalog (PATTERN: an id, a glob like 'race-*', or a word of the id)."""
    from .cli_select import cases_selected
    from .selection import case_json
    cs = cases_selected(patterns, tags)
    if fmt == "json":
        click.echo(json.dumps({"cases": [case_json(c) for c in cs]}, indent=2))
        return
    t = Table()
    for col in ("id", "title", "source", "tags"):
        t.add_column(col)
    for c in cs:
        t.add_row(escape(c.id), escape(c.title), escape(c.source), escape(", ".join(c.tags)))
    out.print(t)


@main.command("ops")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              help="markdown: the scenario format, as docs/scenario-format.md")
def list_ops(fmt):
    """The operations a scenario can use."""
    from .kernel.paths import OPS
    from .kernel import registry  # noqa: F401
    if fmt != "text":
        from .selection import ops_schema, scenario_format_markdown
        click.echo(json.dumps({"ops": ops_schema()}, indent=2) if fmt == "json" else scenario_format_markdown(),
                   nl=fmt == "json")
        return
    t = Table()
    for col in ("op", "arguments", "kernel entry", "meaning"):
        t.add_column(col)
    for name, (start, entry, args, doc) in sorted(OPS.items()):
        t.add_row(name, ", ".join(args), entry, doc)
    out.print(t)


from . import cli_select  # noqa: E402  (cowlab export, cowlab diff; matrix's text and CSV)
for _cmd in cli_select.COMMANDS:
    _cmd.epilog = _cmd.epilog or ec.EPILOG
    main.add_command(_cmd)

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.stderr.write("cowlab: interrupted\n")
        sys.exit(130)
