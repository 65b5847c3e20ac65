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
    from .catalog import CatalogError
    from .designs import DesignError
    from .scenario import ScenarioError
except KeyboardInterrupt:            # Ctrl-C while the command is still starting: one line, no traceback
    sys.stderr.write("cowlab: interrupted\n")
    raise SystemExit(130) from None

out = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class UserError(click.ClickException):
    """One clear line, no traceback."""

    def show(self, file=None):
        err.print(f"cowlab: error: {self.message}", markup=False, emoji=False)


def _guard(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except (CatalogError, DesignError, ScenarioError) as e:
            u = UserError(str(e))
            u.exit_code = getattr(e, "exit_code", u.exit_code)     # a bad design (file) is a usage error: 2
            raise u from None
        except KeyboardInterrupt:
            raise UserError("interrupted: the result is inconclusive") from None
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
    out_ = {}
    for p in pairs:
        if "=" not in p:
            raise UserError(f"--set {p!r}: expected NAME=VALUE")
        k, v = p.split("=", 1)
        out_[k] = {"true": True, "false": False}.get(v.lower(), int(v) if v.isascii() and v.isdigit() else v)
    return out_


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cowlab")
def main():
    """cowlab: Linux anonymous-memory COW and GUP designs, executed and judged."""


@main.command()
@click.option("--design", "-d", "design_specs", multiple=True,
              help="design name or ./file.py (repeatable; default all)")
@click.option("--case", "-c", "case_ids", multiple=True, help="case id or file.toml (repeatable; default the catalog)")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="design setting, e.g. page_lock=true")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text")
@click.option("--jobs", "-j", type=int, default=None, help="worker processes (default: the CPU count)")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
@_guard
def matrix(design_specs, case_ids, sets, fmt, jobs, quiet):
    """The seed's table (missed / unnecessary / wrong COW per design, with the
    shortest witness case), then every case under every design."""
    import os
    from .matrix import compute
    n_units = len(case_ids or catalog.ids()) * len(design_specs or designs.names())
    with _Progress(quiet, n_units, "matrix") as prog:
        m = compute(design_specs or None, case_ids or None, _settings(sets) or None, jobs=jobs or os.cpu_count() or 1,
                    progress=prog.advance)
    if fmt == "json":
        click.echo(json.dumps(m.as_json(), indent=2))
    elif fmt == "junit":
        from .report.junit import from_results
        click.echo(from_results("cowlab matrix", m.results))
    else:
        _matrix_text(m)
    if m.interrupted:
        raise UserError("interrupted (Ctrl-C): the result is inconclusive")


def _matrix_text(m):
    from .matrix import KINDS
    t = Table(title="COW outcomes per design (computed over the catalog; witness = shortest case)")
    t.add_column("design")
    t.add_column("kernel")
    for kind in KINDS:
        t.add_column(f"{kind} COW")
    for row in m.table():
        cells = []
        for kind in KINDS:
            c = row[kind]
            if c["occurs"]:
                cells.append(f"[bold red]yes[/] {c['witness']} ({c['cases']} case{'s' if c['cases'] > 1 else ''})")
            elif c["occurs"] is None:            # not every case complete: no "no" on incomplete results
                cells.append("[yellow]unknown[/]")
            else:
                cells.append("[green]no[/]")
        t.add_row(row["design"], row["kernel"], *cells)
    out.print(t)
    g = Table(title="case x design (M missed, U unnecessary, W wrong, . none, ? inconclusive or not computed)")
    g.add_column("case")
    for d in m.designs:
        g.add_column(d.name.replace("linux-", ""), justify="center")
    by = {(r.case, r.design): r for r in m.results}
    for c in m.cases:
        cells = []
        for d in m.designs:
            r = by.get((c.id, d.name))
            if r is None or r.status != "complete":
                cells.append("[yellow]?[/]")
                continue
            s = ("M" * bool(r.outcomes["missed"]) + "U" * bool(r.outcomes["unnecessary"])
                 + "W" * bool(r.outcomes["wrong"]))
            cells.append(f"[red]{s}[/]" if s else ".")
        g.add_row(c.id, *cells)
    out.print(g)
    if not m.complete:
        out.print(f"[yellow]inconclusive:[/] {m.note or 'some runs did not complete'}")
    bugs = [(r.case, r.design, b) for r in m.results for b in r.bugs]
    if bugs:
        first = escape(f"{bugs[0][0]} / {bugs[0][1]}: {bugs[0][2]}")
        out.print(f"[bold red]model bugs:[/] {len(bugs)} (first: {first})")


