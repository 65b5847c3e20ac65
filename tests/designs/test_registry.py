"""The designs registry: one list of designs with the kernel releases each models."""
from cowlab import conformance, designs


def test_design_for_release():
    # the same answers as tests/conformance/test_live_kernel.py::test_design_chosen_for_the_host (no live kernel here)
    assert designs.design_for_release("6.18.3")[0] == "linux-6.18"
    assert designs.design_for_release("5.10.200")[0] == "linux-5.9"
    assert designs.design_for_release("6.1.0")[0] == "linux-5.19"
    # the designs' own ranges: linux-6.18 models v6.15 .. v6.18, linux-6.9 v6.9 .. v6.14, linux-6.5 v6.5 .. v6.8;
    # a 6.3 gets linux-5.19 (v5.19 .. v6.1) and is told it is newer
    assert designs.design_for_release("6.15.0")[0] == "linux-6.18"
    assert designs.design_for_release("6.10.2")[0] == "linux-6.9"
    assert designs.design_for_release("6.8.0-45-generic")[0] == "linux-6.5"
    name, note = designs.design_for_release("6.3.1")
    assert name == "linux-5.19" and "newer" in note
    assert "newer" not in designs.design_for_release("6.18.44")[1]


def test_design_for_release_at_the_edges():
    # a stable release names its third number: 17839856fd58 went into v5.7.3 (linux-5.8's range begins there)
    assert designs.design_for_release("5.7.2")[0] == "linux-5.7"
    assert designs.design_for_release("5.7.3")[0] == "linux-5.8"
    name, note = designs.design_for_release("5.7.2-custom")
    assert name == "linux-5.7" and "newer" not in note
    assert designs.design_for_release("5.18.19")[0] == "linux-5.18"
    assert "newer" not in designs.design_for_release("5.18.19")[1]
    name, note = designs.design_for_release("7.1")
    assert name == "linux-6.18" and "newer" in note and "v6.15 .. v6.18" in note
    name, note = designs.design_for_release("4.19.0")
    assert name == "linux-5.7" and "older than every design" in note
    assert designs.design_for_release("not-a-release")[0] == "linux-5.7"


def test_conformance_asks_the_registry():
    assert conformance.design_for_release is designs.design_for_release
    assert not hasattr(conformance, "DESIGN_VERSIONS")


def test_one_list():
    assert designs.names() == [r.name for r in designs.REGISTRY]
    assert designs.BUILTIN == {r.name: r.module for r in designs.REGISTRY}
    for r in designs.REGISTRY:
        assert designs.load(r.name).name == r.name
        assert designs.releases(r.name) == r.releases
    assert designs.releases("./mine.py") is None


def test_ranges_are_ordered_and_match_each_designs_text():
    released = [r for r in designs.REGISTRY if r.releases]
    assert [r.name for r in released] == [n for n in designs.names() if n.startswith("linux-")]
    for r in designs.REGISTRY:
        text = designs.load(r.name).kernel
        if r.releases is None:
            assert not text.startswith("v"), (r.name, text)
            continue
        first, last = r.releases
        assert first <= last, r.name
        assert text == designs.release_text(r.releases), (r.name, text)
    for a, b in zip(released, released[1:]):
        assert a.releases[1] < b.releases[0], (a.name, b.name)      # no release is claimed by two designs
