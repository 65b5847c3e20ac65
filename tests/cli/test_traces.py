"""Item 6: portable traces -- `explore --save-trace` embeds the case (or its file's text) and a hash of the
design's source; `replay` works from another folder and warns when the design differs; a search that finds
nothing says it saved nothing."""
import json

from click.testing import CliRunner

from cowlab.cli import main

MINE = '''from dataclasses import dataclass
from cowlab.designs.linux_5_7 import Linux57


@dataclass
class Mine(Linux57):
    name: str = "mine"
'''


def cli(*args):
    r = CliRunner().invoke(main, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r


def _steps(output):
    return [line for line in output.splitlines() if line.startswith("│")]


def test_a_trace_of_a_design_file_and_a_case_file_replays_from_another_folder(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.chdir(a)
    (a / "mine.py").write_text(MINE)
    r = cli("export", "cve-2020-29374")
    (a / "case.toml").write_text(r.output)
    r = cli("explore", "case.toml", "-d", "./mine.py", "--save-trace", "t.json", "-q")
    assert r.exit_code in (0, 1) and (a / "t.json").exists(), r.output
    data = json.loads((a / "t.json").read_text())
    assert data["schema"] == "cowlab-saved-trace/2" and data["design_hash"].startswith("sha256:")
    assert data["case_toml"] == (a / "case.toml").read_text() and data["design_file"] == MINE
    here = cli("replay", "t.json")
    assert here.exit_code == 1 and "warning" not in here.stderr
    (b / "t.json").write_text((a / "t.json").read_text())
    (a / "case.toml").unlink()
    (a / "mine.py").unlink()
    monkeypatch.chdir(b)
    there = cli("replay", "t.json")
    assert there.exit_code == 1, there.output
    assert "copy saved in the trace" in there.stderr and "warning" not in there.stderr
    assert _steps(there.stdout) == _steps(here.stdout) and len(_steps(here.stdout)) > 5
    assert "MISSED" in there.stdout or "missed" in there.stdout.lower()


def test_replay_warns_when_the_design_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(MINE)
    cli("explore", "cve-2020-29374", "-d", "./mine.py", "--save-trace", "t.json", "-q")
    assert cli("replay", "t.json").stderr == ""
    (tmp_path / "mine.py").write_text(MINE + "    # edited\n")
    r = cli("replay", "t.json")
    assert r.exit_code == 1           # the replay shows the missed COW again
    assert "warning: design mine is not the one this trace was saved with" in r.stderr


def test_a_built_in_design_is_hashed_too(tmp_path):
    t = tmp_path / "t.json"
    cli("explore", "race-fork-gup-fast", "-d", "linux-5.9", "--save-trace", str(t), "-q")
    data = json.loads(t.read_text())
    assert data["case"] == "race-fork-gup-fast" and data["case_from"] == "catalog"
    assert "parallel" in data["case_toml"]                        # the race's concurrent group travels with it
    assert cli("replay", str(t)).stderr == ""
    data["design_hash"] = "sha256:" + "0" * 64
    t.write_text(json.dumps(data))
    r = cli("replay", str(t))
    # (the shortest trace is the unnecessary COW, not a --fail-on kind: exit 0)
    assert r.exit_code == 0 and "is not the one this trace was saved with" in r.stderr


def test_the_embedded_case_is_what_replays(tmp_path):
    """A trace replays the case it was saved with, even where the id is not in this catalog."""
    t = tmp_path / "t.json"
    cli("explore", "cve-2020-29374", "-d", "linux-5.7", "--save-trace", str(t), "-q")
    data = json.loads(t.read_text())
    data["case_toml"] = data["case_toml"].replace('id = "cve-2020-29374"', 'id = "renamed-case"')
    data["case"] = "renamed-case"
    t.write_text(json.dumps(data))
    r = cli("replay", str(t))
    assert r.exit_code == 1 and "renamed-case under linux-5.7" in r.stdout


def test_save_trace_with_nothing_found_says_so(tmp_path):
    t = tmp_path / "t.json"
    r = cli("explore", "race-swapin-mapcount", "-d", "linux-6.18", "--save-trace", str(t), "-q")
    assert r.exit_code == 0
    assert "no violation found: nothing to save" in r.stderr and str(t) in r.stderr
    assert not t.exists()
