"""tools/mutate.py (mutation testing of the designs) on a few mutants and cases:
it kills what it should, keeps equivalent mutants apart, tells checks-only
catches and survivors, and refuses an equivalence claim a case refutes."""
import importlib.util
import json
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from cowlab import designs

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def _load(name):
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


mutate = _load("mutate")
mutants = _load("mutants")


def by_name(rep):
    return {m["name"]: m for m in rep["mutants"]}


def test_mutants_are_one_override_of_one_builtin_design():
    builtin = {type(designs.load(n)): n for n in designs.names()}
    assert len(mutants.MUTANTS) >= 20
    assert len({cls.base_name for cls in mutants.MUTANTS.values()}) >= 8
    for name, cls in mutants.MUTANTS.items():
        assert cls.base in builtin and builtin[cls.base] == cls.base_name, name
        assert name == cls().name == f"{cls.base_name}~{name.split('~', 1)[1]}"
        own = {k for k in vars(cls) if not k.startswith("__")} - {"name", "base", "base_name", "hook", "equivalent"}
        assert own == {cls.hook}, (name, own)
        assert hasattr(cls.base, cls.hook) or cls.hook in {f.name for f in fields(cls.base)}, name
        assert (cls.__doc__ or "").strip(), name
        assert cls.equivalent is None or len(cls.equivalent) > 40, name


def test_kills_survivors_and_equivalents():
    rep = mutate.evaluate(["linux-5.11~pinned-into-swapcache", "linux-5.11~no-write-protect-seq",
                           "linux-5.9~trylock-dropped"],
                          ["basic-cow-fork", "iouring-pageout", "race-fork-gup-fast"], jobs=1)
    m = by_name(rep)
    # feb889fb40fa reverted: the pinned page is swapped out and the write COWs it away from the pin
    assert m["linux-5.11~pinned-into-swapcache"]["killed_by"] == ["iouring-pageout"]
    assert "wrong 0->1" in m["linux-5.11~pinned-into-swapcache"]["why"]["iouring-pageout"]
    # 57efa1fe5957 reverted: only the explored race shows it
    assert m["linux-5.11~no-write-protect-seq"]["killed_by"] == ["race-fork-gup-fast"]
    eq = m["linux-5.9~trylock-dropped"]
    assert eq["status"] == "equivalent" and not eq["killed"] and eq["equivalent"]
    s = rep["summary"]
    assert s["score"] == "2/2" and s["status"] == "complete" and not s["survived"]
    assert not rep["base_problems"]


def test_survivor_and_checks_only():
    rep = mutate.evaluate(["linux-5.11~pinned-into-swapcache", "linux-5.19~unmap-ignores-pin"],
                          ["basic-cow-fork", "race-gup-fast-exclusive"], jobs=1)
    m = by_name(rep)
    assert m["linux-5.11~pinned-into-swapcache"]["status"] == "survived"
    assert not m["linux-5.11~pinned-into-swapcache"]["killed"]
    # try_to_unmap_one() ignoring the pin: the race's verdicts agree, the I2 invariant (FOLL_PIN on a page that is
    # not PageAnonExclusive) does not
    u = m["linux-5.19~unmap-ignores-pin"]
    assert u["status"] == "checks" and u["killed"] and u["killed_by"] == []
    assert u["caught_by_checks"] == ["race-gup-fast-exclusive"]
    assert rep["summary"]["survived"] == ["linux-5.11~pinned-into-swapcache"]
    assert rep["summary"]["score"] == "1/2"


def test_a_refuted_equivalence_claim_is_reported(monkeypatch):
    from cowlab.designs.base import REUSE
    from cowlab.designs.linux_6_18 import Linux618

    monkeypatch.setattr(mutants, "MUTANTS", dict(mutants.MUTANTS))

    @mutants.mutant("claimed-equivalent", "wp_anon", equivalent="(a wrong claim, for the test) " * 3)
    class Claimed(Linux618):
        """do_wp_page() reuses every page."""
        def wp_anon(self, k, vmf):
            return REUSE

    rep = mutate.evaluate(["linux-6.18~claimed-equivalent"], ["basic-cow-fork"], jobs=1)
    m = by_name(rep)["linux-6.18~claimed-equivalent"]
    assert m["status"] == "refuted" and m["killed_by"] == ["basic-cow-fork"]
    assert rep["summary"]["refuted_equivalent"] == ["linux-6.18~claimed-equivalent"]


def test_cli_json_and_exit_status(capsys):
    rc = mutate.main(["--format", "json", "--jobs", "1", "--mutant", "linux-6.5~no-unshare-zero-page",
                      "--case", "ro-pin-zeropage", "--case", "basic-cow-fork"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    (m,) = out["mutants"]
    assert {"name", "design", "killed", "killed_by", "equivalent"} <= set(m)
    assert (m["name"], m["design"], m["killed"], m["killed_by"], m["equivalent"]) == \
        ("linux-6.5~no-unshare-zero-page", "linux-6.5", True, ["ro-pin-zeropage"], None)
    rc = mutate.main(["--jobs", "1", "--mutant", "linux-6.5~no-unshare-zero-page", "--case", "basic-cow-fork"])
    text = capsys.readouterr().out
    assert rc == 1 and "SURVIVED" in text and "mutation score (killed / non-equivalent): 0/1" in text


def test_unknown_names_are_one_line_errors(capsys):
    with pytest.raises(SystemExit, match="unknown mutant"):
        mutate.evaluate(["linux-6.18~nope"], ["basic-cow-fork"])
    assert mutate.main(["--mutant", "linux-6.18~always-reuse", "--case", "no-such-case"]) == 2
    assert "unknown case" in capsys.readouterr().err
