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
