"""Commands and output of issue 13 items 5, 6, 8 and 11, registered on ``cowlab.cli.main``:
``cowlab export``, ``cowlab diff``; the matrix as text that fits the width and as CSV; the
selections of ``cowlab cases`` and ``selftest -t``.

Exit codes, as every command: 0 nothing found, 1 found (a missed or wrong COW, a difference),
2 usage or input error, 3 inconclusive or interrupted."""
from __future__ import annotations

import csv
import fnmatch
import functools
import io
import json

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from . import catalog, designs
from .selection import SelectionError, abbreviate, is_glob, select_cases

EXIT_FOUND, EXIT_USAGE, EXIT_INCONCLUSIVE = 1, 2, 3


def _cli():
    """cowlab.cli, imported when a command runs (it imports this module at its end)."""
    from . import cli
    return cli


def _usage(msg: str):
    u = _cli().UserError(msg)
    u.exit_code = EXIT_USAGE
    return u


def _guard(fn):
    """cowlab.cli's _guard (one-line errors), looked up when the command runs."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        return _cli()._guard(fn)(*a, **kw)
    return wrapper


# ----------------------------------------------------------------------------- selections
def cases_selected(patterns, tags) -> list:
    """``cowlab cases [PATTERN...] [--tag T]``: a pattern is an id, a glob,
    or a word (``race``: every case with "race" in its id or as a tag)."""
    if not patterns and not tags:
        return catalog.all_cases()
    specs: list = []
    try:
        for p in patterns:
            if is_glob(p) or p in catalog.ids() or p.endswith(".toml"):
                got = select_cases([p], tags, what="PATTERN")
            else:
                got = [c.id for c in catalog.all_cases() if p.lower() in c.id or p in c.tags]
                if not got:
                    raise SelectionError(f"PATTERN {p!r}: no case has it in its id or as a tag")
                got = select_cases(got, tags, what="PATTERN")
            specs += [s for s in got if s not in specs]
        if not patterns:
            specs = select_cases((), tags)
    except SelectionError as e:
        raise _usage(str(e)) from None
    return [catalog.get(s) for s in specs]


def selftest_select(patterns, tests) -> list:
    """``selftest -t PATTERN`` (as run_vmtests.sh -t): the cow.c tests whose
    memory variant is PATTERN, whose case id matches it as a glob, or whose
    name (cow.c's "[RUN]" text) or title has its words; every pattern must
    select a test."""
    if not patterns:
        return tests
    from .catalog import cow_c
    chosen = set()
    for p in patterns:
        hit = {t.id for t in tests
               if fnmatch.fnmatchcase(t.variant, p) or fnmatch.fnmatchcase(t.id, p) or
               (not is_glob(p) and (p.lower() in t.name.lower() or p.lower() in t.title.lower()))}
        if not hit:
            variants = ", ".join(list(cow_c.VARIANTS) + list(cow_c.NON_ANON_VARIANTS))
            raise _usage(f"-t {p!r}: no cow.c test matches (a variant: {variants}; a glob over the case ids; or "
                         f"words of a test's name)")
        chosen |= hit
    return [t for t in tests if t.id in chosen]


def _kb_list(text: str, what: str, allowed, hint: str) -> tuple:
    out = []
    for item in text.split(","):
        item = item.strip().lower().removesuffix("kb").removesuffix("k")
        if not item.isdigit() or int(item) not in allowed:
            raise _usage(f"{what} {text!r}: {item or 'an empty item'!r} is not {hint}")
        if int(item) not in out:
            out.append(int(item))
    return tuple(out)


def selftest_sizes(sizes, hugetlb_sizes) -> tuple:
    """``--sizes host|all|KB,...`` and ``--hugetlb-sizes KB,...|none`` ->
    (PMD size kB or None, THP sizes kB, hugetlb sizes kB)."""
    from .catalog.cow_c import HUGETLB_KB, PMD_KB, THP_KB
    from .selftest import host_sizes
    spec = (sizes or "all").strip().lower()
    if spec == "host":
        pmd, thp, huge = host_sizes()
    elif spec == "all":
        pmd, thp, huge = PMD_KB, THP_KB, HUGETLB_KB
    else:
        pmd, huge = PMD_KB, HUGETLB_KB
        thp = tuple(sorted(set(_kb_list(spec, "--sizes", THP_KB, "an x86-64 THP size in kB (16, 32, .. 2048), "
                                        "host or all")) | {PMD_KB}))
    if hugetlb_sizes is not None:
        h = hugetlb_sizes.strip().lower()
        huge = () if h == "none" else _kb_list(h, "--hugetlb-sizes", HUGETLB_KB,
                                                "an x86-64 hugetlb size in kB (2048, 1048576) or none")
    return pmd, thp, huge


def selftest_compare(paths, design, fmt, patterns, real) -> None:
    """``selftest --compare KTAP_FILE...``: print the comparison (of several
    kernel runs: ktap.across_runs()), exit with its status."""
    from . import exitcodes as ec
    from . import ktap, selftest as st
    cli = _cli()
    paths = (paths,) if isinstance(paths, str) else tuple(paths)
    per_run, missing = [], []
    for path in paths:
        try:
            run = ktap.read(path)
        except ktap.KtapError as e:
            raise _usage(str(e)) from None
        select = None
        if patterns:
            select = {t.id for t in selftest_select(patterns, st.kernel_tests(run.thp_kb, run.hugetlb_kb,
                                                                               run.pmd_kb))}
        pairs, missing = ktap.compare(run, design, real, select)
        per_run.append(pairs)
    pairs = ktap.across_runs(per_run) if len(per_run) > 1 else per_run[0]
    path = paths[0] if len(paths) == 1 else f"{len(paths)} runs ({', '.join(paths)})"
    n = ktap.counts(pairs)
    if fmt == "json":
        d = ktap.as_json(run, design, pairs, missing)
        if len(paths) > 1:
            d["file"], d["runs"] = list(paths), len(paths)
        click.echo(json.dumps(d, indent=2))
    else:
        o = cli.out
        t = Table(title=f"{escape(path)}: the kernel's cow.c run vs the model under {escape(design.name)}",
                  box=box.SIMPLE_HEAD, expand=True)
        t.add_column("#", justify="right", no_wrap=True)
        t.add_column("test (cow.c [RUN] name)", overflow="fold", ratio=5)
        t.add_column("kernel", overflow="fold", ratio=3)
        t.add_column("model", overflow="fold", ratio=3)
        t.add_column("", no_wrap=True)
        style = {ktap.AGREE: "green", ktap.DISAGREE: "bold red", ktap.VARIES: "magenta", ktap.NONE: "dim",
                 ktap.KSKIP: "yellow",
                 ktap.NORESULT: "yellow", ktap.INCONCLUSIVE: "yellow"}
        for p in pairs:
            k = p.kernel.status + (f": {p.kernel.reason}" if p.kernel.reason and p.kernel.status != "pass" else "")
            m = (p.model or "-") + (f" ({p.case})" if p.case else "")
            if p.model in ("none", "skip"):
                m = p.message
            t.add_row(str(p.kernel.n or "-"), escape(p.kernel.name), escape(k), escape(m),
                      f"[{style[p.outcome]}]{p.outcome}[/]")
        o.print(t)
        said = ", ".join(f"{v} {k}" for k, v in n.items() if v or k in (ktap.AGREE, ktap.DISAGREE))
        o.print(f"{len(pairs)} kernel tests: {said}" + (f"; {len(missing)} of the model's tests not in the "
                                                        f"kernel's run" if missing else ""))
        for p in pairs:
            if p.outcome == ktap.VARIES:
                o.print(f"[magenta]kernel varies[/]: {p.kernel.n} {escape(p.kernel.name)} ({escape(p.kernel.status)}; "
                        f"model {p.model})")
            if p.outcome == ktap.DISAGREE:
                o.print(f"[bold red]disagree[/]: {p.kernel.n} {escape(p.kernel.name)} (kernel {p.kernel.status}, "
                        f"model {p.model}: {escape(p.message)})")
    cli._exit(ec.status(failed=n[ktap.DISAGREE] > 0, inconclusive=n[ktap.INCONCLUSIVE] > 0))


def designs_json() -> dict:
    rows = []
    for n in designs.names():
        d = designs.load(n)
        rows.append({"name": d.name, "kernel": d.kernel, "summary": d.summary, "sources": list(d.sources),
                     "settings": d.settings})
    return {"designs": rows}


# ----------------------------------------------------------------------------- the matrix: text and CSV
def _cell(r) -> str:
    """M / U / W, '.' for none, '?' for inconclusive or not computed."""
    if r is None or r.status != "complete":
        return "?"
    return ("M" * bool(r.outcomes["missed"]) + "U" * bool(r.outcomes["unnecessary"])
            + "W" * bool(r.outcomes["wrong"])) or "."


def _grid_rows(m, only_violations: bool):
    by = {(r.case, r.design): r for r in m.results}
    rows = []
    for c in m.cases:
        cells = [_cell(by.get((c.id, d.label))) for d in m.designs]
        if only_violations and all(x == "." for x in cells):
            continue
        rows.append((c.id, cells))
    return rows


def _summary_table(m) -> Table:
    from .matrix import KINDS
    t = Table(title="COW outcomes per design (computed over the catalog; witness = shortest case)")
    t.add_column("design", no_wrap=True)
    t.add_column("kernel")
    for kind in KINDS:
        t.add_column(f"{kind} COW", overflow="fold")        # a narrow terminal folds a witness, never cuts it
    for row in m.table():
        cells = []
        for kind in KINDS:
            c = row[kind]
            if c["occurs"]:
                n = f"{c['cases']} case{'s' if c['cases'] > 1 else ''}"
                cells.append(f"[bold red]yes[/] {escape(c['witness'])} ({n})")
            elif c["occurs"] is None:            # not every case complete: no "no" on incomplete results
                cells.append("[yellow]unknown[/]")
            else:
                cells.append("[green]no[/]")
        t.add_row(escape(row["design"]), escape(row["kernel"]), *cells)
    return t


def grid_table(m, width: int | None, only_violations: bool = False):
    """The case x design grid, fitted to ``width`` columns: at full size when
    it fits, else without borders, with design names and case ids shortened
    to abbreviations that stay unique (and a key for the designs)."""
    title = "case x design (M missed, U unnecessary, W wrong, . none, ? inconclusive or not computed)"
    rows = _grid_rows(m, only_violations)
    heads = [d.label.replace("linux-", "") for d in m.designs]
    ids = [cid for cid, _ in rows]
    idw = max([len(i) for i in ids] + [4])
    full = 1 + (idw + 3) + sum(max(len(h), 3) + 3 for h in heads)
    key = ""
    if width is None or full <= width:
        g = Table(title=title)
        g.add_column("case")
        for h in heads:
            g.add_column(h, justify="center")
        for cid, cells in rows:
            g.add_row(escape(cid), *[f"[red]{x}[/]" if x not in ".?" else ("[yellow]?[/]" if x == "?" else ".")
                                     for x in cells])
        return g, key, {i: i for i in ids}
    dw = 4                                 # 5.11, 6.18, rf-m: every header in 4 characters
    hab = abbreviate(heads, dw)
    cw = max(width - len(heads) * (dw + 1) - 1, 8)
    for _ in range(4):                     # shrink the case column until the rendered grid fits
        cab = abbreviate(ids, cw)
        g = _compact_grid(rows, heads, hab, cab, dw)
        used = _rendered_width(g)
        if used <= width or cw <= 8:
            break
        cw = max(cw - (used - width), 8)
    short = [f"{hab[h]} = {d.label}" for h, d in zip(heads, m.designs) if hab[h] != h]
    if short:
        key = "designs: " + ", ".join(short)
    return g, key, cab


def _compact_grid(rows, heads, hab, cab, dw) -> Table:
    g = Table(title="case x design: M missed, U unnecessary, W wrong, . none, ? unknown", box=box.SIMPLE_HEAD,
              padding=(0, 0), pad_edge=False, show_edge=False)
    g.add_column("case", no_wrap=True, min_width=max([len(v) for v in cab.values()] + [4]), overflow="crop")
    for h in heads:
        g.add_column(escape(hab[h]), justify="center", no_wrap=True, min_width=dw, overflow="crop")
    for cid, cells in rows:
        g.add_row(escape(cab[cid]), *[f"[red]{x}[/]" if x not in ".?" else ("[yellow]?[/]" if x == "?" else ".")
                                      for x in cells])
    return g


def _rendered_width(t: Table) -> int:
    from rich.console import Console
    c = Console(width=1000, record=True, file=io.StringIO(), color_system=None)
    c.print(t)
    return max((len(line) for line in c.export_text().splitlines()[1:]), default=0)


def matrix_text(m, console, summary: bool = False, only_violations: bool = False):
    console.print(_summary_table(m))
    if not summary:
        g, key, _ = grid_table(m, console.width if console.width else None, only_violations)
        console.print(g)
        if key:
            console.print(escape(key))
        if only_violations:
            hidden = len(m.cases) - len(_grid_rows(m, True))
            console.print(f"{hidden} case{'s' if hidden != 1 else ''} with no violation under any design not shown")
    if not m.complete:
        console.print(f"[yellow]inconclusive:[/] {escape(m.note or 'some runs did not complete')}")
    bugs = [(r.case, r.design, b) for r in m.results for b in r.bugs]
    if bugs:
        first = escape(f"{bugs[0][0]} / {bugs[0][1]}: {bugs[0][2]}")
        console.print(f"[bold red]model bugs:[/] {len(bugs)} (first: {first})")


def matrix_csv(m, summary: bool = False, only_violations: bool = False) -> str:
    """CSV: the seed's table (``--summary``: design, kernel, then per kind
    occurs yes/no/unknown, witness, cases) or one row per case x design
    (case, design, missed, unnecessary, wrong, status, steps, copies)."""
    from .matrix import KINDS
    f = io.StringIO()
    w = csv.writer(f, lineterminator="\n")
    if summary:
        w.writerow(["design", "kernel"] + [f"{k}_{x}" for k in KINDS for x in ("occurs", "witness", "cases")])
        for row in m.table():
            cells = []
            for k in KINDS:
                c = row[k]
                cells += [{True: "yes", False: "no", None: "unknown"}[c["occurs"]], c.get("witness") or "",
                          c.get("cases", 0) if c["occurs"] else 0]
            w.writerow([row["design"], row["kernel"]] + cells)
        return f.getvalue()
    keep = {cid for cid, _ in _grid_rows(m, only_violations)}
    w.writerow(["case", "design", "missed", "unnecessary", "wrong", "status", "steps", "copies"])
    for r in m.results:
        if r.case in keep:
            w.writerow([r.case, r.design, r.outcomes["missed"], r.outcomes["unnecessary"], r.outcomes["wrong"],
                        r.status, r.steps, sum(r.copies.values()) if isinstance(r.copies, dict) else r.copies])
    return f.getvalue()


# ----------------------------------------------------------------------------- cowlab export
@click.command("export")
@click.argument("case")
@_guard
def export(case):
    """Print a catalog case as a scenario file (TOML) to start from:
    `cowlab export race-swapin-mapcount > mine.toml`; running the file gives
    the catalog case's verdicts.  A .toml file is printed as it is."""
    from .selection import export_toml
    if case.endswith(".toml"):
        catalog.get(case)                          # checked in full first: a bad file is a one-line error
        with open(case, encoding="utf-8") as f:
            click.echo(f.read(), nl=False)
        return
    click.echo(export_toml(catalog.get(case)), nl=False)



