"""Item 8: output that fits -- the width from COLUMNS or the terminal (a pipe without COLUMNS keeps 160),
the matrix's grid at 80 columns with case and design abbreviations that stay unique."""
import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from cowlab import catalog, designs
from cowlab.cli_select import grid_table, matrix_text
from cowlab.matrix import Matrix
from cowlab.run import Result
from cowlab.selection import abbreviate

ROOT = Path(__file__).resolve().parents[2]


def _render(m, width, **kw) -> list[str]:
    c = Console(width=width, file=io.StringIO(), color_system=None, soft_wrap=True, highlight=False)
    matrix_text(m, c, **kw)
    return c.file.getvalue().splitlines()


def _full_matrix(outcome=lambda case, design: {"missed": 0, "unnecessary": 0, "wrong": 0}):
    ds = [designs.load(n) for n in designs.names()]
    cs = catalog.all_cases()
    res = [Result(c.id, d.name, outcome(c.id, d.name), "complete", "", 3, {}, [], []) for c in cs for d in ds]
    return Matrix(ds, cs, res)


def test_abbreviations_are_unique_and_fit():
    ids = catalog.ids()
    for w in (12, 16, 24, 30):
        ab = abbreviate(ids, w)
        assert len(set(ab.values())) == len(ids), w
        assert all(len(v) <= w for v in ab.values())
        assert all(ab[i] == i for i in ids if len(i) <= w)       # what fits is kept
    heads = abbreviate([d.replace("linux-", "") for d in designs.names()], 4)
    assert len(set(heads.values())) == len(heads) and heads["5.11"] == "5.11" and heads["6.18"] == "6.18"


def test_the_grid_at_80_columns_fits_with_unique_case_names():
    m = _full_matrix(lambda c, d: {"missed": int(c.startswith("race")), "unnecessary": 0,
                                   "wrong": int(d == "linux-5.7")})
    lines = _render(m, 80)
    assert max(len(x) for x in lines) <= 80
    g, key, ab = grid_table(m, 80)
    shown = [line.split()[0] for line in lines if line.split() and line.split()[0] in set(ab.values())]
    assert len(shown) == len(set(shown)) == len(catalog.ids())                # every case, each under its own name
    assert not any(v.endswith("…") for v in shown)              # shortened word by word, not cut off
    assert key.startswith("designs: ") and "rfc-page-anon-shared" in key
    assert "bas…" not in "\n".join(lines)
    # the witnesses in the seed's table are folded, never cut
    summary = lines[:next(i for i, x in enumerate(lines) if x.startswith("case x design"))]
    # (the witness is the shortest race case: race-collapse-gup-fast since issue 12)
    assert "…" not in "\n".join(summary) and any("race-" in x for x in summary)


def test_wide_output_is_unchanged():
    m = _full_matrix()
    lines = _render(m, 240)
    assert any(line.startswith("│ vmsplice-unmap-child-mprotect-single-pte-thp-swap ") for line in lines)


def _cowlab(*args, columns=None):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "cowlab", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_piped_output_takes_columns():
    at80 = _cowlab("matrix", "-q", "-c", "race-*", "-c", "vmsplice-unmap-child-mprotect-*", columns=80)
    assert at80.returncode in (0, 1), at80.stderr
    assert max(len(x) for x in at80.stdout.splitlines()) <= 80
    plain = _cowlab("matrix", "-q", "-c", "race-*", "-c", "vmsplice-unmap-child-mprotect-*")
    assert max(len(x) for x in plain.stdout.splitlines()) > 80          # a pipe without COLUMNS: 160 as before
    assert max(len(x) for x in plain.stdout.splitlines()) <= 160
    wide = _cowlab("cases", columns=200)
    assert 160 < max(len(x) for x in wide.stdout.splitlines()) <= 200
