"""Live probe of large-folio swap on this machine's kernel (zram swap, set up and put back by
cowlab.conformance.zram under the machine lock): what tests/kernel/test_swap_large.py expects of linux-6.18.

* MADV_PAGEOUT of a PMD-mapped THP swaps every subpage out (pagemap "swapped" bit);
* with only the PMD size enabled a read fault brings back one 4 KiB page (alloc_swap_folio(): orders below
  PMD_ORDER only);
* with hugepages-16kB enabled (``madvise``) the read fault at subpage 5 brings back subpages 4..7 as one folio
  (242d12c98174): /proc/kpageflags shows a compound head at 4 and tails at 5..7 on consecutive pfns.

Skipped unless COWLAB_LIVE=1, root, zram and mTHP sysfs knobs.  The 16 kB knob is put back on every exit path."""
import ctypes
import mmap
import os
import struct

import pytest

from cowlab.conformance import zram

KNOB = "/sys/kernel/mm/transparent_hugepage/hugepages-16kB/enabled"
PAGE = 4096
PMD = 2 << 20
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_THP = 15, 16, 22
MADV_PAGEOUT = 21          # include/uapi/asm-generic/mman-common.h (the mmap module of Python 3.11 lacks it)

pytestmark = pytest.mark.skipif(os.environ.get("COWLAB_LIVE") != "1" or os.geteuid() != 0
                                or not os.path.exists(KNOB) or not os.path.isdir("/sys/block/zram0"),
                                reason="live: COWLAB_LIVE=1, root, zram and hugepages-16kB")


def _pagemap(addr):
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        v = struct.unpack("<Q", f.read(8))[0]
    return bool(v >> 63 & 1), bool(v >> 62 & 1), v & ((1 << 55) - 1)


def _kpageflags(pfn):
    with open("/proc/kpageflags", "rb") as f:
        f.seek(pfn * 8)
        return struct.unpack("<Q", f.read(8))[0]


def _probe(enable_16k: bool):
    """A THP written, paged out, then read at subpage 5: (present, swapped) of subpages 0..8 and the kpageflags
    of the pfns of subpages 4..7."""
    m = mmap.mmap(-1, 2 * PMD, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        off = (-base) % PMD                       # the 2 MiB-aligned part
        m.madvise(mmap.MADV_HUGEPAGE, off, PMD)
        for i in range(0, PMD, PAGE):
            m[off + i] = 1
        assert _kpageflags(_pagemap(base + off)[2]) >> KPF_THP & 1, "no THP to start with"
        m.madvise(MADV_PAGEOUT, off, PMD)
        before = [_pagemap(base + off + i * PAGE) for i in range(9)]
        old = open(KNOB).read().split("[")[1].split("]")[0]
        try:
            if enable_16k:
                with open(KNOB, "w") as f:
                    f.write("madvise")
            assert m[off + 5 * PAGE] == 1
            after = [_pagemap(base + off + i * PAGE) for i in range(9)]
        finally:
            with open(KNOB, "w") as f:
                f.write(old)
        flags = [_kpageflags(after[i][2]) if after[i][0] else 0 for i in range(4, 8)]
        return before, after, flags
    finally:
        m.close()


def test_a_thp_comes_back_small_unless_an_mthp_size_is_enabled():
    knob_before = open(KNOB).read()
    changed = []
    with zram.machine_lock(), zram.temporary_swap(True, changed) as on:
        if not on:
            pytest.skip("; ".join(changed))
        before, after, _ = _probe(False)
        assert all(sw for _, sw, _ in before), before                      # every subpage swapped out
        assert [p for p, _, _ in after] == [i == 5 for i in range(9)], after
        before, after, flags = _probe(True)
        assert all(sw for _, sw, _ in before), before
        assert [p for p, _, _ in after] == [4 <= i < 8 for i in range(9)], after
        pfns = [after[i][2] for i in range(4, 8)]
        assert pfns == list(range(pfns[0], pfns[0] + 4)) and pfns[0] % 4 == 0, pfns
        assert flags[0] >> KPF_COMPOUND_HEAD & 1 and all(f >> KPF_COMPOUND_TAIL & 1 for f in flags[1:]), flags
    assert open(KNOB).read() == knob_before            # the machine put back
