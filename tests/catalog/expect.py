"""What the catalog expectation tables share: every design, one row of
expected verdicts per case (a default and per-design overrides, each with
its source), and the check that runs a case and compares."""
from cowlab import catalog, designs
from cowlab.matrix import explore_result
from cowlab.model import CowModel
from cowlab.run import run_sequential

ALL = ("linux-5.7", "linux-5.8", "linux-5.9", "linux-5.11", "linux-5.18", "linux-5.19", "linux-6.5", "linux-6.9",
       "linux-6.18", "rfc-mapcount", "rfc-page-anon-shared")


def row(default, **over):
    """{design: (verdict kinds, source)}: ``default`` for every design, ``over``
    keyed by the design's name with ``-`` and ``.`` as ``_``."""
    return {d: over.get(d.replace("-", "_").replace(".", "_"), default) for d in ALL}


def check(case: str, design: str, kinds: str, source: str) -> None:
    """Run ``case`` under ``design`` (explored if it is a race) and compare its verdict kinds."""
    c, d = catalog.get(case), designs.load(design)
    r = explore_result(c, d) if "race" in c.tags else run_sequential(CowModel(c, d))
    assert r.status == "complete" and not r.bugs, (r.reason, r.bugs)
    got = {k for k, n in r.outcomes.items() if n}
    assert got == set(kinds.split()), f"{case} / {design}: {sorted(got)} ({source})"