@main.command()
@click.argument("case")
@click.option("--design", "-d", "design_spec", required=True, help="design name or ./file.py")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_guard
def run(case, design_spec, sets, fmt):
    """Run one case under one design on the sequential schedule and show every step."""
    from .model import CowModel
    from .run import run_sequential
    c = catalog.get(case)
    d = designs.load(design_spec, _settings(sets) or None)
    r = run_sequential(CowModel(c, d))
    if fmt == "json":
        click.echo(json.dumps(r.as_json(with_trace=True), indent=2))
        return
    from .explore import replay as _replay
    from .report import terminal, trace as _trace
    out.print(f"[bold]{escape(c.id)}[/]: {escape(c.title)}  [dim]({escape(c.source)})[/]")
    out.print(f"design [bold]{escape(d.name)}[/] ({escape(d.kernel)}): {escape(d.summary)}")
    m = CowModel(c, d)
    names = [t.name for t in c.threads]
    doc = _trace.build(m, list(_replay(m, [(names.index(s["thread"]), s["label"]) for s in r.trace])))
    out.print(terminal.table(doc))
    o = r.outcomes
    out.print(escape(f"outcomes: missed {o['missed']}, unnecessary {o['unnecessary']}, wrong {o['wrong']}; "
                     f"copies {r.copies}; status {r.status}{' (' + r.reason + ')' if r.reason else ''}"))


def _explore_json(case, d, rep, model, kinds) -> dict:
    from .explore import replay
    out_ = {"case": case.id, "design": d.name, "settings": d.settings, "outcomes": rep.outcomes(kinds),
            "status": rep.status, "states": rep.states, "transitions": rep.transitions,
            "seconds": round(rep.seconds, 3), "depth": rep.depth}
    if rep.reason:
        out_["reason"] = rep.reason
    if rep.found:
        first = min(rep.found.values(), key=lambda w: (w.depth, w.kind))
        out_["verdicts"] = {k: {"depth": w.depth, "text": w.text} for k, w in sorted(rep.found.items())}
        out_["kind"] = first.kind
        out_["trace"] = [_step_json(model, tr) for tr in replay(model, first.trace)]
    if rep.bugs:
        out_["model_bugs"] = [b for b, _ in rep.bugs]
    if rep.deadlocks:
        out_["stuck"] = len(rep.deadlocks)
    return out_


def _step_json(model, tr) -> dict:
    return {"thread": model.thread_name(tr.tid), "tid": tr.tid, "op": tr.op, "label": tr.label,
            "function": tr.func, "events": [f"{e.kind}: {e.text}" for e in tr.events], "bugs": list(tr.bugs)}


