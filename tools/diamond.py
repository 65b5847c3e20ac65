"""The diamond property of the model's footprints, checked on every reachable
state: two steps the footprints call independent must commute.

For every state a breadth-first search reaches and every two threads t, u
with ``not model.dependent(footprint(s, t), footprint(s, u))``:

* both enabled: t;u and u;t are both enabled and reach the same state (up to
  renaming page frames, swap slots and fresh content tokens: two steps that
  allocate take different free ones in either order; free ones at the end of a
  table count as none: ``cowlab.model.same_up_to_renaming``), and,
  when the states are equal, each step raises
  the same oracle events in either order;
* t enabled, u blocked: u is still blocked after t (t cannot wake it).

Usage: ``python tools/diamond.py [--races] [--max-states N] [CASE ...]``;
prints every refutation and exits 1 if there is one.
"""
from __future__ import annotations

import argparse
import sys
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cowlab import catalog, designs  # noqa: E402
from cowlab.model import CowModel, same_up_to_renaming  # noqa: E402


def _events(tr):
    return sorted(repr(e) for e in tr.events)


def check(model, max_states: int = 20000) -> tuple[int, int, list[str]]:
    """(states checked, independent pairs checked, refutations) for one model."""
    n = model.nthreads
    s0 = model.init_state()
    seen = {s0}
    todo = deque([s0])
    bad, pairs = [], 0
    while todo and len(seen) <= max_states:
        s = todo.popleft()
        nxt = [model.footprint(s, t) for t in range(n)]
        for t in range(n):
            tr = nxt[t][0]
            if tr is None:
                continue
            plain = model.step(s, t)
            if repr(plain.state._replace(signals=())) != repr(tr.state._replace(signals=())):
                bad.append(f"{t}: the tracked step ({tr.label}) reached another state than the plain one")
            if tr.state not in seen:
                seen.add(tr.state)
                todo.append(tr.state)
        for t in range(n):
            for u in range(t + 1, n):
                (a, fa), (b, fb) = nxt[t], nxt[u]
                if (a is None and b is None) or model.dependent(fa, fb):
                    continue
                pairs += 1
                if a is not None and b is not None:
                    ab, ba = model.step(a.state, u), model.step(b.state, t)
                    if ab is None or ba is None:
                        bad.append(f"{t},{u}: independent but one order is disabled ({a.label} / {b.label})")
                    elif ab.state != ba.state and not same_up_to_renaming(ab.state, ba.state, s.next_token):
                        bad.append(f"{t},{u}: independent but the orders differ ({a.label} / {b.label})")
                    elif ab.state == ba.state and (_events(ab) != _events(b) or _events(ba) != _events(a)):
                        bad.append(f"{t},{u}: independent but the oracle's events differ ({a.label} / {b.label})")
                else:
                    run, blocked = (t, u) if a is not None else (u, t)
                    after = model.step(nxt[run][0].state, blocked)
                    if after is not None:
                        bad.append(f"{run} wakes {blocked} but their footprints are independent "
                                   f"({nxt[run][0].label})")
    return len(seen), pairs, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--races", action="store_true", help="every case tagged 'race'")
    ap.add_argument("--max-states", type=int, default=20000)
    a = ap.parse_args(argv)
    cases = [catalog.get(c) for c in a.cases]
    if a.races:
        cases += [c for c in catalog.all_cases() if "race" in c.tags]
    nbad = 0
    for c in cases:
        for d in designs.names():
            st, pairs, bad = check(CowModel(c, designs.load(d)), a.max_states)
            nbad += len(bad)
            print(f"{c.id} {d}: {st} states, {pairs} independent pairs, {len(bad)} refuted")
            for b in bad[:5]:
                print("   ", b)
    return 1 if nbad else 0


if __name__ == "__main__":
    sys.exit(main())
