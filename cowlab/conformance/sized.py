"""Run conformance cases with the model's THP at the kernel's size
(``COWLAB_HPAGE_PMD_NR`` set by the caller): ``python -m cowlab.conformance.sized CASE [CASE ...]``
prints one JSON result per case."""
from __future__ import annotations

import json
import sys

from .. import catalog, designs
from .runner import design_for_release, run_case


def main() -> int:
    import platform
    design = designs.load(design_for_release(platform.release())[0])
    swap = "--swap" in sys.argv
    for cid in [a for a in sys.argv[1:] if not a.startswith("--")]:
        try:
            r = run_case(catalog.get(cid), design, have_swap=swap).as_json()
        except Exception as e:   # one case's failure is reported, the others still run
            r = {"case": cid, "result": "skip", "steps_compared": 0, "reason": f"{type(e).__name__}: {e}"}
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
