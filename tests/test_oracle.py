"""The oracle can fail: designs that are wrong on purpose must be caught."""
from dataclasses import dataclass

from cowlab.designs.base import REUSE, COPY, SHARE
from cowlab.designs.linux_5_19 import Linux519
from cowlab.designs.linux_5_11 import Linux511


@dataclass
class AlwaysReuse(Linux519):
    """Reuse on every write fault, never unshare."""
    name: str = "always-reuse"

    def wp_anon(self, k, vmf):
        return REUSE

    def gup_must_unshare(self, k, gup_flags, pfn, idx):
        return False


@dataclass
class AlwaysCopy(Linux519):
    """Copy on every write fault."""
    name: str = "always-copy"

    def wp_anon(self, k, vmf):
        return COPY


@dataclass
class ForgetsMapcount(Linux511):
    """Shares a page at fork without dup'ing its rmap (a forgotten count)."""
    name: str = "forgets-mapcount"

    def copy_present_anon(self, k, src_mm, addr, pfn, idx):
        return SHARE


@dataclass
class ForgetsSwapCacheRef(Linux511):
    """Takes a swapped-in page out of the swap cache by clearing PG_swapcache,
    forgetting the reference the swap cache held."""
    name: str = "forgets-swapcache-ref"

    def do_swap_page_map(self, k, vmf, slot, swp_excl, fresh):
        from cowlab.kernel.types import PG_swapcache
        k.clear_flag(vmf.pfn, PG_swapcache)
        return False


def test_always_reuse_misses_cow(run):
    r = run("basic-cow-fork", AlwaysReuse())
    assert r.outcomes["missed"] >= 1
    assert any("wrote page 0" in t for _, k, t in r.events if k == "missed")


def test_always_reuse_leaks_through_vmsplice(run):
    assert run("cve-2020-29374", AlwaysReuse()).outcomes["missed"] >= 1


def test_always_copy_breaks_pins(run):
    r = run("ro-pin-exclusive", AlwaysCopy())
    assert r.outcomes["wrong"] >= 1
    assert r.copies["wrong"] >= 1


def test_always_copy_copies_for_nothing(run):
    r = run("lru-batch-fresh-page", AlwaysCopy())
    assert r.outcomes["unnecessary"] >= 1
    assert r.copies["unnecessary"] >= 1


def test_forgotten_mapcount_trips_model_checks(run):
    r = run("basic-cow-fork", ForgetsMapcount())
    assert any("mapcount" in b for b in r.bugs), r.bugs


def test_forgotten_swapcache_reference_trips_model_checks(run):
    from cowlab.scenario import Script
    s = Script("swapin", pages=1, settings={"swap_device": "disk"})    # a swap-in through the swap cache
    p = s.process("parent")
    p.mmap(0); p.write(0); p.pageout(0); p.read(0)
    r = run(s.build(), ForgetsSwapCacheRef())
    assert any("refcount" in b for b in r.bugs), r.bugs
    assert any("swap slot" in b for b in r.bugs), r.bugs


def test_correct_designs_report_no_model_bugs(run):
    from cowlab import catalog, designs
    for c in catalog.ids():
        for d in designs.names():
            assert not run(c, d).bugs, (c, d)
