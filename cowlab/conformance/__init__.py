"""Conformance with the live kernel: run catalog cases as real programs and
compare, after every operation, what the kernel did with what the model's
design for this kernel predicts.

Compared per step, for every live process and page of the case:
* the entry: not mapped / present / swapped (pagemap bits 63, 62);
* which entries share a physical page (the partition by PFN, never raw PFNs);
* PG_anon_exclusive of present anonymous pages (kpageflags bit 34), for
  designs that have it;
* the mapcount (kpagecount);
* the data every read and pipe read returns (the model's content tokens are
  written as byte values);
* in a case with ``thp_sizes`` (mTHP, run with those per-size knobs set):
  that each large folio the model maps with ptes is one kernel folio of the
  same size (kpageflags' compound head/tail bits).
The first difference makes the case "disagree"; a case the host cannot run
(an operation the probe does not drive, no swap, not root, a THP/hugetlb
variant whose model has other sizes) is "skip" with the reason.  Negative
controls run cases on MAP_SHARED memory, where COW does not apply: they must
disagree, or the probe observes nothing.

The package is split so that the real program (``worker``, ``probe``) imports
nothing of the model: ``runner`` holds the comparison and the run, and its
names are served from here on first use.
"""
from __future__ import annotations

import importlib


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(".runner", __name__), name)