# ----------------------------------------------------------------------------- portable traces (item 6)
TRACE_SCHEMA = "cowlab-saved-trace/2"


def design_hash(spec: str, d) -> str:
    """sha256 over the source of a design: its file (a design file) and
    every cowlab module its class is built from (``cowlab.designs.*``), each
    named by module, so the hash does not depend on the folder."""
    import hashlib
    import sys
    from pathlib import Path
    h = hashlib.sha256()
    seen = set()
    if spec.endswith(".py") or "/" in spec:
        h.update(b"design file\0" + Path(spec).read_bytes())
    for cls in type(d).__mro__:
        mod = sys.modules.get(cls.__module__)
        f = getattr(mod, "__file__", None)
        if not f or not cls.__module__.startswith("cowlab.") or cls.__module__ in seen:
            continue
        seen.add(cls.__module__)
        h.update(cls.__module__.encode() + b"\0" + Path(f).read_bytes())
    return "sha256:" + h.hexdigest()


def save_trace(path: str, case_spec: str, case, design_spec: str, d, pairs, kind: str | None = None) -> None:
    """``explore --save-trace``: the trace with what it needs to replay from
    any folder -- the case as TOML (a catalog case exported, a file's own
    text), the design's name or file (and that file's text), a hash of the
    design's source -- so ``cowlab replay`` can say when the design differs."""
    import os
    from .selection import ExportError, export_toml
    if case_spec.endswith(".toml"):
        with open(case_spec, encoding="utf-8") as f:
            case_toml, case_from = f.read(), os.path.abspath(case_spec)
    else:
        try:
            case_toml, case_from = export_toml(case), "catalog"
        except ExportError:
            case_toml, case_from = None, "catalog"
    data = {"schema": TRACE_SCHEMA, "case": case.id if not case_spec.endswith(".toml") else case_spec,
            "case_from": case_from, "design": design_spec, "design_name": d.name,
            "design_hash": design_hash(design_spec, d), "settings": d.settings, "kind": kind,
            "trace": [[tid, label] for tid, label in pairs]}
    if case_toml is not None:
        data["case_toml"] = case_toml
    if design_spec.endswith(".py") or "/" in design_spec:
        data["design_path"] = os.path.abspath(design_spec)
        with open(design_spec, encoding="utf-8") as f:
            data["design_file"] = f.read()
    _cli()._write(path, json.dumps(data, indent=1))