@main.command()
@click.argument("case")
@click.option("--design", "-d", "design_spec", required=True, help="design name or ./file.py")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE")
@click.option("--max-states", type=int, default=2_000_000, show_default=True)
@click.option("--max-seconds", type=float, default=600.0, show_default=True)
@click.option("--max-depth", type=int, default=10_000, show_default=True)
@click.option("--dfs", is_flag=True, help="depth-first (default breadth-first: shortest traces)")
@click.option("--no-por", is_flag=True, help="no partial-order reduction (search every interleaving)")
@click.option("--symmetry", is_flag=True, help="merge states equal up to renaming page frames and swap slots")
@click.option("--random", "walks", type=int, default=0, help="seeded random walks instead of exhaustive search")
@click.option("--seed", type=int, default=0)
@click.option("--save-trace", type=click.Path(dir_okay=False), help="write the trace for `cowlab replay`")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
@_guard
def explore(case, design_spec, sets, max_states, max_seconds, max_depth, dfs, no_por, symmetry, walks, seed,
            save_trace, fmt, quiet):
    """Try every interleaving of the case's threads; report the shortest trace to each violation."""
    from .explore import Limits, explore as run_explore, random_walks
    from .model import CowModel
    from .verdict import VERDICTS
    c = catalog.get(case)
    d = designs.load(design_spec, _settings(sets) or None)
    m = CowModel(c, d)
    lim = Limits(max_states=max_states, max_seconds=max_seconds, max_depth=max_depth)
    if walks:
        rep = random_walks(m, walks, seed, limits=lim)
    else:
        with _Progress(quiet, None, f"exploring {c.id} under {d.name}") as prog:
            rep = run_explore(m, lim, order="dfs" if dfs else "bfs", por=not no_por, symmetry=symmetry,
                              progress=prog.explore, expect_stuck=c.expect_stuck)
    res = _explore_json(c, d, rep, m, VERDICTS)
    if save_trace and "trace" in res:
        with open(save_trace, "w") as f:
            json.dump({"case": case, "design": design_spec, "settings": d.settings,
                       "trace": [[s["tid"], s["label"]] for s in res["trace"]]}, f, indent=1)
    if fmt == "json":
        click.echo(json.dumps(res, indent=2))
        return
    if fmt == "junit":
        from .report.junit import from_results
        click.echo(from_results("cowlab explore", [res]))
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
    if "trace" in res:
        from .explore import replay as _replay
        from .report import terminal, trace as _trace
        w = rep.found[res["kind"]]
        out.print(terminal.table(_trace.build(m, list(_replay(m, w.trace))),
                                 f"shortest trace to the {res['kind']} COW"))
    for b in res.get("model_bugs", [])[:3]:
        out.print(f"[bold red]model bug:[/] {escape(b)}")


@main.command()
@click.argument("trace_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_guard
def replay(trace_file, fmt):
    """Re-run a trace saved by `cowlab explore --save-trace` step by step."""
    from .explore import replay as run_replay
    from .model import CowModel
    data, trace, lines = _load_trace(trace_file)
    c = catalog.get(data["case"])
    d = designs.load(data["design"], data.get("settings") or None)
    for i, (tid, _) in enumerate(trace):
        if not 0 <= tid < len(c.threads):
            raise UserError(f"{trace_file}:{_json_line(lines, 'trace')}: trace.{i}: thread {tid} does not exist "
                            f"(case {c.id} has {len(c.threads)} threads); not a trace of this case")
    m = CowModel(c, d)
    try:
        trs = list(run_replay(m, trace))
    except ValueError as e:
        raise UserError(f"{trace_file}:{_json_line(lines, 'trace')}: trace: {e}") from None
    if fmt == "json":
        click.echo(json.dumps({"case": c.id, "design": d.name, "trace": [_step_json(m, tr) for tr in trs]}, indent=2))
        return
    from .report import terminal, trace as _trace
    out.print(terminal.table(_trace.build(m, trs), f"{c.id} under {d.name}: {len(trs)} steps replayed"))


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
@click.option("--design", "-d", "design_spec", required=True, help="design name or ./file.py")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE")
@click.option("--format", "fmt", type=click.Choice(["ktap", "json", "junit"]), default="ktap")
@_guard
def selftest(design_spec, sets, fmt):
    """Run the cow.c catalog (every anon test in every memory variant) as the
    kernel selftest does and print KTAP; exits 1 if a test fails."""
    from . import selftest as st
    d = designs.load(design_spec, _settings(sets) or None)
    rows = st.run(d)
    if fmt == "json":
        click.echo(json.dumps({"results": [dict(r.as_json(), selftest=v) for _, r, v in rows]}, indent=2))
    elif fmt == "junit":
        from .report.junit import suite
        click.echo(suite(f"cow.c under {d.name}", [
            {"classname": f"cow.{d.name}", "name": c.title,
             "failure": ("; ".join(t for _, _, t in r.events) or r.reason or "failed") if v == "fail" else None,
             "out": "XFAIL: expected failure (hugetlb vmsplice)" if v == "xfail" else ""} for c, r, v in rows]))
    else:
        click.echo(st.ktap(d, rows))
    if any(v == "fail" for _, _, v in rows):
        sys.exit(1)


@main.command()
def table():
    """Print the generated catalog table (Markdown) -- docs/catalog.md."""
    from .docs import markdown
    click.echo(markdown(), nl=False)


@main.command()
@click.argument("case")
@click.option("--design", "-d", "design_spec", required=True, help="design name or ./file.py")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help="also write a self-contained HTML page")
@click.option("--mode", type=click.Choice(["auto", "sequential", "explore"]), default="auto",
              help="auto: race cases are explored, the others run sequentially")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_guard
