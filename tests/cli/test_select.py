"""Item 5: selection (globs, tags, patterns), --format json on the lists, selftest -t, cowlab export
(round-trips over the whole catalog), and the scenario format documented from the code."""
import csv
import dataclasses
import fnmatch
import io
import json
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cowlab import catalog, designs, selection
from cowlab.cli import main
from cowlab.kernel.paths import OPS
from cowlab.matrix import compute
from cowlab.model import CowModel
from cowlab.run import run_sequential
from cowlab.scenario import Op, ScenarioError
from cowlab.toml_format import ARG_DEFAULTS, REQUIRED, parse_case

ROOT = Path(__file__).resolve().parents[2]
RACE_IDS = [c.id for c in catalog.all_cases() if c.id.startswith("race-")]


def cli(*args):
    return CliRunner().invoke(main, list(args))


# ----------------------------------------------------------------------------- -c globs and --tag
def test_glob_on_c_selects_the_matching_catalog_ids_in_catalog_order():
    assert len(RACE_IDS) == 11         # (race-collapse-gup-fast, race-collapse-fork: issue 12; race-fork-write*)
    r = cli("matrix", "-c", "race-*", "-d", "linux-5.9", "--format", "json", "-q")
    assert r.exit_code == 1, r.output          # race-fork-gup-fast under 5.9: a missed COW found
    data = json.loads(r.output)
    assert [c["id"] for c in data["cases"]] == RACE_IDS
    assert {x["case"] for x in data["results"]} == set(RACE_IDS)
    # race-fork-gup-fast under 5.9 is broken (57efa1fe5957 came in 5.11): the glob ran the real exploration
    assert next(x for x in data["results"] if x["case"] == "race-fork-gup-fast")["outcomes"]["missed"] > 0


def test_tag_narrows_a_glob_and_the_catalog():
    assert selection.select_cases(["race-*"], ["thp"]) == ["race-fork-write-thp", "race-fork-write-pte-thp",
                                                               "race-thp-split", "race-collapse-gup-fast",
                                                               "race-collapse-fork"]
    ksm = selection.select_cases((), ["ksm"])
    assert ksm == [c.id for c in catalog.all_cases() if "ksm" in c.tags] and len(ksm) >= 4
    # every tag given must be there
    both = selection.select_cases((), ["cow.c", "hugetlb"])
    assert len(both) == 14 and all(i.endswith("-hugetlb") for i in both)
    # a tag may be a glob
    assert set(selection.select_cases((), ["pte-thp*"])) == {c.id for c in catalog.all_cases()
                                                              if {"pte-thp", "pte-thp-swap"} & set(c.tags)}


def test_selection_that_names_nothing_is_a_usage_error():
    r = cli("matrix", "-c", "race-*", "--tag", "swap", "-q")
    assert r.exit_code == 2 and "no case is selected" in r.output and "Traceback" not in r.output
    r = cli("matrix", "-c", "nosuch-*", "-q")
    assert r.exit_code == 2 and "'nosuch-*': no catalog case matches" in r.output
    r = cli("matrix", "--tag", "swapp", "-q")
    assert r.exit_code == 2 and "did you mean swap" in r.output


def test_cases_takes_a_pattern_tags_and_json():
    r = cli("cases", "race", "--format", "json")
    assert r.exit_code == 0, r.output
    got = [c["id"] for c in json.loads(r.output)["cases"]]
    assert got == [c.id for c in catalog.all_cases() if "race" in c.id or "race" in c.tags]
    assert "page-count-do-wp-page" in got and "race-thp-split" in got      # a tag, an id
    r = cli("cases", "--format", "json")
    rows = json.loads(r.output)["cases"]
    assert [c["id"] for c in rows] == catalog.ids() and len(rows) == len(catalog.ids()) > 190
    ksm = next(c for c in rows if c["id"] == "ksm-merge-write")
    assert ksm["tags"] == ["ksm"] and ksm["race"] is False and ksm["processes"]
    r = cli("cases", "vmsplice-*-hugetlb", "--format", "json")
    assert [c["id"] for c in json.loads(r.output)["cases"]] == [i for i in catalog.ids()
                                                                 if fnmatch.fnmatchcase(i, "vmsplice-*-hugetlb")]
    r = cli("cases", "zzz")
    assert r.exit_code == 2 and "zzz" in r.output
    r = cli("cases", "race")                               # the text table lists tags too
    assert r.exit_code == 0 and "race-swapin-mapcount" in r.output and "basic-cow-fork " not in r.output