def replay_inputs(trace_file: str, data: dict, lines):
    """-> (case, design) of a saved trace: the embedded case (else the catalog
    id or file it names), the design by name or file -- the file as saved
    when it is not where the trace says (the embedded copy) -- and a warning
    on stderr when the design's source is not the one the trace was saved
    with."""
    import os
    import tempfile
    import tomllib
    from .toml_format import parse_case
    cli = _cli()

    def bad(key, msg):
        return cli.UserError(f"{trace_file}:{cli._json_line(lines, key)}: {key}: {msg}")

    text = data.get("case_toml")
    if text is not None:
        if not isinstance(text, str):
            raise bad("case_toml", "must be a string (the case as TOML)")
        try:
            c = parse_case(tomllib.loads(text), text, f"{trace_file} (embedded case)")
        except tomllib.TOMLDecodeError as e:
            raise bad("case_toml", f"not a scenario: {e}") from None
        from_file = data.get("case_from") not in (None, "catalog")
        if from_file != data["case"].endswith(".toml") or (not from_file and c.id != data["case"]):
            raise bad("case", f"{data['case']!r} is not the case saved in the trace ({c.id!r}); not a trace of "
                              f"this case")
    elif data["case"].endswith(".toml") and not os.path.exists(data["case"]):
        raise bad("case", f"file {data['case']} not found here, and the trace embeds no copy")
    else:
        c = catalog.get(data["case"])
    spec = data["design"]
    settings = data.get("settings") or None
    if spec.endswith(".py") or "/" in spec:
        found = next((p for p in (spec, data.get("design_path")) if isinstance(p, str) and os.path.isfile(p)), None)
        if found is None and isinstance(data.get("design_file"), str):
            tmp = tempfile.mkdtemp(prefix="cowlab-replay-")
            found = os.path.join(tmp, os.path.basename(spec))
            with open(found, "w", encoding="utf-8") as f:
                f.write(data["design_file"])
            cli.err.print(f"note: design file {spec} is not here; replaying the copy saved in the trace",
                          markup=False)
        if found is None:
            raise bad("design", f"file {spec} not found here, and the trace embeds no copy")
        spec = found
    d = designs.load(spec, settings)
    saved = data.get("design_hash")
    if isinstance(saved, str):
        now = design_hash(spec, d)
        if now != saved:
            cli.err.print(f"warning: design {d.name} is not the one this trace was saved with (its source "
                          f"changed: {now[7:19]} now, {saved[7:19]} then); the replay may not follow the "
                          f"same steps", markup=False)
    return c, d


