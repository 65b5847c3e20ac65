"""The per-size anonymous THP knobs (hugepages-<size>kB/enabled) a case's
thp_sizes sets for its real program, on a fake sysfs tree: what is written,
that everything comes back (normal end, exception, Ctrl-C), the undo ledger
a killed run leaves for the next; and the runner's large-folio check."""
import multiprocessing
import os
from types import SimpleNamespace

import pytest

from cowlab.conformance import zram
from cowlab.conformance.runner import case_align, case_thp_sizes, large_folio_problem
from cowlab.conformance.zram import ThpSizes, anon_thp_knobs, choice, machine_lock, temporary_thp_sizes

#: what 6.18 shows in these files (anon_enabled_show(): the selected word in brackets); this machine's
#: values at boot: every mTHP size never, the PMD size inherit; hugepages-8kB has only shmem_enabled
BOOT = {16: "never", 32: "never", 64: "never", 128: "never", 256: "never", 512: "never", 1024: "never",
        2048: "inherit"}
WORDS = ("always", "inherit", "madvise", "never")


def shown(word):
    return " ".join(f"[{w}]" if w == word else w for w in WORDS)


def fake_sysfs(root, values=BOOT):
    for kb, word in values.items():
        d = root / f"hugepages-{kb}kB"
        d.mkdir(parents=True)
        (d / "enabled").write_text(shown(word) + "\n")
        (d / "shmem_enabled").write_text("always inherit within_size advise [never]\n")
    (root / "hugepages-8kB").mkdir()
    (root / "hugepages-8kB" / "shmem_enabled").write_text("always inherit within_size advise [never]\n")
    (root / "enabled").write_text("always [madvise] never\n")
    return str(root)


def state(root):
    return {kb: choice(open(path).read()) for kb, path in anon_thp_knobs(root).items()}


def test_choice_reads_the_selected_word():
    assert choice("always inherit [madvise] never\n") == "madvise"
    assert choice("never") == "never"        # what a write leaves in a fake file


def test_the_anonymous_sizes_are_the_directories_with_an_enabled_file(tmp_path):
    root = fake_sysfs(tmp_path)
    assert sorted(anon_thp_knobs(root)) == [16, 32, 64, 128, 256, 512, 1024, 2048]   # not 8 kB (shmem only)
    assert anon_thp_knobs(str(tmp_path / "missing")) == {}


def test_a_case_size_gets_madvise_and_every_other_size_never(tmp_path):
    root = fake_sysfs(tmp_path)
    changed = []
    k = ThpSizes(changed, root, page_kb=4)
    assert k.apply((4,)) == ""
    assert state(root) == {16: "madvise", 32: "never", 64: "never", 128: "never", 256: "never", 512: "never",
                           1024: "never", 2048: "never"}
    # only the knobs whose value changed were written (16 kB, and the PMD size from inherit)
    assert sorted(changed) == [f"{root}/hugepages-16kB/enabled never -> madvise",
                               f"{root}/hugepages-2048kB/enabled inherit -> never"]
    assert k.apply((4,)) == "" and len(changed) == 2          # the same sizes again: nothing written
    assert k.apply((16, 512)) == ""
    assert state(root)[16] == "never" and state(root)[64] == "madvise" and state(root)[2048] == "madvise"
    assert f"{root}/hugepages-16kB/enabled back to never (restored)" in changed    # its own value again
    k.restore()
    assert state(root) == BOOT


def test_none_is_the_machine_s_own_settings(tmp_path):
    root = fake_sysfs(tmp_path)
    k = ThpSizes([], root, page_kb=4)
    k.apply((8,))
    assert state(root)[32] == "madvise"
    assert k.apply(None) == ""
    assert state(root) == BOOT
    assert k.saved == {}


def test_a_size_the_kernel_lacks_is_refused_and_nothing_is_written(tmp_path):
    root = fake_sysfs(tmp_path)
    changed = []
    k = ThpSizes(changed, root, page_kb=4)
    why = k.apply((4, 2))
    assert "no anonymous THP of 2 pages (8 kB)" in why and "hugepages-8kB/enabled" in why
    assert changed == [] and state(root) == BOOT


