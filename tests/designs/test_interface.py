"""The design interface (cowlab/kernel/decisions.py) against what the kernel
code asks, the built-in designs, user design files and the docs."""
import ast
import inspect
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cowlab import catalog, designs
from cowlab.cli import main
from cowlab.designs import Design, DesignError
from cowlab.designs.base import REQUIRED_HOOKS
from cowlab.designs.contract import SIGNATURE, call_text, class_problems
from cowlab.kernel import decisions
from cowlab.kernel.decisions import (
    COPY,
    FACTS,
    HOOKS,
    IDENTITY,
    LOCK_PAGE,
    READ_MORE,
    REUSE,
    SHARE,
    SPLIT,
    Decision,
    DesignInterface,
    MigrateUnmapResult,
    ReadMore,
    UnmapResult,
    read_more,
)
from cowlab.matrix import run_unit

ROOT = Path(__file__).resolve().parents[2]
KERNEL = sorted((ROOT / "cowlab" / "kernel").rglob("*.py"))
SCRATCH = ROOT / "docs" / "examples" / "design_from_scratch.py"


# ----------------------------------------------------------------- the kernel's questions
def _design_questions(path: Path) -> set[str]:
    """Every attribute the code in path reads from a design: ``X.design.attr``,
    ``design.attr`` (a parameter or local named design) and ``d.attr`` for a
    local ``d = X.design``; a dynamic access (getattr(design, ...)) is '<dynamic>'."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = {"design"}

    def is_design(v) -> bool:
        return (isinstance(v, ast.Attribute) and v.attr == "design") or (isinstance(v, ast.Name) and v.id in aliases)
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and is_design(n.value):
            aliases |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    asked = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and is_design(n.value):
            asked.add(n.attr)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr") \
                and n.args and is_design(n.args[0]):
            asked.add("<dynamic>")
    return asked


def test_the_kernel_asks_exactly_what_the_interface_declares():
    asked: dict[str, set[str]] = {}
    for f in KERNEL + [ROOT / "cowlab" / "oracle.py", ROOT / "cowlab" / "model.py"]:
        for a in _design_questions(f):
            asked.setdefault(a, set()).add(str(f.relative_to(ROOT)))
    undeclared = {a: sorted(fs) for a, fs in asked.items() if a not in FACTS + HOOKS}
    assert not undeclared, f"kernel code asks a design what DesignInterface does not declare: {undeclared}"
    stale = set(FACTS + HOOKS) - set(asked)
    assert not stale, f"DesignInterface declares what no kernel code asks: {sorted(stale)}"


def test_the_rest_of_cowlab_asks_only_declared_names():
    allowed = set(FACTS + HOOKS + IDENTITY) | {"describe"}
    for f in sorted((ROOT / "cowlab").rglob("*.py")):
        if "designs" in f.parts:
            continue
        extra = _design_questions(f) - allowed
        assert not extra, f"{f.relative_to(ROOT)} asks a design {sorted(extra)}"


def test_the_scan_sees_the_calls_it_must_see():
    # a guard on the scan itself: these calls are in the kernel today
    asked = set().union(*(_design_questions(f) for f in KERNEL))
    assert {"wp_anon", "do_swap_page_map", "try_to_unmap_anon", "migrate_try_unmap", "anon_exclusive"} <= asked


def _imports(path: Path) -> set[str]:
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = pkg.split(".")
            if n.level:
                base = base[:len(base) - n.level + 1]
                out.add(".".join(base + ([n.module] if n.module else [])))
            else:
                out.add(n.module)
    return out


def test_kernel_code_never_imports_a_design():
    for f in KERNEL:
        bad = {m for m in _imports(f) if m == "cowlab.designs" or m.startswith("cowlab.designs.")}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}: decision types live in cowlab/kernel/decisions.py"


# ----------------------------------------------------------------- the types
def test_decisions_compare_equal_to_the_old_strings():
    for d, s in ((REUSE, "reuse"), (COPY, "copy"), (LOCK_PAGE, "lock_page"), (SHARE, "share"), (SPLIT, "split"),
                 (READ_MORE, "read_more")):
        assert d == s and hash(d) == hash(s) and {s: 1}[d] == 1 and isinstance(d, Decision)
    assert designs.REUSE is decisions.REUSE and designs.Vmf is decisions.Vmf


def test_named_results_unpack_like_the_old_tuples():
    ok, excl = UnmapResult(True, False)
    assert (ok, excl) == (True, False) and UnmapResult(ok=False, exclusive=True).exclusive
    ok, typ = MigrateUnmapResult(True, 2)
    assert (ok, typ) == (True, 2)
    r = read_more(3)
    assert isinstance(r, ReadMore) and isinstance(r, tuple) and r[0] == READ_MORE and r.snapshot == 3


def test_design_implements_every_declared_member_with_the_declared_arguments():
    for n in FACTS + IDENTITY:
        assert n in Design.__dataclass_fields__, n
    for n in HOOKS:
        want = list(SIGNATURE[n].parameters)
        got = list(inspect.signature(getattr(Design, n)).parameters)
        assert got == want, f"Design.{n}{got} vs DesignInterface.{n}{want}"
    assert set(REQUIRED_HOOKS) == {"wp_anon", "huge_pmd_wp", "do_swap_page_map", "copy_present_anon"}
    assert not hasattr(Design, "do_swap_page_exclusive")


@pytest.mark.parametrize("name", designs.names())
def test_every_builtin_design_conforms(name):
    cls = type(designs.load(name))
    assert class_problems(cls) == []
    assert cls.missing_hooks() == []


# ----------------------------------------------------------------- loading design files
def _cli(args):
    r = CliRunner().invoke(main, args)
    return r.exit_code, r.output


def _one_line_error(tmp_path, src: str | None, *must, name="mine.py", case="basic-cow-fork-swap", path=None):
    f = path or tmp_path / name
    if src is not None:
        f.write_text(src)
    code, out = _cli(["run", case, "-d", str(f)])
    lines = out.strip().splitlines()
    assert code == 2, out
    assert len(lines) == 1 and lines[0].startswith(f"cowlab: error: {f}"), out
    assert "Traceback" not in out and "model bug" not in out
    for m in must:
        assert m in lines[0], lines[0]
    return lines[0]


HEAD = ("from dataclasses import dataclass\nfrom cowlab.designs import *\n"
        "from cowlab.designs.linux_5_19 import Linux519\n")


def test_load_errors_are_one_line_exit_2(tmp_path):
    _one_line_error(tmp_path, None, "not a design file", path=Path("/etc/passwd"))
    _one_line_error(tmp_path, None, "no such design file", path=tmp_path / "nope.py")
    _one_line_error(tmp_path, "x = (\n", ":1: SyntaxError", name="syn.py")
    _one_line_error(tmp_path, "x = 1\n", "defines no design", name="none.py")
    _one_line_error(tmp_path, "x = 1\nraise RuntimeError('boom')\n", ":2: RuntimeError: boom", name="raise.py")
    _one_line_error(tmp_path, HEAD + "class A(Linux519): pass\nclass B(Linux519): pass\n", "defines 2 designs (A, B)",
                    name="two.py")
    _one_line_error(tmp_path, HEAD + "DESIGN = Linux519\n", "DESIGN = Linux519()", name="cls.py")
    _one_line_error(tmp_path, HEAD + "DESIGN = 3\n", "DESIGN is a int, not a Design", name="int.py")
    (tmp_path / "bin.py").write_bytes(b"\x00\x01")
    _one_line_error(tmp_path, None, "not a design file", path=tmp_path / "bin.py")


def test_the_status_is_2_from_a_real_process(tmp_path):
    p = subprocess.run([sys.executable, "-m", "cowlab.cli", "matrix", "-d", "/etc/passwd"], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert p.stderr.startswith("cowlab: error: /etc/passwd: not a design file")


def test_an_empty_subclass_of_Design_is_refused_naming_the_missing_hooks(tmp_path):
    line = _one_line_error(tmp_path, HEAD + "class Mine(Design):\n    pass\n", "Mine lacks the required hooks")
    for n in REQUIRED_HOOKS:
        assert call_text(n) in line
    # the same as DESIGN = an instance
    _one_line_error(tmp_path, HEAD + "class Mine(Design):\n    pass\nDESIGN = Mine()\n", "lacks the required hooks")


def test_the_old_documented_swap_hook_name_is_refused_by_name(tmp_path):
    src = HEAD + ("@dataclass\nclass Mine(Linux519):\n"
                  "    def do_swap_page_exclusive(self, k, vmf, swp_excl, fresh):\n        return False\n")
    _one_line_error(tmp_path, src, "Mine.do_swap_page_exclusive is not a design hook",
                    "do_swap_page_map(k, vmf, slot, swp_excl, fresh)")


def test_a_misspelled_hook_or_fact_is_refused_with_the_right_name(tmp_path):
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    anon_exclusve: bool = True\n" \
                 "    def wp_anno(self, k, vmf):\n        return COPY\n"
    _one_line_error(tmp_path, src, "Mine.wp_anno is not a design hook", "did you mean wp_anon?",
                    "did you mean anon_exclusive?")


def test_helpers_apart_from_the_hooks_are_allowed(tmp_path):
    f = tmp_path / "helpers.py"
    f.write_text(HEAD + "@dataclass\nclass Mine(Linux519):\n    name: str = 'helpers'\n"
                 "    threshold: int = 1\n"
                 "    def _wp_anno(self):\n        return 1\n"
                 "    def shared(self, k, pfn):\n        return False\n"
                 "    def reused(self, k, vmf):\n        return super().reused(k, vmf)\n")
    assert designs.load(str(f)).name == "helpers"


def test_a_hook_that_does_not_take_the_kernels_arguments_is_refused(tmp_path):
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    def do_swap_page_map(self, k, vmf, swp_excl, fresh):\n" \
                 "        return False\n"
    _one_line_error(tmp_path, src, "Mine.do_swap_page_map(k, vmf, swp_excl, fresh) does not take",
                    "do_swap_page_map(k, vmf, slot, swp_excl, fresh)")
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    def copy_huge_anon(self, k, src_mm, pfn):\n" \
                 "        return SHARE\n"
    _one_line_error(tmp_path, src, "copy_huge_anon(k, src_mm, pfn, hugetlb=False)")


def test_facts_must_be_values_of_their_type(tmp_path):
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    def anon_exclusive(self):\n        return True\n"
    _one_line_error(tmp_path, src, "Mine.anon_exclusive is a fact")
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    odirect_gup: int = 1\n"
    _one_line_error(tmp_path, src, "Mine.odirect_gup is 1; expected FOLL_GET or FOLL_PIN")


# ----------------------------------------------------------------- answers at run time
BAD_ANSWERS = [
    ("wp_anon", "return 'reuse_it'", "basic-cow-fork",
     "returned 'reuse_it'; expected REUSE, COPY, LOCK_PAGE or read_more"),
    ("wp_anon", "return SHARE", "basic-cow-fork", "returned SHARE; expected REUSE, COPY, LOCK_PAGE"),
    ("wp_anon", "return read_more([1]) if vmf.snap is None else COPY", "basic-cow-fork", "returned read_more([1])"),
    ("copy_present_anon", "return REUSE", "basic-cow-fork",
     "copy_present_anon() returned REUSE; expected SHARE or COPY"),
    ("do_swap_page_map", "x = 1", "basic-cow-fork-swap", "returned None (did the hook forget to return?)"),
    ("try_to_unmap_anon", "return True", "basic-cow-fork-swap", "returned True; expected UnmapResult(ok: bool"),
    ("gup_must_unshare", "return 'yes'", "cve-2020-29374", "gup_must_unshare() returned 'yes'; expected True or False"),
]


@pytest.mark.parametrize("hook,body,case,must", BAD_ANSWERS)
def test_an_answer_outside_its_type_is_one_line_naming_file_and_hook(tmp_path, hook, body, case, must):
    args = ", ".join(list(SIGNATURE[hook].parameters))
    src = HEAD + f"@dataclass\nclass Mine(Linux519):\n    def {hook}({args}):\n        {body}\n"
    _one_line_error(tmp_path, src, f"Mine.{hook}()", must, case=case)


def test_a_hook_that_raises_is_one_line_with_its_line(tmp_path):
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    def copy_present_anon(self, k, src_mm, addr, pfn, idx):\n" \
                 "        return k.page_count(pfn, 7)\n"
    _one_line_error(tmp_path, src, "mine.py:7: Mine.copy_present_anon() raised TypeError", case="basic-cow-fork")


def test_a_hook_that_keeps_a_page_lock_is_caught_where_it_happens(tmp_path):
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    def wp_anon(self, k, vmf):\n" \
                 "        k.trylock_page(vmf.pfn)\n        return COPY\n"
    _one_line_error(tmp_path, src, "Mine.wp_anon() returned COPY with the page lock of pfn", case="basic-cow-fork")


def test_lock_page_when_the_page_lock_is_already_held_is_refused(tmp_path):
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    def wp_anon(self, k, vmf):\n        return LOCK_PAGE\n"
    _one_line_error(tmp_path, src, "Mine.wp_anon() returned LOCK_PAGE with the page lock already held",
                    case="basic-cow-fork")


def test_sharing_at_fork_without_dup_ing_the_rmap_is_caught_where_it_happens(tmp_path):
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    def copy_present_anon(self, k, src_mm, addr, pfn, idx):\n" \
                 "        return SHARE\n"
    _one_line_error(tmp_path, src, "Mine.copy_present_anon() returned SHARE without dup'ing the rmap",
                    case="basic-cow-fork")


def test_a_bad_answer_found_by_the_explorer_is_the_same_one_line(tmp_path):
    src = HEAD + "@dataclass\nclass Mine(Linux519):\n    def wp_anon(self, k, vmf):\n        return 'maybe'\n"
    f = tmp_path / "mine.py"
    f.write_text(src)
    code, out = _cli(["matrix", "-d", str(f), "-c", "race-swapin-mapcount"])
    want = (f"cowlab: error: {f}: Mine.wp_anon() returned 'maybe'; "
            f"expected REUSE, COPY, LOCK_PAGE or read_more(snapshot) with a hashable snapshot")
    assert code == 2 and out.strip().splitlines() == [want]


def test_a_user_design_pickles_with_its_checks(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(HEAD + "@dataclass\nclass Mine(Linux519):\n    name: str = 'p'\n")
    d = designs.load(str(f))
    e = pickle.loads(pickle.dumps(d))
    assert type(e) is type(d) and e.name == "p" and type(e).__design_file__ == str(f)


def test_builtin_designs_are_not_wrapped():
    d = designs.load("linux-5.19")
    assert type(d).__module__ == "cowlab.designs.linux_5_19" and not hasattr(type(d), "__design_file__")


# ----------------------------------------------------------------- whole catalog
CASES = [c.id for c in catalog.all_cases()]


def _same(a, b):
    return (a.outcomes, a.status, a.bugs, a.copies) == (b.outcomes, b.status, b.bugs, b.copies)


def test_a_design_written_from_the_interface_alone_agrees_with_linux_5_19_on_the_catalog():
    """docs/examples/design_from_scratch.py subclasses Design directly (no
    built-in design) and implements 5.19's rules from the documented hooks."""
    assert type(designs.load(str(SCRATCH))).__mro__[1].__bases__ == (Design,)
    diff = [c for c in CASES if not _same(run_unit(c, "linux-5.19", ()), run_unit(c, str(SCRATCH), ()))]
    assert not diff, f"the from-scratch design disagrees with linux-5.19 on {diff}"