def say_no_trace(path: str) -> None:
    _cli().err.print(f"no violation found: nothing to save, {path} not written", markup=False)


# ----------------------------------------------------------------------------- cowlab diff (item 11)
def _lockstep(case, da, db, schedule=None):
    """Run ``case`` under two designs on one schedule, step by step: the
    sequential schedule of design A (``schedule`` None) or a list of thread
    ids (an explored witness).  -> (steps, divergence index or None), each
    step (tid, transition under A or None, transition under B or None)."""
    from .model import CowModel
    from .schedule import in_operation
    from .report.trace import snapshot
    ma, mb = CowModel(case, da), CowModel(case, db)
    sa, sb = ma.init_state(), mb.init_state()
    steps, current = [], None
    for i in range(20000):
        if schedule is not None:
            if i >= len(schedule):
                break
            tid = schedule[i]
            ta = ma.step(sa, tid)
        else:
            if ma.is_done(sa):
                break
            cands = [current] if current is not None else range(ma.nthreads)
            ta = next((tr for t in cands if (tr := ma.step(sa, t)) is not None), None)
            if ta is None and current is not None:
                ta = next((tr for t in range(ma.nthreads) if t != current and (tr := ma.step(sa, t)) is not None),
                          None)
            if ta is None:
                break
            tid = ta.tid
            current = tid if in_operation(ta.state, tid) else None
        tb = mb.step(sb, tid)
        steps.append((tid, ta, tb))
        if ta is None or tb is None:
            return ma, mb, steps, i
        same = (ta.label == tb.label and snapshot(ma, ta.state) == snapshot(mb, tb.state)
                and [(e.kind, e.text) for e in ta.events] == [(e.kind, e.text) for e in tb.events])
        if not same:
            return ma, mb, steps, i
        sa, sb = ta.state, tb.state
    return ma, mb, steps, None


