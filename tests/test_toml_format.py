"""Scenario files: a good file runs; a bad one gets one line naming the file,
line and field."""
from pathlib import Path

import pytest

from cowlab.scenario import ScenarioError
from cowlab.toml_format import load_case

EXAMPLE = Path(__file__).parent.parent / "examples" / "vmsplice_child.toml"


def test_example_file_runs(run):
    c = load_case(str(EXAMPLE))
    assert c.id == "example-vmsplice-child"
    assert run(c, "linux-5.7").outcomes["missed"] == 1
    assert run(c, "linux-5.9").outcomes["missed"] == 0


def _bad(tmp_path, old, new):
    text = EXAMPLE.read_text()
    assert old in text
    p = tmp_path / "bad.toml"
    p.write_text(text.replace(old, new, 1))
    with pytest.raises(ScenarioError) as e:
        load_case(str(p))
    msg = str(e.value)
    assert "\n" not in msg
    return msg, text.replace(old, new, 1).splitlines()


def test_unknown_operation_names_line_and_suggests(tmp_path):
    msg, lines = _bad(tmp_path, 'op = "munmap"', 'op = "munmapp"')
    line = int(msg.split(":")[1])
    assert 'munmapp' in lines[line - 1]
    assert "did you mean munmap" in msg and "step.4.op" in msg


def test_unknown_argument(tmp_path):
    msg, lines = _bad(tmp_path, 'pipe = "p"', 'pipee = "p"')
    line = int(msg.split(":")[1])
    assert "pipee" in lines[line - 1] and "did you mean pipe" in msg


def test_wrong_type(tmp_path):
    msg, lines = _bad(tmp_path, "addr = 0", 'addr = "zero"')
    line = int(msg.split(":")[1])
    assert 'addr = "zero"' in lines[line - 1] and "step.0.addr" in msg


def test_unknown_top_level_field(tmp_path):
    msg, _ = _bad(tmp_path, "title =", "titel =")
    assert ":3: titel: unknown field; did you mean title?" in msg


def test_syntax_error(tmp_path):
    msg, _ = _bad(tmp_path, "pages = 1\n", "pages = [\n")
    assert "syntax" in msg and msg.split(":")[1].isdigit()


def test_address_out_of_range(tmp_path):
    msg, lines = _bad(tmp_path, "addr = 0\npipe", "addr = 5\npipe")
    assert "outside" in msg and "addr = 5" in lines[int(msg.split(":")[1]) - 1]


def test_missing_required_argument(tmp_path):
    msg, _ = _bad(tmp_path, 'child = "child"', "")
    assert "needs 'child'" in msg


def test_missing_file():
    with pytest.raises(ScenarioError, match="cannot read"):
        load_case("/nonexistent/x.toml")