def test_designs_and_ops_as_json():
    r = cli("designs", "--format", "json")
    assert r.exit_code == 0
    ds = json.loads(r.output)["designs"]
    assert [d["name"] for d in ds] == designs.names()
    assert next(d for d in ds if d["name"] == "rfc-page-anon-shared")["settings"] == {"page_lock": True}
    r = cli("ops", "--format", "json")
    ops = {o["op"]: o for o in json.loads(r.output)["ops"]}
    assert set(ops) == set(OPS)
    vs = {a["name"]: a for a in ops["vmsplice"]["args"]}
    assert vs["addr"]["required"] and vs["pipe"]["required"] and not vs["pages"]["required"]
    assert vs["pages"]["default"] == 1 and vs["addr"]["type"] == "integer"
    mp = {a["name"]: a for a in ops["mprotect"]["args"]}
    assert mp["prot"]["required"] and "`r`" in mp["prot"]["type"] and "default" not in mp["prot"]
    mm = {a["name"]: a for a in ops["mmap"]["args"]}
    assert mm["prot"]["default"] == "rw" and mm["thp"]["default"] is False
    assert "default_rule" in {a["name"]: a for a in ops["write"]["args"]}["value"]
    for name, o in ops.items():                            # the required flags are toml_format's
        need = REQUIRED.get(name, {"addr"} & set(OPS[name][2]))
        assert {a["name"] for a in o["args"] if a["required"]} == need


# ----------------------------------------------------------------------------- the documented format
def test_scenario_format_doc_is_current():
    doc = (ROOT / "docs" / "scenario-format.md").read_text()
    assert doc == selection.scenario_format_markdown(), \
        "docs/scenario-format.md is stale: cowlab ops --format markdown > docs/scenario-format.md"
    for name in OPS:                                       # every operation, every argument
        assert f"### `{name}`" in doc
    r = cli("ops", "--format", "markdown")
    assert r.output == doc


def _with_defaults_written_out(case):
    """The case with every optional argument that has a value default (ARG_DEFAULTS) written out."""
    threads = []
    for t in case.threads:
        ops = []
        for op in t.ops:
            a = dict(op.args)
            need = REQUIRED.get(op.name, {"addr"} & set(OPS[op.name][2]))
            for k in OPS[op.name][2]:
                if k not in a and k not in need and k in ARG_DEFAULTS:
                    a[k] = ARG_DEFAULTS[k]
            ops.append(Op(op.name, tuple(sorted(a.items())), op.line))
        threads.append(dataclasses.replace(t, ops=tuple(ops)))
    return dataclasses.replace(case, threads=tuple(threads))


def test_documented_defaults_are_the_kernel_modules_defaults():
    """Each default the doc states, written out explicitly, runs the same as leaving it out: every
    catalog case under three designs, step by step."""
    changed = 0
    for d in ("linux-5.7", "linux-5.11", "linux-6.18"):
        design = designs.load(d)
        for c in catalog.all_cases():
            c2 = _with_defaults_written_out(c)
            if c2 == c:
                continue
            changed += 1
            a, b = run_sequential(CowModel(c, design)), run_sequential(CowModel(c2, design))
            assert (a.outcomes, a.copies, a.status, [(s["label"], s["events"]) for s in a.trace]) == \
                (b.outcomes, b.copies, b.status, [(s["label"], s["events"]) for s in b.trace]), (c.id, d)
    assert changed > 500


# ----------------------------------------------------------------------------- export
def test_export_round_trips_every_catalog_case():
    """cowlab export CASE, loaded back, is the same case: processes, threads, every operation."""
    for c in catalog.all_cases():
        text = selection.export_toml(c)
        back = parse_case(tomllib.loads(text), text, f"{c.id}.toml")
        assert selection.shape(back) == selection.shape(c), c.id
        assert (back.id, back.title, back.source, back.tags) == (c.id, c.title, c.source, c.tags)


def test_exported_files_give_the_catalog_verdicts(tmp_path):
    """Running the exported files gives the same verdicts as the catalog cases (the races explored
    over every interleaving), over the whole catalog, under three designs."""
    files = []
    for c in catalog.all_cases():
        r = cli("export", c.id)
        assert r.exit_code == 0, r.output
        p = tmp_path / f"{c.id}.toml"
        p.write_text(r.output)
        files.append(str(p))
    ds = ["linux-5.9", "linux-5.19", "rfc-mapcount"]
    want = compute(ds, catalog.ids(), jobs=2)
    got = compute(ds, files, jobs=2)
    verdicts = lambda m: sorted((r.case, r.design, tuple(sorted(r.outcomes.items())), r.status) for r in m.results)
    assert verdicts(want) == verdicts(got)
    assert len(want.results) == len(catalog.ids()) * 3 and sum(r.outcomes["missed"] > 0 for r in want.results) > 20