def _state_diff(ma, ta, mb, tb) -> list[tuple[str, str, str]]:
    """(what, under A, under B) for each part of the two states that differs."""
    from .report.terminal import _pte
    from .report.trace import snapshot
    a, b = snapshot(ma, ta.state), snapshot(mb, tb.state)
    out = []
    for pa, pb in zip(a["processes"], b["processes"]):
        xa = {e["addr"]: _pte(e) + (" excl" if e.get("excl") and e["kind"] == "present" else "") for e in pa["ptes"]}
        xb = {e["addr"]: _pte(e) + (" excl" if e.get("excl") and e["kind"] == "present" else "") for e in pb["ptes"]}
        for k in sorted(set(xa) | set(xb)):
            if xa.get(k) != xb.get(k):
                out.append((f"{pa['name']} pte[{k}]", xa.get(k, "-"), xb.get(k, "-")))
        if pa["pmds"] != pb["pmds"]:
            out.append((f"{pa['name']} pmds", str(pa["pmds"]), str(pb["pmds"])))
    ga, gb = {p["pfn"]: p for p in a["pages"]}, {p["pfn"]: p for p in b["pages"]}

    def page(p):
        if p is None:
            return "-"
        return (f"ref {p['refcount']} map {'/'.join(map(str, p['mapcount']))} pins {p['pincount']} "
                f"excl {'/'.join('1' if x else '0' for x in p['exclusive'])} data {'/'.join(p['data'])}"
                + (f" {' '.join(p['flags'])}" if p["flags"] else ""))
    for k in sorted(set(ga) | set(gb)):
        if page(ga.get(k)) != page(gb.get(k)):
            out.append((f"pfn{k}", page(ga.get(k)), page(gb.get(k))))
    sw = lambda s: {x["slot"]: f"count {x['count']} cache {x['cache']}" for x in s["swap"]}
    wa, wb = sw(a), sw(b)
    for k in sorted(set(wa) | set(wb)):
        if wa.get(k) != wb.get(k):
            out.append((f"swap{k}", wa.get(k, "-"), wb.get(k, "-")))
    refs = lambda s: sorted(f"{r['kind']} {r['owner']} pfn{r['pfn']}" for r in s["refs"])
    if refs(a) != refs(b):
        ra, rb = set(refs(a)), set(refs(b))
        out.append(("references", "; ".join(sorted(ra - rb)) or "-", "; ".join(sorted(rb - ra)) or "-"))
    return out


