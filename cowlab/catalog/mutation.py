"""Cases that mutation testing asked for (``python tools/mutate.py``): each
kills a seeded design bug that every other catalog case let through (or
caught only by the model's own invariant checks) -- pinned pages meeting
reclaim, soft-dirty tracking and migration, R/O
long-term pins of the shared zeropage (cow.c's non-anonymous tests), and a
write-fault swap-in while a third process still holds the swap entry.
Expected verdicts per design, with their sources, are in
tests/catalog/test_mutation_cases.py."""
from __future__ import annotations

from ..scenario import Script


def iouring_pageout():
    """The scenario of feb889fb40fa ("mm: don't put pinned pages into the
    swap cache", v5.11-rc5): a page registered as an io_uring fixed buffer
    is MADV_PAGEOUT'ed.  Before the fix reclaim adds it to the swap cache and
    try_to_unmap() replaces its pte by a swap entry (the pin keeps the page
    in memory); the next read maps it back R/O and the write then COWs it
    away from the pin."""
    s = Script("iouring-pageout", "MADV_PAGEOUT of a page registered as an io_uring fixed buffer, then read and write",
               pages=1, source="feb889fb40fa mm: don't put pinned pages into the swap cache", tags=("pin",))
    p = s.process("parent")
    p.mmap(0, pages=1)
    p.write(0)
    p.io_uring_register(0, buf="b")
    p.pageout(0)
    p.read(0)
    p.write(0)
    p.io_uring_write_fixed(buf="b")         # must see the write
    p.io_uring_unregister(buf="b")
    return s.build()


def iouring_swapcache_pageout_fork():
    """A swapped-out page is read back (it stays in the swap cache, its swap
    pte was exclusive), registered as an io_uring fixed buffer, paged out
    again, then the process forks and writes.  feb889fb40fa only keeps
    pinned pages from being *added* to the swap cache; from 5.19
    try_to_unmap_one() refuses to unmap a pinned exclusive page
    (page_try_share_anon_rmap() -EBUSY), so the page stays mapped and fork
    copies it for the child."""
    s = Script("iouring-swapcache-pageout-fork",
               "page in the swap cache registered as an io_uring fixed buffer, paged out again, then fork()",
               pages=1, source="mm/rmap.c try_to_unmap_one() page_try_share_anon_rmap() (6c287605fd56, 5.19)",
               tags=("pin", "swap"), settings={"swap_device": "disk"})
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=1)
    p.write(0)
    p.pageout(0)
    p.read(0)                               # swap-in, R/O; the page stays in the swap cache (a disk: on zram
    #                                         do_swap_page() would skip the swap cache)
    p.io_uring_register(0, buf="b")
    p.pageout(0)                            # already in the swap cache: only try_to_unmap() can refuse
    p.fork(c)
    p.write(0)
    p.io_uring_write_fixed(buf="b")         # must see the write
    p.io_uring_unregister(buf="b")
    c.read(0)                               # must not see it
    c.exit()
    return s.build()


def iouring_clear_refs():
    """The scenario of 9348b73c2e1b ("mm: don't play games with pinned pages
    in clear_page_refs", v5.11-rc5): clearing the soft-dirty bits
    (``echo 4 > /proc/self/clear_refs``) write-protects the pte of a page
    registered as an io_uring fixed buffer; the next write COWs it."""
    s = Script("iouring-clear-refs",
               "clear_refs soft-dirty on a page registered as an io_uring fixed buffer, then write",
               pages=1, source="9348b73c2e1b mm: don't play games with pinned pages in clear_page_refs", tags=("pin",))
    p = s.process("parent")
    p.mmap(0, pages=1)
    p.write(0)
    p.io_uring_register(0, buf="b")
    p.clear_refs()
    p.write(0)
    p.io_uring_write_fixed(buf="b")         # must see the write
    p.io_uring_unregister(buf="b")
    return s.build()


