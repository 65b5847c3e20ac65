"""cowlab vs Spin on the same questions, timed side by side in one run
(on demand: `python benchmarks/bench_spin.py`; needs Debian's `spin` and gcc;
`benchmarks/explore.py` prints the same table as its last section).

Two races, each hand-written in Promela as an abstraction and checked by Spin
end to end (spin -a, gcc, pan), against cowlab exploring its kernel model of
the catalog case (`cowlab explore`, end to end, Python start-up included):

* fork vs gup-fast (promela/fork_gup_fast.pml, race-fork-gup-fast): can a
  pinned page be shared with the child?  linux-5.9 (broken) and linux-5.11
  (safe: write_protect_seq);
* the seed's swapin vs page_anon_shared() (promela/swapin_mapcount.pml,
  race-swapin-mapcount): can the parent reuse a page the child's swapin maps?
  rfc-page-anon-shared:page_lock=false (broken) and rfc-page-anon-shared
  (safe: the decision under the page lock).
"""
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


#: (question, Promela file, its -D define, cowlab case, cowlab design) -- one broken and one safe per race
QUESTIONS = (
    ("fork vs gup-fast", "fork_gup_fast.pml", "WPSEQ=0", "race-fork-gup-fast", "linux-5.9"),
    ("fork vs gup-fast", "fork_gup_fast.pml", "WPSEQ=1", "race-fork-gup-fast", "linux-5.11"),
    ("swapin vs page_anon_shared", "swapin_mapcount.pml", "PAGE_LOCK=0", "race-swapin-mapcount",
     "rfc-page-anon-shared:page_lock=false"),
    ("swapin vs page_anon_shared", "swapin_mapcount.pml", "PAGE_LOCK=1", "race-swapin-mapcount",
     "rfc-page-anon-shared"),
)


def spin_run(pml: str, define: str):
    """Spin end to end (spin -a, gcc, pan): (seconds, broken, states stored)."""
    d = tempfile.mkdtemp()
    try:
        t = time.perf_counter()
        subprocess.run(["spin", f"-D{define}", "-a", str(HERE / "promela" / pml)], cwd=d,
                       check=True, capture_output=True)
        subprocess.run(["gcc", "-O2", "-DSAFETY", "-o", "pan", "pan.c"], cwd=d, check=True, capture_output=True)
        p = subprocess.run(["./pan", "-E"], cwd=d, capture_output=True, text=True)
        el = time.perf_counter() - t
        states = next(int(line.split()[0]) for line in p.stdout.splitlines() if "states, stored" in line)
        return el, "errors: 0" not in p.stdout, states
    finally:
        shutil.rmtree(d)


def cowlab_run(case: str, design: str):
    """``cowlab explore`` end to end: (seconds, broken, states, search seconds)."""
    exe = shutil.which("cowlab") or str(Path(sys.executable).parent / "cowlab")
    el, p = timed([exe, "explore", case, "--design", design, "--format", "json"])
    d = json.loads(p.stdout)
    return el, bool(d["outcomes"]["wrong"] or d["outcomes"]["missed"]), d["states"], d["seconds"]


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def rows(runs: int = 3):
    """Each question run ``runs`` times by both tools, pair by pair (medians)."""
    out = []
    for q, pml, define, case, design in QUESTIONS:
        st, cw = [], []
        for _ in range(runs):
            st.append(spin_run(pml, define))
            cw.append(cowlab_run(case, design))
        out.append((f"{q}, {design}", _median([x[0] for x in st]), st[0][1], st[0][2],
                    _median([x[0] for x in cw]), cw[0][1], cw[0][2], _median([x[3] for x in cw]),
                    _median([c[0] / s[0] for s, c in zip(st, cw)])))
    return out


def print_table(rs):
    print(f"{'question':<64}{'spin e2e':>10}{'verdict':>9}{'states':>8}{'cowlab e2e':>12}{'verdict':>9}"
          f"{'states':>8}{'search':>8}{'ratio':>7}")
    for q, st, sb, ss, ct, cb, cs, csr, ratio in rs:
        print(f"{q:<64}{st:>9.2f}s{('broken' if sb else 'safe'):>9}{ss:>8}"
              f"{ct:>11.2f}s{('broken' if cb else 'safe'):>9}{cs:>8}{csr:>7.2f}s{ratio:>7.2f}")
    print("medians of runs paired side by side; ratio = cowlab end-to-end time / spin end-to-end time "
          "(<= 1.0: cowlab answers no slower); verdicts must agree")
    return all(sb == cb for _, _, sb, _, _, cb, _, _, _ in rs)


def main():
    import argparse
    ap = argparse.ArgumentParser(description="cowlab vs Spin end to end")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if not shutil.which("spin"):
        print("spin not found: apt-get install spin")
        return 1
    return 0 if print_table(rows(a.runs)) else 2


if __name__ == "__main__":
    sys.exit(main())
