"""Item 9: packaging -- matplotlib as an extra, the licence, ``python -m cowlab``, py.typed, a changelog."""
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

from cowlab.cli import main

ROOT = Path(__file__).resolve().parents[2]
PY = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_matplotlib_is_an_extra_not_a_dependency():
    deps = PY["project"]["dependencies"]
    assert not [d for d in deps if d.lower().startswith(("matplotlib", "numpy", "pillow"))]
    assert any(d.startswith("matplotlib") for d in PY["project"]["optional-dependencies"]["plots"])
    # the tests do not need it: the test extra does not pull it in
    assert not any(d.startswith("matplotlib") for d in PY["project"]["optional-dependencies"]["test"])


def test_plots_without_matplotlib_is_one_line(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    r = CliRunner().invoke(main, ["plots", "--out", "never-made"])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'cowlab[plots]'" in lines[0] and "Traceback" not in r.output
    assert not Path("never-made").exists()


def test_licence_file_and_metadata():
    assert PY["project"]["license"] == "GPL-2.0-only"
    assert "LICENSE" in PY["project"]["license-files"]
    text = (ROOT / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 2, June 1991" in text


def test_py_typed_is_shipped():
    assert (ROOT / "cowlab" / "py.typed").exists()
    assert "py.typed" in PY["tool"]["setuptools"]["package-data"]["cowlab"]


def test_python_dash_m_cowlab():
    r = subprocess.run([sys.executable, "-m", "cowlab", "--version"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("cowlab, version ")
    r = subprocess.run([sys.executable, "-m", "cowlab", "cases", "--format", "json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '"basic-cow-fork"' in r.stdout


def test_changelog_names_this_version():
    from cowlab import __version__
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {__version__}" in text and PY["project"]["version"] == __version__
