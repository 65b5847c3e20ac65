"""The report formats: explain's story, the terminal trace, JSON schema, JUnit XML, plots."""
import json
import xml.etree.ElementTree as ET

from click.testing import CliRunner

from cowlab import catalog, designs
from cowlab.cli import main
from cowlab.report import explain, terminal, trace


def _doc(case, design, **settings):
    m, trs, meta = trace.transitions_for(catalog.get(case), designs.load(design, settings or None))
    return trace.build(m, trs, meta)


def test_trace_document_schema():
    d = _doc("cve-2020-29374", "linux-5.7")
    assert d["schema"] == "cowlab-trace/1"
    assert d["verdicts"]["missed"] == 1 and d["verdict_step"] is not None
    st = d["steps"][d["verdict_step"]]
    assert st["events"][0]["kind"] == "missed"
    assert {"processes", "pages", "swap", "refs"} <= set(st["state"])
    json.dumps(d)


def test_explain_story_tells_the_decision_and_the_observer():
    text = explain.story(_doc("cve-2020-29374", "linux-5.7"))
    assert "child: vmsplice" in text and "reuses page 0" in text
    assert "page_count 3, mapcount 1" in text
    assert "MISSED" in text and "Verdict: missed COW x1" in text


def test_explain_race_uses_the_shortest_counterexample():
    d = _doc("race-swapin-mapcount", "rfc-page-anon-shared", page_lock=False)
    assert d["mode"] == "explore" and d["verdicts"]["missed"] == 1
    assert "the shortest interleaving" in explain.story(d)


def test_terminal_trace_shows_what_changed():
    from rich.console import Console
    con = Console(record=True, width=250)
    con.print(terminal.table(_doc("cve-2020-29374", "linux-5.9")))
    text = con.export_text()
    assert "copy_present_pte_wrprotect" in text and "pfn1 RW -> pfn1 RO" in text
    assert "+pipe child:p pfn1" in text


def test_junit_outputs():
    r = CliRunner().invoke(main, ["matrix", "-c", "cve-2020-29374", "-d", "linux-5.7", "-d", "linux-5.9",
                                  "--format", "junit", "-q"])
    root = ET.fromstring(r.output)
    assert root.attrib["tests"] == "2" and root.attrib["failures"] == "1"
    r = CliRunner().invoke(main, ["selftest", "-d", "linux-6.18", "--format", "junit"])
    root = ET.fromstring(r.output)
    assert root.attrib["failures"] == "0" and int(root.attrib["tests"]) == 778     # cow.c's count at x86-64's sizes
    assert int(root.attrib["skipped"]) == sum(1 for tc in root if tc.find("skipped") is not None) > 0


def test_explain_command_writes_html(tmp_path):
    out = tmp_path / "out.html"
    r = CliRunner().invoke(main, ["explain", "cve-2020-29374", "--design", "linux-5.7", "--html", str(out)])
    assert r.exit_code == 1, r.output           # the story ends in a missed COW: exit status 1 (was 0)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "<script src" not in page and "<link" not in page


def test_unnecessary_vs_load_measures_per_design():
    from cowlab.plots import unnecessary_vs_load
    data = unnecessary_vs_load(loads=(0, 1), walks=3, seed=2)
    assert set(data) >= {"linux-5.9", "rfc-mapcount"}
    for rows in data.values():
        assert [r[0] for r in rows] == [0, 1] and all(r[1] >= 0 and r[2] >= 0 for r in rows)
    assert data["linux-5.9"][0][1] > data["rfc-mapcount"][0][1]


def test_explain_shows_what_the_decision_read_when_it_read_it():
    """race-swapin-mapcount, rfc-page-anon-shared without the page lock: the
    decision reads page_mapcount() (1) in one step and page_swapcount() in a
    later one, after the child's swapin made the mapcount 2.  The story's
    decision line shows the mapcount it read, 1, not the 2 of the state the
    decision ended in (issue 13)."""
    d = _doc("race-swapin-mapcount", "rfc-page-anon-shared", page_lock=False)
    (st,) = [s for s in d["steps"] if any(x["hook"] == "wp_anon" and x["answer"] == "REUSE" for x in s["decisions"])]
    (dec,) = [x for x in st["decisions"] if x["hook"] == "wp_anon"]
    mc = next(r for r in dec["reads"] if r["call"].startswith("page_mapcount("))
    sc = next(r for r in dec["reads"] if r["call"].startswith("page_swapcount("))
    assert mc["value"] == "1" and mc["step"] == dec["from_step"] < sc["step"] == st["i"]
    before = d["steps"][st["i"] - 1]["state"]["pages"]
    assert [p["mapcount"] for p in before if p["pfn"] == 1] == [[2]]
    (line,) = [x for x in explain.story(d).splitlines() if "reuses page 0" in x]
    assert "mapcount 1," in line and "mapcount 2" not in line
    assert f"page_mapcount(1, 0) = 1 at step {mc['step']} (in " in line and "page_swapcount(1, 0) = 0 ->" in line
    assert "settings page_lock=false" in explain.story(d).splitlines()[2]
    assert line.endswith("-> REUSE]")
    # with the page lock the decision is one read
    d = _doc("race-swapin-mapcount", "rfc-page-anon-shared")
    for s in d["steps"]:
        for x in s["decisions"]:
            assert all(r["step"] == s["i"] for r in x["reads"]), x


def test_every_step_has_what_it_changed():
    d = _doc("race-fork-gup-fast", "linux-5.9")
    assert all(isinstance(s["changed"], list) for s in d["steps"])
    assert any("pfn1 RW -> pfn1 RO" in c for s in d["steps"] for c in s["changed"])


def test_recording_the_reads_changes_no_run():
    """The reads are recorded by running the trace again with every hook on a
    recording view of the kernel: for every built-in design, on the races and
    a spread of other cases, the run is the same, step by step, and a
    decision is recorded wherever a reuse or a copy is."""
    from cowlab.model import CowModel
    cases = [c.id for c in catalog.all_cases() if "race" in c.tags] + [
        "cve-2020-29374", "basic-cow-fork-swap", "ro-pin-exclusive", "iouring-fork-partial-mremap-thp"]
    for name in designs.names():
        for case in cases:
            m, trs, _ = trace.transitions_for(catalog.get(case), designs.load(name), "sequential")
            dec = trace.decisions(m, trs)
            assert dec is not None, (case, name)
            for tr, ds in zip(trs, dec):
                if any(type(e).__name__ == "Reuse" for e in tr.effects):
                    assert any(d["answer"] == "REUSE" or d["hook"] == "hugetlb_wp_reuse" for d in ds), (case, name)
            assert isinstance(m, CowModel)
