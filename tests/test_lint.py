"""ruff (configured in pyproject.toml: line length 120, pyflakes and pycodestyle errors) is clean on the repo.

ruff is in the `test` extra, so CI runs this; it is skipped only where ruff is not installed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_is_clean():
    pytest.importorskip("ruff", reason="ruff is not installed (pip install -e .[test])")
    p = subprocess.run([sys.executable, "-m", "ruff", "check", "cowlab", "tests", "tools", "benchmarks"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"ruff check failed (exit {p.returncode}):\n{p.stdout}{p.stderr}"
