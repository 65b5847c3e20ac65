"""Every effect type is rendered and either judged by the oracle or listed
as not judged, so a new effect cannot be silently ignored."""
import ast
import inspect
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_type_hints

import pytest

from cowlab import catalog, designs
from cowlab.kernel import effects
from cowlab.kernel.effects import EFFECT_TYPES, KsmBreakCow
from cowlab.kernel.types import Ref
from cowlab.model import CowModel
from cowlab.oracle import Oracle
from cowlab.report import trace

ROOT = Path(__file__).resolve().parents[2] / "cowlab"


def _namedtuples_in_module():
    return {c for _, c in inspect.getmembers(effects, inspect.isclass)
            if c.__module__ == effects.__name__ and issubclass(c, tuple) and hasattr(c, "_fields")}


def test_effect_types_lists_every_effect_class():
    assert set(EFFECT_TYPES) == _namedtuples_in_module()
    assert len(set(EFFECT_TYPES)) == len(EFFECT_TYPES)


@pytest.mark.parametrize("t", EFFECT_TYPES, ids=lambda t: t.__name__)
def test_every_effect_has_a_renderer(t):
    assert t in trace.RENDERERS


@pytest.mark.parametrize("t", EFFECT_TYPES, ids=lambda t: t.__name__)
def test_every_effect_is_judged_or_listed_as_not_judged(t):
    judged, not_judged = t in Oracle.JUDGES, t in Oracle.NOT_JUDGED
    assert judged != not_judged, f"{t.__name__}: judged={judged}, listed as not judged={not_judged}"
    if not_judged:
        assert Oracle.NOT_JUDGED[t].strip(), f"{t.__name__} is not judged without a reason"


def test_no_handler_for_a_type_that_is_not_an_effect():
    assert set(trace.RENDERERS) <= set(EFFECT_TYPES)
    assert set(Oracle.JUDGES) | set(Oracle.NOT_JUDGED) <= set(EFFECT_TYPES)


@pytest.mark.parametrize("t", EFFECT_TYPES, ids=lambda t: t.__name__)
def test_every_effect_docstring_names_a_kernel_function(t):
    assert t.__doc__ and re.search(r"\w+\(\)", t.__doc__), t.__name__


_SAMPLE = {int: 1, str: "x", bool: True, Any: 7, Ref | None: None, tuple: (2, 3)}


@pytest.mark.parametrize("t", EFFECT_TYPES, ids=lambda t: t.__name__)
def test_every_effect_renders_to_a_line(t):
    hints = get_type_hints(t)
    e = t(*(_SAMPLE[hints[f]] for f in t._fields))
    text = trace.render_effect(SimpleNamespace(case=SimpleNamespace(processes=["parent", "child"])), e)
    assert isinstance(text, str) and text and "\n" not in text


def _effect_calls():
    """(file, line, constructor name or None) of every k.effect(...) call in cowlab/."""
    out = []
    for p in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "effect" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "k":
                a = node.args[0] if len(node.args) == 1 and not node.keywords else None
                name = a.func.id if isinstance(a, ast.Call) and isinstance(a.func, ast.Name) else None
                out.append((p.relative_to(ROOT), node.lineno, name))
    return out


def test_every_call_site_records_an_effect_type_and_every_type_is_recorded():
    calls = _effect_calls()
    names = {t.__name__ for t in EFFECT_TYPES}
    bad = [(str(f), ln) for f, ln, name in calls if name not in names]
    assert calls and not bad, f"k.effect() calls not building one effect type: {bad}"
    assert {name for _, _, name in calls} == names, "an effect type no kernel step records"


def test_the_oracle_refuses_an_effect_it_does_not_know():
    class Unknown(tuple):
        pass
    m = CowModel(catalog.get("basic-cow-fork"), designs.load("linux-6.18"))
    s = m.init_state()
    with pytest.raises(TypeError, match="neither judges nor lists"):
        m.oracle.check(s, s, [Unknown()])


def test_ksm_break_cow_is_rendered_in_the_trace():
    # ksm-pinned-tree-page's catalog entry (a live-kernel probe) has ksmd call break_cow() on the refused pair
    m, trs, meta = trace.transitions_for(catalog.get("ksm-pinned-tree-page"), designs.load("linux-6.18"),
                                         "sequential")
    found = [(i, e) for i, tr in enumerate(trs) for e in tr.effects if type(e) is KsmBreakCow]
    assert found
    doc = trace.build(m, trs, meta)
    for i, e in found:
        assert trace.render_effect(m, e) in doc["steps"][i]["effects"]
