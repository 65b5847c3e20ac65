"""Sweeps and swarms on a local Dask cluster of two workers (cowlab.cluster).
Skipped, saying why, when the optional extra ``cowlab[cluster]`` is missing."""
import os

import pytest

pytest.importorskip("distributed", reason="the optional extra cowlab[cluster] (dask[distributed]) is not installed")

from cowlab import catalog, cluster  # noqa: E402
from cowlab.explore import explore  # noqa: E402
from cowlab.matrix import compute  # noqa: E402
from cowlab.model import CowModel  # noqa: E402
from cowlab import designs  # noqa: E402

RACES = [c.id for c in catalog.all_cases() if "race" in c.tags]
SOME = RACES + [c.id for c in catalog.all_cases() if "race" not in c.tags][:6]


@pytest.fixture(scope="module")
def client():
    c = cluster.connect(workers=2)
    yield c
    c.close()


def test_sweep_gives_the_matrix_table_and_survives_a_lost_worker(client, tmp_path):
    store = cluster.Store(str(tmp_path / "s.sqlite"))
    killed = []

    def progress(i, n):
        if i == 3 and not killed:           # kill one worker while tasks are running
            w = sorted(client.scheduler_info()["workers"])[0]
            try:
                client.run(os._exit, 1, workers=[w])
            except Exception:
                pass
            killed.append(w)
    m = cluster.sweep(client, store, None, SOME, progress=progress)
    ref = compute(None, SOME)
    assert killed
    assert m.table() == ref.table()
    assert store.count("sweep") == len(SOME) * len(designs.names())      # each unit once
    got = {(r.case, r.design): (r.outcomes, r.status) for r in m.results}
    assert got == {(r.case, r.design): (r.outcomes, r.status) for r in ref.results}
    store.close()


def test_sweep_resumes_without_running_twice(client, tmp_path):
    path = str(tmp_path / "r.sqlite")
    store = cluster.Store(path)
    cluster.sweep(client, store, ["linux-5.9"], SOME[:4])
    n = store.count("sweep")
    store.db.execute("DELETE FROM sweep WHERE case_id = ?", (SOME[0],))   # as if the run had stopped there
    store.db.commit()
    ran = []
    m = cluster.sweep(client, store, ["linux-5.9"], SOME[:4], progress=lambda i, t: ran.append(t))
    assert ran and ran[-1] == 1                 # only the missing unit ran again (one task)
    assert store.count("sweep") == n == 4 and len(m.results) == 4
    assert m.table() == compute(["linux-5.9"], SOME[:4]).table()
    store.close()


def test_swarm_finds_every_broken_race(client, tmp_path):
    store = cluster.Store(str(tmp_path / "w.sqlite"))
    checked = 0
    for cid in RACES:                       # each race under the first design it is broken under
        for d in designs.names():
            plain = explore(CowModel(catalog.get(cid), designs.load(d)), por=True)
            if not plain.found:
                continue
            r = cluster.swarm(client, store, cid, d, members=4, seed=11)
            assert set(r["found"]) == {getattr(k, "value", k) for k in plain.found}, (cid, d)
            checked += 1
            break
    assert checked >= 5
    store.close()