def _witness_schedule(case, da, db, ra, rb):
    """For a race case: the thread order of the shortest trace to an outcome
    one design shows and the other does not (most severe kind first)."""
    from .explore import explore
    from .model import CowModel
    from .verdict import MISSED, UNNECESSARY, WRONG
    for kind in (MISSED, WRONG, UNNECESSARY):
        for d, mine, other in ((da, ra, rb), (db, rb, ra)):
            if mine.outcomes[kind] and not other.outcomes[kind]:
                rep = explore(CowModel(case, d), por=True, expect_stuck=case.expect_stuck)
                w = rep.found.get(kind)
                if w:
                    return [tid for tid, _ in w.trace], f"the shortest {kind} COW trace under {d.name} (explored)"
    return None, "the sequential schedule"


def _tr_text(m, tr) -> str:
    from .report.trace import render_effect
    if tr is None:
        return "(this thread cannot move here)"
    what = [t for e in tr.effects if (t := render_effect(m, e))]
    what += [f"{e.kind.upper()}: {e.text}" for e in tr.events]
    return f"{tr.func}" + ("\n" + "\n".join(what) if what else "")


def divergence(case, da, db, ra, rb) -> dict:
    """The first step where the two designs' states differ on one schedule."""
    sched, how = (None, "the sequential schedule")
    if "race" in case.tags:
        sched, how = _witness_schedule(case, da, db, ra, rb)
    ma, mb, steps, i = _lockstep(case, da, db, sched)
    res = {"case": case.id, "schedule": how, "step": i, "steps": []}
    for n, (tid, ta, tb) in enumerate(steps):
        res["steps"].append({"i": n, "thread": ma.thread_name(tid), "op": (ta or tb).op if (ta or tb) else "",
                             "a": _tr_text(ma, ta), "b": _tr_text(mb, tb)})
    if i is not None and steps[i][1] is not None and steps[i][2] is not None:
        res["state_diff"] = [{"what": w, "a": x, "b": y} for w, x, y in _state_diff(ma, steps[i][1], mb, steps[i][2])]
    return res


