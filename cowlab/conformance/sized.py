"""Run conformance cases with the model's THP at the kernel's size
(``COWLAB_HPAGE_PMD_NR`` set by the caller):
``python -m cowlab.conformance.sized CASE [CASE ...] [--swap] [--design NAME]``
prints one JSON result per case."""
from __future__ import annotations

import json
import sys

from .. import catalog, designs
from .runner import design_for_release, run_cases


def main() -> int:
    import os
    import platform
    from .probe import die_with_parent
    if os.environ.get("COWLAB_PARENT_PID"):
        die_with_parent(int(os.environ["COWLAB_PARENT_PID"]))
    argv = sys.argv[1:]
    spec = argv[argv.index("--design") + 1] if "--design" in argv else design_for_release(platform.release())[0]
    design = designs.load(spec)
    swap = "--swap" in argv
    cases = [catalog.get(cid) for i, cid in enumerate(argv)
             if not cid.startswith("--") and (i == 0 or argv[i - 1] != "--design")]
    run_cases(cases, design, swap, log=lambda r: print(json.dumps(r.as_json()), flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