@pytest.mark.parametrize("name", designs.names())
def test_a_subclass_of_each_builtin_overriding_one_hook_runs_the_catalog_as_the_builtin(tmp_path, name):
    """Every hook of the subclass is wrapped with the run-time checks, so this
    also shows no built-in answer or lock discipline trips them."""
    cls = type(designs.load(name))
    f = tmp_path / f"sub_{name.replace('-', '_').replace('.', '_')}.py"
    f.write_text(f"from dataclasses import dataclass\nfrom {cls.__module__} import {cls.__name__}\n"
                 f"@dataclass\nclass Mine({cls.__name__}):\n    name: str = {name!r}\n"
                 f"    def wp_anon(self, k, vmf):\n        return super().wp_anon(k, vmf)\n")
    assert type(designs.load(str(f))).__design_file__ == str(f)
    diff = [c for c in CASES if not _same(run_unit(c, name, ()), run_unit(c, str(f), ()))]
    assert not diff, f"a checked subclass of {name} disagrees with it on {diff}"


def test_settings_apply_to_a_user_design(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("from dataclasses import dataclass\n"
                 "from cowlab.designs.rfc_page_anon_shared import RfcPageAnonShared\n"
                 "@dataclass\nclass Mine(RfcPageAnonShared):\n    name: str = 'mine-rfc'\n")
    d = designs.load(str(f), {"page_lock": False})
    assert d.settings == {"page_lock": False} and hasattr(type(d), "__design_file__")
    with pytest.raises(DesignError, match="has no setting nope"):
        designs.load(str(f), {"nope": 1})


# ----------------------------------------------------------------- docs
def test_the_docs_describe_every_hook_and_fact_as_the_kernel_calls_it():
    doc = (ROOT / "docs" / "designs.md").read_text()
    for n in HOOKS:
        assert f"`{call_text(n)}`" in doc, f"docs/designs.md does not show {call_text(n)}"
    for n in FACTS:
        assert f"`{n}`" in doc, n
    for n in REQUIRED_HOOKS:
        assert re.search(rf"`{n}\(.*required", doc), f"docs/designs.md does not say {n} is required"
    assert "docs/designs.md" in (ROOT / "README.md").read_text()
    assert DesignInterface.__doc__ and all(getattr(DesignInterface, n).__doc__ for n in HOOKS)
