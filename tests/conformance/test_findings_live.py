"""Every shrunk reproducer the random run ever wrote (docs/findings/*.toml) replays on this machine's kernel: the
fixed ones agree (or are skipped with the reason), the open ones (listed in docs/findings/README.md under "still
open") do not yet.  A regression of any fix shows here."""
import os
import re
from pathlib import Path

import pytest

from cowlab.conformance import random as cr

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for PFNs and /proc/kpageflags")
FINDINGS = Path(__file__).resolve().parent.parent.parent / "docs" / "findings"


def _open() -> set:
    text = (FINDINGS / "README.md").read_text()
    part = text.split("still open:", 1)[1] if "still open:" in text else ""
    return {f"{n}.toml" for n in re.findall(r"`?([a-z0-9-]+)\.toml`?", part)}


def test_every_fixed_finding_agrees_live():
    files = sorted(str(p) for p in FINDINGS.glob("*.toml"))
    assert len(files) > 20
    *_, results, changed, _ = cr.main_live(files=files)
    assert [r.case for r in results] == files
    still_open = _open()
    for r in results:
        name = os.path.basename(r.case)
        if name in still_open:
            continue
        assert r.result == "agree" or (r.result == "skip" and r.reason), (name, r.result, r.reason)
    assert sum(r.result == "agree" for r in results) >= len(files) - len(still_open) - 2
