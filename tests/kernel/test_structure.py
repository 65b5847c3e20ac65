"""The kernel package's declared structure: no import cycles, no imports
hidden inside functions, and frames whose declared field types drive
symmetry renaming (a new path keeping a pfn in a typed field needs nothing
else for --symmetry)."""
import ast
import pathlib
from typing import NamedTuple, Optional

import cowlab
from cowlab.kernel.paths import Pfn, Slot, STEPS, frame_roles, rename_frame
from cowlab.kernel.types import PTE_PRESENT, PTE_SWAP, Pte

ROOT = pathlib.Path(cowlab.__file__).parent
KERNEL = ROOT / "kernel"


def _modname(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path):
    """(imported module, is_top_level) for every import in the file, resolved to module names."""
    mod = _modname(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = pkg.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for a in node.names:
                yield (f"{target}.{a.name}", target), id(node) in top
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield (a.name, a.name), id(node) in top


def _kernel_files():
    return sorted(KERNEL.rglob("*.py"))


def test_no_function_local_imports_in_the_kernel():
    local = [(str(f.relative_to(ROOT)), m[1]) for f in _kernel_files() for m, top in _imports(f) if not top]
    assert local == []


def test_no_import_cycle_inside_the_kernel():
    mods = {_modname(f): f for f in _kernel_files()}
    graph = {}
    for name, f in mods.items():
        deps = set()
        for (full, target), _ in _imports(f):
            for cand in (full, target):
                if cand in mods and cand != name:
                    deps.add(cand)
                    break
        graph[name] = deps
    # the package __init__ files only re-export; a cycle through them is still a cycle
    state, cycle = {}, []

    def visit(n, path):
        state[n] = 1
        for d in graph[n]:
            if state.get(d) == 1:
                cycle.append(path[path.index(d):] + [d] if d in path else path + [d])
            elif d not in state:
                visit(d, path + [d])
        state[n] = 2
    for n in graph:
        if n not in state:
            visit(n, [n])
    assert cycle == []


class _Inner(NamedTuple):
    page: Pfn
    count: int


class _Frame(NamedTuple):
    addr: int
    page: Optional[Pfn]
    slot: Slot
    pte: Optional[Pte]
    inner: Optional[_Inner]
    other: int = 7


def test_frame_roles_come_from_the_declared_types():
    roles = dict(frame_roles(_Frame))
    assert roles == {1: "pfn", 2: "slot", 3: "pte", 4: _Inner}
    assert dict(frame_roles(_Inner)) == {0: "pfn"}


def test_rename_frame_renames_frames_and_slots_and_keeps_the_rest():
    fr = _Frame(addr=3, page=5, slot=2, pte=Pte(PTE_SWAP, 2), inner=_Inner(9, 4))
    out = rename_frame(fr, lambda p: p + 100, lambda s: s + 50)
    assert out == _Frame(3, 105, 52, Pte(PTE_SWAP, 52), _Inner(109, 4), 7)
    present = rename_frame(fr._replace(pte=Pte(PTE_PRESENT, 5), page=None, inner=None), lambda p: p + 100,
                           lambda s: s + 50)
    assert present.pte.pfn == 105 and present.page is None and present.inner is None


def test_every_registered_step_is_documented_and_named():
    # a kernel developer must recognise every step: a docstring or a kernel-named function
    for label, fn in STEPS.items():
        assert "." in label or label.isidentifier()
        assert fn.__name__ != "<lambda>"