@pytest.mark.parametrize("how", ["return", "exception", "ctrl-c"])
def test_every_exit_path_puts_the_knobs_back(tmp_path, how):
    root = fake_sysfs(tmp_path)
    changed = []

    class Boom(Exception):
        pass
    with pytest.raises((Boom, KeyboardInterrupt)) if how != "return" else _nothing():
        with temporary_thp_sizes(changed, root, page_kb=4) as k:
            k.apply((4,))
            assert state(root)[16] == "madvise"
            if how == "exception":
                raise Boom()
            if how == "ctrl-c":
                raise KeyboardInterrupt
    assert state(root) == BOOT
    assert f"{root}/hugepages-16kB/enabled back to never (restored)" in changed
    assert f"{root}/hugepages-2048kB/enabled back to inherit (restored)" in changed


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_the_ledger_holds_each_change_until_it_is_put_back(tmp_path):
    root = fake_sysfs(tmp_path / "sys")
    lock = str(tmp_path / "lock")
    ledger = tmp_path / zram.UNDO_NAME
    with machine_lock(lock):
        with temporary_thp_sizes([], root, page_kb=4) as k:
            k.apply((4,))
            entries = zram._undo_load()
            assert ("write", f"{root}/hugepages-16kB/enabled", "never") in entries
            assert ("write", f"{root}/hugepages-2048kB/enabled", "inherit") in entries
            assert len(entries) == 2
        assert not ledger.exists()


def _killed_with_knobs_set(lock, root):
    with machine_lock(lock):
        ThpSizes([], root, page_kb=4).apply((16,))
        os._exit(9)                      # as SIGKILL: no finally, no restoration


def test_a_killed_run_s_knobs_are_put_back_by_the_next_run(tmp_path):
    root = fake_sysfs(tmp_path / "sys")
    lock = str(tmp_path / "lock")
    p = multiprocessing.get_context("fork").Process(target=_killed_with_knobs_set, args=(lock, root))
    p.start()
    p.join(10)
    assert p.exitcode == 9
    assert state(root)[64] == "madvise" and state(root)[2048] == "never"
    said = []
    with machine_lock(lock, say=said.append):
        assert state(root) == BOOT
    assert any("hugepages-64kB/enabled back to never" in s and "interrupted run" in s for s in said), said


def _case(tags=("pte-thp",), settings=(), nr=512):
    return SimpleNamespace(tags=tags, settings=settings, hpage_pmd_nr=nr)


def test_an_mthp_case_s_range_is_aligned_to_its_size():
    # cow.c do_run_with_thp(): mmap 2 * thpsize, align to thpsize (not to the PMD size)
    assert case_align(_case(settings=(("thp_sizes", (4,)),))) == 4
    assert case_align(_case(settings=(("thp_sizes", (4, 16)),))) == 16
    assert case_align(_case(settings=(("thp_sizes", (4, 512)),))) == 512   # with the PMD size: as today
    assert case_align(_case()) == 512                                     # today's THP variants
    assert case_align(_case(tags=("base",), settings=(("thp_sizes", (4,)),))) == 1
    assert case_thp_sizes(_case(settings=(("thp_sizes", [4]),))) == (4,)
    assert case_thp_sizes(_case()) is None


def _entry(pfn, compound, last=False):
    return {"present": True, "pfn": pfn, "compound": compound, "last": last}


def test_one_folio_of_the_size_passes_the_large_folio_check():
    ok = [("p page 0", 0, _entry(1024, "head")), ("p page 1", 1, _entry(1025, "tail")),
          ("p page 2", 2, _entry(1026, "tail")), ("p page 3", 3, _entry(1027, "tail", last=True))]
    assert large_folio_problem(4, ok) == ""
    # a partly mapped folio (the upper half mremap()ed away, or in another process) is still one folio
    assert large_folio_problem(4, [ok[0], ok[3]]) == ""


def test_small_pages_or_a_wrong_folio_fail_the_large_folio_check():
    small = [("p page 0", 0, _entry(1024, None, True)), ("p page 1", 1, _entry(1025, None, True))]
    assert "no page of a large folio" in large_folio_problem(4, small)
    assert "is not populated" in large_folio_problem(4, [small[0], ("p page 1", 1, {"present": False})])
    scattered = [("p page 0", 0, _entry(1024, "head")), ("p page 1", 1, _entry(2000, "tail"))]
    assert "not at one folio's pfns" in large_folio_problem(4, scattered)
    unaligned = [("p page 0", 0, _entry(1026, "head")), ("p page 1", 1, _entry(1027, "tail"))]
    assert "not at a multiple of 4" in large_folio_problem(4, unaligned)
    bigger = [("p page 0", 0, _entry(1024, "head")), ("p page 3", 3, _entry(1027, "tail", last=False))]
    assert "larger than 4 pages" in large_folio_problem(4, bigger)
    inside_bigger = [("p page 0", 0, _entry(1028, "tail")), ("p page 1", 1, _entry(1029, "tail"))]
    assert "not the head" in large_folio_problem(4, inside_bigger)