def test_export_of_a_race_case_has_its_parallel_group(tmp_path):
    text = cli("export", "race-swapin-mapcount").output
    data = tomllib.loads(text)
    groups = {s.get("parallel") for s in data["step"]} - {None}
    assert len(groups) == 1
    p = tmp_path / "mine.toml"
    p.write_text(text)
    r = cli("explore", str(p), "-d", "rfc-page-anon-shared", "--set", "page_lock=false", "--format", "json")
    assert json.loads(r.output)["outcomes"]["missed"] > 0                  # the seed's race, from the file
    r = cli("export", str(p))
    assert r.output == text


def test_parallel_group_errors_name_the_line(tmp_path):
    base = 'id = "x"\npages = 1\n[[step]]\nthread = "p"\nop = "mmap"\naddr = 0\n'
    twice = base + ('[[step]]\nthread = "p"\nop = "write"\naddr = 0\nparallel = "g"\n'
                    '[[step]]\nthread = "p"\nop = "read"\naddr = 0\n'
                    '[[step]]\nthread = "p"\nop = "write"\naddr = 0\nparallel = "g"\n')
    f = tmp_path / "twice.toml"
    f.write_text(twice)
    with pytest.raises(ScenarioError, match=r"twice.toml:20: step.3.parallel: parallel group 'g' was used"):
        catalog.get(str(f))
    forked = base + ('[[step]]\nthread = "p"\nop = "fork"\nchild = "c"\nparallel = "g"\n'
                     '[[step]]\nthread = "c"\nop = "read"\naddr = 0\nparallel = "g"\n')
    f = tmp_path / "forked.toml"
    f.write_text(forked)
    with pytest.raises(ScenarioError, match=r"forked.toml:13: step.2.thread: process 'c' is forked in parallel"):
        catalog.get(str(f))


# ----------------------------------------------------------------------------- selftest -t
def _ktap_tests(out):
    return [line for line in out.splitlines() if line.startswith(("ok ", "not ok "))]


def test_selftest_t_selects_like_run_vmtests():
    r = cli("selftest", "-d", "linux-6.18", "-t", "hugetlb")
    assert r.exit_code == 0, r.output
    lines = _ktap_tests(r.output)
    # every hugetlb test of cow.c at x86-64's 2 hugetlb sizes: 14 anon tests and 3 memfd hugetlb tests each
    runs = [x for x in r.output.splitlines() if x.startswith("# [RUN] ") and "Non-anonymous" not in x]
    assert "1..34" in r.output and len(lines) == 34 and len(runs) == 34 and all("hugetlb (" in x for x in runs)
    assert "# Totals: pass:20 fail:0 xfail:8" in r.output        # cow.c on 6.x: the 8 hugetlb vmsplice XFAILs
    r = cli("selftest", "-d", "linux-5.7", "-t", "vmsplice-unmap-child*", "-t", "basic cow after fork() with thp")
    lines = _ktap_tests(r.output)
    assert len(lines) == 2 * 54 + 1 and r.exit_code == 1                    # 5.7 leaks: a failing selftest
    assert [re.sub(r"^(not )?ok \d+ ", "", x) for x in lines if "Basic" in x] == \
        ["Basic COW after fork() ... with THP (2048 kB)"]
    assert sum(x.startswith("not ok") for x in lines) >= 11
    r = cli("selftest", "-d", "linux-6.18", "-t", "nosuch")
    assert r.exit_code == 2 and "no cow.c test matches" in r.output


# ----------------------------------------------------------------------------- matrix: summary, violations, CSV
def test_matrix_summary_only_violations_and_csv():
    args = ["matrix", "-c", "race-*", "-c", "basic-cow-fork", "-d", "linux-5.9", "-d", "linux-6.18", "-q"]
    r = cli(*args, "--summary")
    assert "COW outcomes per design" in r.output and "case x design" not in r.output
    r = cli(*args, "--only-violations")
    assert "race-fork-gup-fast" in r.output and "basic-cow-fork " not in r.output
    assert "cases with no violation under any design not shown" in r.output
    r = cli(*args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert len(rows) == 12 * 2 and set(rows[0]) == {"case", "design", "missed", "unnecessary", "wrong", "status",
                                                   "steps", "copies"}
    gup = next(x for x in rows if x["case"] == "race-fork-gup-fast" and x["design"] == "linux-5.9")
    assert int(gup["missed"]) > 0 and gup["status"] == "complete"
    r = cli(*args, "--format", "csv", "--only-violations")
    assert "basic-cow-fork," not in r.output and "race-fork-gup-fast," in r.output
    r = cli(*args, "--format", "csv", "--summary")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert [x["design"] for x in rows] == ["linux-5.9", "linux-6.18"]
    assert rows[0]["missed_occurs"] == "yes" and rows[1]["wrong_occurs"] == "no"
