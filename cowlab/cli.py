"""The ``cowlab`` command."""
from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from . import catalog, designs
from .catalog import CatalogError
from .designs import DesignError
from .scenario import ScenarioError

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class UserError(click.ClickException):
    """One clear line, no traceback."""

    def show(self, file=None):
        err.print(f"cowlab: error: {self.message}", markup=False)


def _guard(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except (CatalogError, DesignError, ScenarioError) as e:
            raise UserError(str(e)) from None
        except KeyboardInterrupt:
            raise UserError("interrupted: the result is inconclusive") from None
    return wrapper


def _settings(pairs) -> dict:
    out_ = {}
    for p in pairs:
        if "=" not in p:
            raise UserError(f"--set {p!r}: expected NAME=VALUE")
        k, v = p.split("=", 1)
        out_[k] = {"true": True, "false": False}.get(v.lower(), int(v) if v.isdigit() else v)
    return out_


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cowlab")
def main():
    """cowlab: Linux anonymous-memory COW and GUP designs, executed and judged."""


@main.command()
@click.option("--design", "-d", "design_specs", multiple=True, help="design name or ./file.py (repeatable; default all)")
@click.option("--case", "-c", "case_ids", multiple=True, help="case id or file.toml (repeatable; default the catalog)")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="design setting, e.g. page_lock=true")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_guard
def matrix(design_specs, case_ids, sets, fmt):
    """The seed's table (missed / unnecessary / wrong COW per design, with the
    shortest witness case), then every case under every design."""
    from .matrix import compute, KINDS
    m = compute(design_specs or None, case_ids or None, _settings(sets) or None)
    if fmt == "json":
        click.echo(json.dumps(m.as_json(), indent=2))
        return
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
            elif c["occurs"] is None:
                cells.append("[yellow]inconclusive[/]")
            else:
                cells.append("[green]no[/]")
        t.add_row(row["design"], row["kernel"], *cells)
    out.print(t)
    g = Table(title="case x design (M missed, U unnecessary, W wrong, . none, ? inconclusive)")
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
        out.print(f"[bold red]model bugs:[/] {len(bugs)} (first: {bugs[0][0]} / {bugs[0][1]}: {bugs[0][2]})")


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
    out.print(f"[bold]{c.id}[/]: {c.title}  [dim]({c.source})[/]")
    out.print(f"design [bold]{d.name}[/] ({d.kernel}): {d.summary}")
    t = Table(show_lines=False)
    for col in ("#", "thread", "operation", "kernel function", "what happened"):
        t.add_column(col)
    for s in r.trace:
        if s["label"].startswith("sync."):
            continue
        what = "; ".join(s["events"] + [f"MODEL BUG: {b}" for b in s["bugs"]])
        style = "red" if any(not e.startswith("correct") for e in s["events"]) or s["bugs"] else None
        t.add_row(str(s["step"]), s["thread"], s["op"], s["function"], what, style=style)
    out.print(t)
    o = r.outcomes
    out.print(f"outcomes: missed {o['missed']}, unnecessary {o['unnecessary']}, wrong {o['wrong']}; "
              f"copies {r.copies}; status {r.status}{' (' + r.reason + ')' if r.reason else ''}")


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
    main()