def explain(case, design_spec, sets, html_file, mode, fmt):
    """Tell a case under a design as a short story (the shortest
    counterexample for a race), optionally as an HTML page."""
    from .report import explain as ex, html as h, trace as tr
    c = catalog.get(case)
    d = designs.load(design_spec, _settings(sets) or None)
    m, trs, meta = tr.transitions_for(c, d, mode)
    doc = tr.build(m, trs, meta)
    if html_file:
        with open(html_file, "w") as f:
            f.write(h.render(doc))
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1))
    else:
        click.echo(ex.story(doc))
        if html_file:
            click.echo(f"\nwrote {html_file}")


@main.command()
@click.option("--out", "out_dir", default="plots", show_default=True, help="directory for the PNG and SVG files")
@click.option("--walks", type=int, default=40, show_default=True, help="random schedules per point")
@click.option("--seed", type=int, default=1, show_default=True)
@_guard
def plots(out_dir, walks, seed):
    """Unnecessary COWs per design vs background load; state-space size with
    and without each reduction (PNG and SVG)."""
    from .plots import make
    for f in make(out_dir, walks, seed):
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
@click.option("--random", "random_n", type=click.IntRange(min=1), default=None,
              help="run N random scenarios instead (cowlab.scenario_gen); disagreements are shrunk to TOML files")
@click.option("--seed", type=int, default=1, show_default=True, help="with --random: the same seed, the same scenarios")
@click.option("--exclude", multiple=True, metavar="CLASS",
              help="with --random: leave out a known false-verdict class (segfault, efault, write-gup-prot-read, "
                   "...; 'known' for all); by default nothing is left out")
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
        return cli_main(cases, random_n, seed, exclude, findings_dir, swap, fmt, quiet, design_spec, _Progress,
                        out, UserError)
    for c in cases:
        catalog.get(c)
    if design_spec:
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
    if interrupted:
        raise UserError(f"interrupted after {len(results)} cases: the result is inconclusive "
                        f"(the machine was put back: {len(changed)} changes listed)")
    bad = any(r.result == "disagree" and not r.control for r in results) or \
        any(r.control and r.result != "disagree" for r in results)
    if bad:
        sys.exit(1)


@main.command("designs")
def list_designs():
    """The built-in designs."""
    t = Table()
    for col in ("name", "kernel", "summary", "settings"):
        t.add_column(col)
    for n in designs.names():
        d = designs.load(n)
        t.add_row(d.name, d.kernel, d.summary, ", ".join(f"{k}={v}" for k, v in d.settings.items()))
    out.print(t)


@main.command("cases")
def list_cases():
    """The built-in case catalog."""
    t = Table()
    for col in ("id", "title", "source"):
        t.add_column(col)
    for c in catalog.all_cases():
        t.add_row(c.id, c.title, c.source)
    out.print(t)


@main.command("ops")
def list_ops():
    """The operations a scenario can use."""
    from .kernel.paths import OPS
    from .kernel import registry  # noqa: F401
    t = Table()
    for col in ("op", "arguments", "kernel entry", "meaning"):
        t.add_column(col)
    for name, (start, entry, args, doc) in sorted(OPS.items()):
        t.add_row(name, ", ".join(args), entry, doc)
    out.print(t)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.stderr.write("cowlab: interrupted\n")
        sys.exit(130)