@click.command("diff")
@click.argument("design_a")
@click.argument("design_b")
@click.argument("cases", nargs=-1)
@click.option("--tag", "tags", multiple=True, help="only cases with this tag (a glob; repeatable)")
@click.option("--step", "show", type=click.IntRange(min=1, max=10**6), default=4, show_default=True,
              help="steps shown before the one where the states diverge")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--jobs", "-j", type=click.IntRange(min=1, max=1024), default=None,
              help="worker processes (default: the CPUs)")
@_guard
def diff(design_a, design_b, cases, tags, show, fmt, jobs):
    """The cases where two designs' verdicts differ (CASE...: ids, files or
    globs; default the catalog), and for the first of them (or the one case
    given) the first step where their states diverge on the same schedule,
    side by side.  Exits 1 when the verdicts differ, 0 when not, 3 when a
    run is inconclusive."""
    import os
    import sys
    from .matrix import compute
    specs = select_cases(cases, tags) if cases or tags else catalog.ids()
    design_a, design_b = _cli()._design_spec(design_a), _cli()._design_spec(design_b)   # -d 6.6, host, ... too
    n = jobs or os.cpu_count() or 1
    ma_, mb_ = compute([design_a], specs, jobs=n), compute([design_b], specs, jobs=n)
    da, db = ma_.designs[0], mb_.designs[0]
    ra = {r.case: r for r in ma_.results}
    rb = {r.case: r for r in mb_.results}
    rows = []
    for c in ma_.cases:
        x, y = ra.get(c.id), rb.get(c.id)
        ca, cb = _cell(x), _cell(y)
        if ca != cb or (x and y and x.outcomes != y.outcomes):
            rows.append((c, x, y, ca, cb))
    inconclusive = not (ma_.complete and mb_.complete)
    focus = None
    if len(specs) == 1 or rows:
        c, x, y = (rows[0][:3] if rows else (ma_.cases[0], ra.get(ma_.cases[0].id), rb.get(ma_.cases[0].id)))
        if x is not None and y is not None:
            focus = divergence(c, da, db, x, y)
    if fmt == "json":
        click.echo(json.dumps({"design_a": da.name, "design_b": db.name, "cases": len(specs),
                               "differ": [{"case": c.id, "a": x.outcomes if x else None,
                                           "b": y.outcomes if y else None, "cell_a": ca, "cell_b": cb}
                                          for c, x, y, ca, cb in rows],
                               "status": "inconclusive" if inconclusive else "complete",
                               "divergence": focus}, indent=2))
    else:
        o = _cli().out
        t = Table(title=f"{len(rows)} of {len(specs)} cases differ: {da.name} (A) vs {db.name} (B) "
                        f"(M missed, U unnecessary, W wrong, . none, ? unknown)")
        t.add_column("case")
        t.add_column("A", justify="center")
        t.add_column("B", justify="center")
        for c, x, y, ca, cb in rows:
            if ca == cb:                       # the same kinds, other counts: show the counts
                ca, cb = _counted(x), _counted(y)
            t.add_row(escape(c.id), ca, cb)
        o.print(t)
        if focus is not None:
            _print_divergence(o, focus, da.name, db.name, show)
            if len(rows) > 1:
                o.print(f"the other cases: cowlab diff {escape(design_a)} {escape(design_b)} CASE")
        if inconclusive:
            o.print("[yellow]inconclusive:[/] a run did not complete; its verdict is unknown")
    if rows:
        sys.exit(EXIT_FOUND)
    if inconclusive:
        sys.exit(EXIT_INCONCLUSIVE)


