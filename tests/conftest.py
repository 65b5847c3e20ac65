import os

import pytest

from cowlab import catalog, designs
from cowlab.model import CowModel
from cowlab.run import run_sequential


@pytest.fixture
def run():
    def _run(case, design, **settings):
        c = catalog.get(case) if isinstance(case, str) else case
        d = designs.load(design, settings or None) if isinstance(design, str) else design
        return run_sequential(CowModel(c, d))
    return _run


# ----------------------------------------------------------------------------- live-kernel tests: opt-in
#: the tests that run real programs on this machine's kernel and change it while they run (zram swap,
#: vm/nr_hugepages, fs/pipe-max-size, KSM's knobs, a SIGINT sent to a run): marked ``live`` and skipped
#: unless COWLAB_LIVE=1 (and root), so the README's test command alone never changes the machine
LIVE_FILES = {"test_live_kernel.py", "test_interrupt.py", "test_random_live.py", "test_findings_live.py",
              "test_mthp_live.py", "test_swap_large_live.py", "test_fork_race_live.py"}
LIVE_ENV = "COWLAB_LIVE"


def live_enabled() -> bool:
    return os.environ.get(LIVE_ENV, "") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "live: runs on this machine's kernel and changes it while it runs (swap, "
                                       "nr_hugepages, KSM); skipped unless COWLAB_LIVE=1")


@pytest.hookimpl(tryfirst=True)          # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"live-kernel test (changes zram swap, nr_hugepages, KSM): set {LIVE_ENV}=1 "
                                   f"as root to run it")
    for item in items:
        if item.path.name in LIVE_FILES and item.path.parent.name == "conformance":
            item.add_marker(pytest.mark.live)
        if item.get_closest_marker("live") and not live_enabled():
            item.add_marker(skip)
