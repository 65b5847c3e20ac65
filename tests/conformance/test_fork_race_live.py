"""Live probe of a thread's store racing fork() (tools/fork_race_probe.c), what tests/catalog/test_fork_race.py
expects of every design: the child sees what the page held when fork() copied its pte -- stores another thread
made while fork() ran among them -- and never a store made after fork() returned.

Skipped unless COWLAB_LIVE=1 and a C compiler; changes nothing on the machine (no sysfs knob, no swap)."""
import os
import re
import shutil
import subprocess

import pytest

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "fork_race_probe.c")
CC = shutil.which("cc") or shutil.which("gcc")

pytestmark = pytest.mark.skipif(os.environ.get("COWLAB_LIVE") != "1" or CC is None,
                                reason="live: COWLAB_LIVE=1 and a C compiler")

OUT = re.compile(r"child saw a store made during fork\(\) (\d+) times .* a store made after fork\(\) returned (\d+) "
                 r"times; missed a store made before fork\(\) (\d+) times")


@pytest.mark.parametrize("variant", ["page", "thp"])
def test_the_child_sees_stores_made_during_fork_and_none_made_after(tmp_path, variant):
    exe = tmp_path / "fork_race_probe"
    subprocess.run([CC, "-O2", "-pthread", "-o", str(exe), TOOL], check=True)
    args = [str(exe), "2000"] + (["thp"] if variant == "thp" else [])
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    m = OUT.search(p.stdout)
    assert m, (p.returncode, p.stdout, p.stderr)
    during, after, lost = map(int, m.groups())
    assert after == 0 and lost == 0 and p.returncode == 0, p.stdout
    # the race is real: some child read a store the other thread made after the parent called fork()
    assert during > 0, p.stdout
