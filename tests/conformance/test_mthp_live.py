"""Live mTHP on this machine's kernel: the real program of a case with
``thp_sizes`` gets a large folio of exactly that size (cow.c's check: touch
the first subpage, the last one is populated; here also kpageflags' compound
head/tail bits and the folio's end), only because the run set the per-size
knob; and the knobs come back after the run, after Ctrl-C and SIGTERM, and
(by the next run) after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cowlab.conformance import zram
from cowlab.conformance.runner import large_folio_problem
from cowlab.conformance.zram import anon_thp_knobs, choice, machine_lock, temporary_thp_sizes

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not anon_thp_knobs(),
                                reason="needs root (PFNs, kpageflags, sysfs writes) and per-size THP knobs (6.8+)")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def knobs() -> dict:
    """Every THP knob a run could touch: the per-size enabled files and the global ones."""
    out = {p: open(p).read().strip() for p in anon_thp_knobs().values()}
    for name in ("enabled", "defrag", "shmem_enabled", "use_zero_page"):
        out[name] = open(f"{zram.THP_ROOT}/{name}").read().strip()
    return out


def populate(n: int) -> list:
    """The real program (cowlab.conformance.worker) on a range of 2n pages aligned to n pages, MADV_HUGEPAGE,
    one write to the first page (cow.c do_run_with_thp(): mem[0] = 1): the snapshot after the write."""
    plan = {"pages": 2 * n, "shared": False, "align": n, "thp_sizes": [n], "processes": ["p"],
            "steps": [{"process": "p", "op": "mmap", "args": {"addr": 0, "pages": 2 * n, "thp": True}},
                      {"process": "p", "op": "write", "args": {"addr": 0, "value": [7], "pages": 1}}]}
    out = subprocess.run([sys.executable, "-m", "cowlab.conformance.worker"], input=json.dumps(plan),
                         capture_output=True, text=True, timeout=120)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 2 and all(x["ok"] for x in lines), (out.stdout[-1000:], out.stderr[-1000:])
    return lines[-1]["snapshot"]["p"]


@pytest.mark.parametrize("kb", [16, 64, 1024])
def test_the_real_program_gets_a_folio_of_the_case_s_size(kb):
    n = kb // PAGE_KB
    if kb not in anon_thp_knobs():
        pytest.skip(f"no hugepages-{kb}kB on this kernel")
    before = knobs()
    changed = []
    with machine_lock():
        with temporary_thp_sizes(changed) as k:
            assert k.apply((n,)) == ""
            assert choice(open(anon_thp_knobs()[kb]).read()) == "madvise"
            snap = populate(n)
            # cow.c: the first write populated the last subpage too; then exactly one n-page folio
            assert snap[n - 1]["present"], "the kernel did not populate the whole folio (cow.c: a SKIP)"
            assert large_folio_problem(n, [(f"page {a}", a, snap[a]) for a in range(n)]) == ""
            assert not snap[n]["present"]                    # nothing past the folio was faulted in
            own = choice(before[anon_thp_knobs()[kb]])
            if own == "never":
                # the control: with the machine's own setting for this size (never) the same program gets no
                # folio of this size (a small page; or, where the 2n-page range happens to be a PMD-aligned
                # 2 MiB, the PMD THP), so the folio above is the knob's doing
                k.apply(None)
                snap = populate(n)
                assert snap[0]["present"]
                assert large_folio_problem(n, [(f"page {a}", a, snap[a]) for a in range(n)]) != ""
    assert knobs() == before
    assert any(f"hugepages-{kb}kB/enabled back to" in c for c in changed), changed


CHILD = """
import sys, time
from cowlab.conformance.zram import machine_lock, temporary_thp_sizes
changed = []
try:
    with machine_lock():
        with temporary_thp_sizes(changed) as k:
            assert k.apply((4,)) == ""
            print("ready", flush=True)
            time.sleep(300)
except KeyboardInterrupt:
    print("\\n".join(changed), flush=True)
    sys.exit(130)
"""


def _start_child():
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=os.getcwd(), start_new_session=True)
    line = p.stdout.readline()          # (waits while another live run holds the machine lock)
    assert line.strip() == "ready", (line, p.stderr.read()[-2000:] if p.poll() is not None else "")
    return p


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_knobs_come_back_after_ctrl_c_and_sigterm(sig):
    before = knobs()
    p = _start_child()
    path16 = anon_thp_knobs()[16]
    assert choice(open(path16).read()) == "madvise"          # the run changed it
    os.killpg(p.pid, sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    assert f"{path16} back to {choice(before[path16])} (restored)" in out
    assert knobs() == before


def test_a_killed_run_s_knobs_are_put_back_by_the_next_run():
    before = knobs()
    p = _start_child()
    os.killpg(p.pid, signal.SIGKILL)                          # nothing of it runs again
    p.wait(30)
    path16 = anon_thp_knobs()[16]
    assert choice(open(path16).read()) == "madvise"          # left changed
    said = []
    time.sleep(0.1)
    with machine_lock(say=said.append):                       # the next run undoes it first
        assert knobs() == before
    assert any(path16 in s and "interrupted run" in s for s in said), said


def test_a_conformance_case_with_thp_sizes_runs_with_its_knobs_and_puts_them_back():
    """A case of the runner (model and real program, compared step by step) with ``thp_sizes=(4,)`` at the
    kernel's geometry: a 16 kB folio written, shared by fork(), written by the parent (COW).  Until the model
    has mTHP (the ``mthp`` branch) it maps small pages there and the large-folio check has nothing to check;
    with it, the check compares the kernel's 16 kB folio with the model's."""
    from cowlab.conformance import runner
    from cowlab.scenario import Script
    s = Script("mthp-live-fork-cow", "an mTHP written, fork(), COW in the parent", pages=512,
               tags=("pte-thp",), hpage_pmd_nr=512, settings={"thp_sizes": (4,)})
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=4, thp=True)
    p.write(0, pages=4)
    p.fork(c)
    p.write(0)
    c.read(0, pages=4)
    case = s.build()
    before = knobs()
    _, _, _, design = runner.host_design()
    with machine_lock():
        res = runner.run_cases([case], design, jobs=0)
    assert knobs() == before
    assert [r.result for r in res] == ["agree"], [(r.result, r.reason) for r in res]


def test_each_mthp_pageout_case_starts_on_a_fresh_swap_allocator():
    """The kernel hands out swap offsets in order from where the last case left them; an mTHP is swapped in only
    where they agree with the addresses (6.12+).  swap-offsets-continue run twice in one run agrees both times only
    because each run of a case with thp_sizes that pages out starts with swapoff/swapon (runner._launch,
    zram.restart_swap): without it the second run's offsets start at 12 and the write at page 8 gets a small page."""
    from cowlab import catalog, designs
    from cowlab.conformance.runner import run_cases
    case = catalog.get("swap-offsets-continue")
    changed = []
    with machine_lock(), zram.temporary_swap(True, changed) as have_swap:
        if not have_swap:
            pytest.skip(f"no zram swap: {changed}")
        res = run_cases([case, case], designs.load("linux-6.18"), have_swap=True, attempts=1)
    assert [r.result for r in res] == ["agree", "agree"], [r.reason for r in res]
