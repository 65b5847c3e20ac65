"""KSM cases: ksmd merging identical anonymous pages (mm/ksm.c) and COW of
the KSM page.  Each case marks its pages MADV_MERGEABLE; ``ksm_merge`` is
ksmd merging the two named pages (on the live kernel: ksmd runs until they
share a page or a few full scans pass, then stops)."""
from __future__ import annotations

from ..scenario import Script

SRC_WP = ("mm/ksm.c write_protect_page(): refuses a page with references beyond its mappings and the swap cache "
          "('no O_DIRECT or similar I/O in progress', since 2.6.32); PG_anon_exclusive is dropped (5.19)")
SRC_COW = ("mm/memory.c do_wp_page(): a KSM page is always copied from 5.9 (09854ba94c6a dropped "
           "reuse_ksm_page()); 5.7/5.8 reused it when page_count() == 1")


def _twins(p):
    """Pages 0 and 1 of ``p`` hold the same data in a MADV_MERGEABLE range."""
    p.mmap(0, pages=2)
    p.write(0, value="same")
    p.write(1, value="same")
    p.madvise(0, pages=2, advice="mergeable")


def ksm_merge_write():
    """Two identical pages of one process merged into one KSM page; writing
    either copies it, the other keeps the KSM page."""
    s = Script("ksm-merge-write", "KSM merges two identical pages; each is then written", pages=2,
               source=f"{SRC_WP}; {SRC_COW}; live-kernel probe (cowlab conformance)", tags=("ksm",))
    p = s.process("parent")
    _twins(p)
    p.ksm_merge(0, of="parent", other_addr=1)
    p.write(0)
    p.read(0)
    p.read(1)
    p.write(1)                    # the KSM page is mapped once now
    p.read(1)
    return s.build()


def ksm_fork():
    """A KSM page inherited over fork(): the child's write must not reach the
    parent's mapping of the same KSM page."""
    s = Script("ksm-fork", "KSM page shared with a child over fork(); the child writes", pages=2,
               source=f"{SRC_COW}; live-kernel probe (cowlab conformance)", tags=("ksm",))
    p, c = s.process("parent"), s.process("child")
    _twins(p)
    p.ksm_merge(0, of="parent", other_addr=1)
    p.fork(c)
    c.write(0)
    p.read(0)
    p.read(1)
    c.read(1)
    p.write(1)
    c.read(1)
    c.exit()
    return s.build()


def ksm_pinned_page():
    """ksmd must not merge a page under a long-term pin (io_uring fixed
    buffer): the pin would keep the old page while the process maps the KSM
    page.  Once unpinned, it merges."""
    s = Script("ksm-pinned-page", "KSM leaves a page pinned by io_uring alone; merges it once unpinned", pages=2,
               source=f"{SRC_WP}; live-kernel probe (cowlab conformance)", tags=("ksm",))
    p = s.process("parent")
    _twins(p)
    p.io_uring_register(0, buf="b")
    p.ksm_merge(0, of="parent", other_addr=1)      # refused: the pin holds page 0
    p.io_uring_write_fixed(buf="b")                # the pin still sees what page 0 holds
    p.read(0)
    p.io_uring_unregister(buf="b")
    p.ksm_merge(0, of="parent", other_addr=1)
    p.read(0)
    p.read(1)
    return s.build()


def ksm_pinned_tree_page():
    """The other way round: ksmd scans page 1 and finds its twin, page 0, in
    the unstable tree -- but page 0 is pinned.  try_to_merge_two_pages() has
    already made page 1 a KSM page when page 0 is refused, so break_cow()
    faults page 1 back: a copy (5.9+), reuse_ksm_page() on 5.7/5.8."""
    s = Script("ksm-pinned-tree-page", "ksmd merges page 1, then finds its twin pinned: break_cow()", pages=2,
               source=f"{SRC_WP}; mm/ksm.c try_to_merge_two_pages() -> break_cow(); {SRC_COW}; "
                      "live-kernel probe (cowlab conformance)", tags=("ksm",))
    p = s.process("parent")
    _twins(p)
    p.io_uring_register(0, buf="b")
    p.ksm_merge(1, of="parent", other_addr=0)      # page 1 becomes KSM, page 0 is refused: break_cow(page 1)
    p.read(1)
    p.io_uring_write_fixed(buf="b")
    p.write(1)
    p.read(1)
    p.io_uring_unregister(buf="b")
    return s.build()


def cases():
    return [ksm_merge_write(), ksm_fork(), ksm_pinned_page(), ksm_pinned_tree_page()]
