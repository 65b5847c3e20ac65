"""cowlab vs Spin on the same question, timed side by side in one run
(on demand: `python benchmarks/bench_spin.py`; needs Debian's `spin` and gcc).

Question: after fork racing gup-fast FOLL_PIN, can a pinned page be shared
with the child?  Spin checks the hand-written abstraction in
promela/fork_gup_fast.pml (spin -a, gcc, pan: end to end); cowlab explores
its kernel model of race-fork-gup-fast (`cowlab explore`, end to end, Python
start-up included), under linux-5.9 (broken) and linux-5.11 (safe)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def timed(cmd, cwd=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t, p


def spin_run(wpseq: int):
    d = tempfile.mkdtemp()
    try:
        t = time.perf_counter()
        subprocess.run(["spin", f"-DWPSEQ={wpseq}", "-a", str(HERE / "promela" / "fork_gup_fast.pml")], cwd=d,
                       check=True, capture_output=True)
        subprocess.run(["gcc", "-O2", "-DSAFETY", "-o", "pan", "pan.c"], cwd=d, check=True, capture_output=True)
        p = subprocess.run(["./pan", "-E"], cwd=d, capture_output=True, text=True)
        el = time.perf_counter() - t
        states = next(int(line.split()[0]) for line in p.stdout.splitlines() if "states, stored" in line)
        return el, "errors: 1" in p.stdout, states
    finally:
        shutil.rmtree(d)


def cowlab_run(design: str):
    exe = shutil.which("cowlab") or str(Path(sys.executable).parent / "cowlab")
    el, p = timed([exe, "explore", "race-fork-gup-fast", "--design", design, "--format", "json"])
    d = json.loads(p.stdout)
    return el, bool(d["outcomes"]["wrong"] or d["outcomes"]["missed"]), d["states"], d["seconds"]


def main():
    if not shutil.which("spin"):
        print("spin not found: apt-get install spin")
        return 1
    rows = []
    for wpseq, design in ((0, "linux-5.9"), (1, "linux-5.11")):
        st, sbroken, sstates = spin_run(wpseq)
        ct, cbroken, cstates, csearch = cowlab_run(design)
        rows.append((design, st, sbroken, sstates, ct, cbroken, cstates, csearch))
    print(f"{'question':<34}{'spin e2e':>10}{'verdict':>9}{'states':>8}{'cowlab e2e':>12}{'verdict':>9}"
          f"{'states':>8}{'search':>8}{'ratio':>7}")
    for design, st, sb, ss, ct, cb, cs, csr in rows:
        print(f"{'fork vs gup-fast, ' + design:<34}{st:>9.2f}s{('broken' if sb else 'safe'):>9}{ss:>8}"
              f"{ct:>11.2f}s{('broken' if cb else 'safe'):>9}{cs:>8}{csr:>7.2f}s{ct / st:>7.2f}")
    print("ratio = cowlab end-to-end time / spin end-to-end time (<= 1.0: cowlab answers no slower)")


if __name__ == "__main__":
    sys.exit(main())