def ro_pin_zeropage(fast: bool):
    """cow.c's non-anonymous test "R/O longterm GUP(-fast) pin ... with shared
    zeropage" (run_with_zeropage(), 97713a3abe33): a private anonymous page
    read first maps the shared zeropage; a R/O long-term pin of it, then a
    write, must be seen through the pin (84209e87c696, 6.2: unshare first)."""
    kind = "GUP-fast" if fast else "GUP"
    s = Script(f"ro-{'fast-' if fast else ''}pin-zeropage", f"R/O longterm {kind} pin ... with shared zeropage",
               pages=1, source="tools/testing/selftests/mm/cow.c non_anon_test_cases[] (97713a3abe33)",
               tags=("cow.c-non-anon",))
    p = s.process("parent")
    p.mmap(0, pages=1)
    p.madvise(0, advice="nohugepage")
    p.read(0)                               # FORCE_READ(*mem): the shared zeropage
    p.pin_longterm(0, fast=fast)            # PIN_LONGTERM_TEST_START, R/O
    p.write(0)                              # memset(mem, 0xff)
    p.pin_read()                            # PIN_LONGTERM_TEST_READ must see it
    p.unpin()
    return s.build()


def swapin_write_third_sharer():
    """A page shared by three processes is swapped out.  One of them swaps it
    in (read) and exits: the page stays in the swap cache, off the LRU batch
    (drained), referenced by the swap cache alone.  The parent's write fault
    swaps it in while the third process still holds its swap entry: the
    page must be copied, not mapped writable (the third process would read
    the parent's data on its own swap-in)."""
    s = Script("swapin-write-third-sharer", "write-fault swap-in of a page whose swap entry a third process holds",
               pages=1, source="mm/memory.c do_swap_page() c145e0b47c77 (5.18); mm/swapfile.c reuse_swap_page() "
                               "v5.7", tags=("swap",))
    p, c1, c2 = s.process("parent"), s.process("child1"), s.process("child2")
    p.mmap(0, pages=1)
    p.write(0)
    p.fork(c1)
    p.fork(c2)
    p.pageout(0, shared_ok=True)            # reclaim unmaps all three mappings
    c1.read(0)                              # swap-in: the page enters the swap cache
    c1.lru_add_drain()                      # its lru_add batch drained (full, or lru_add_drain_all())
    c1.exit()                               # the swap cache alone holds the page
    p.write(0)
    c2.read(0)                              # must read what the parent wrote before fork
    c2.exit()
    return s.build()


def migrate_iouring_fork():
    """A page migrated (compaction, NUMA balancing) before it is registered
    as an io_uring fixed buffer, then fork: migration must keep the page
    exclusive (a writable migration entry maps the new page RMAP_EXCLUSIVE,
    6c287605fd56), or fork shares the pinned page and the parent's write
    COWs it away from the pin."""
    s = Script("migrate-iouring-fork", "migrated page registered as an io_uring fixed buffer, then fork()", pages=1,
               source="mm/migrate.c remove_migration_pte(), 6c287605fd56 (5.19)", tags=("pin", "migrate"))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=1)
    p.write(0)
    p.migrate(0)
    p.io_uring_register(0, buf="b")
    p.fork(c)
    p.write(0)
    p.io_uring_write_fixed(buf="b")         # must see the write
    p.io_uring_unregister(buf="b")
    c.exit()
    return s.build()


def migrate_pinned():
    """Migration of a page registered as an io_uring fixed buffer: it fails
    (the pin's references make folio_migrate_mapping()'s refcount freeze
    fail; from 5.19 try_to_migrate_one() refuses earlier) and the process
    keeps mapping the pinned page."""
    s = Script("migrate-pinned", "migration of a page registered as an io_uring fixed buffer fails", pages=1,
               source="mm/migrate.c folio_migrate_mapping() refcount freeze; mm/rmap.c try_to_migrate_one() (5.19)",
               tags=("pin", "migrate"))
    p = s.process("parent")
    p.mmap(0, pages=1)
    p.write(0)
    p.io_uring_register(0, buf="b")
    p.migrate(0)
    p.write(0)
    p.io_uring_write_fixed(buf="b")         # must see the write
    p.io_uring_unregister(buf="b")
    return s.build()


def cases():
    return [iouring_pageout(), iouring_swapcache_pageout_fork(), iouring_clear_refs(), ro_pin_zeropage(False),
            ro_pin_zeropage(True), swapin_write_third_sharer(), migrate_iouring_fork(), migrate_pinned()]
