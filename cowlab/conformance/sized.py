"""Run conformance cases with the model's THP at the kernel's size
(``COWLAB_HPAGE_PMD_NR`` set by the caller): ``python -m cowlab.conformance.sized CASE [CASE ...]``
prints one JSON result per case."""
from __future__ import annotations

import json
import sys

from .. import catalog, designs
from .runner import design_for_release, run_cases


def main() -> int:
    import platform
    design = designs.load(design_for_release(platform.release())[0])
    swap = "--swap" in sys.argv
    cases = [catalog.get(cid) for cid in sys.argv[1:] if not cid.startswith("--")]
    run_cases(cases, design, swap, log=lambda r: print(json.dumps(r.as_json()), flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