def _counted(r) -> str:
    """M2U1-style: each kind with its count (``diff`` rows whose kinds agree)."""
    return "".join(f"{k[0].upper()}{r.outcomes[k]}" for k in ("missed", "unnecessary", "wrong") if r.outcomes[k]) \
        or "."


def _print_divergence(o, f, a, b, show):
    from rich.text import Text
    i = f["step"]
    if i is None:
        o.print(Text(f"{f['case']}: the states never diverge on {f['schedule']} "
                     f"({len(f['steps'])} steps, the same under both)"))
        return
    o.print(Text(f"{f['case']}: the states diverge at step {i} ({f['steps'][i]['thread']}: {f['steps'][i]['op']}) "
                 f"on {f['schedule']}"))
    t = Table()
    t.add_column("#")
    t.add_column("thread")
    t.add_column(f"A: {a}", overflow="fold", ratio=1)
    t.add_column(f"B: {b}", overflow="fold", ratio=1)
    for st in f["steps"][max(0, i - show):i + 1]:
        t.add_row(*(Text(x) for x in (str(st["i"]), st["thread"], st["a"], st["b"])),
                  style="bold" if st["i"] == i else None)
    o.print(t)
    if f.get("state_diff"):
        s = Table(title=f"state after step {i}")
        s.add_column("")
        s.add_column(f"A: {a}", overflow="fold")
        s.add_column(f"B: {b}", overflow="fold")
        for d in f["state_diff"]:
            s.add_row(Text(d["what"]), Text(d["a"]), Text(d["b"]))
        o.print(s)
COMMANDS = [export, diff]
