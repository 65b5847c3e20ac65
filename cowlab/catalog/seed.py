"""Cases of the seed thread and its history: Jann Horn's CVE-2020-29374
reproducer and the transient references behind "unnecessary COW"."""
from __future__ import annotations

from ..scenario import Script


def cve_2020_29374():
    """Jann Horn, Project Zero issue 2045 (27 May 2020): the child takes a
    R/O GUP reference with vmsplice(), unmaps, the parent writes; the child
    reads the parent's new data from the pipe.  (reference §1.5)"""
    s = Script("cve-2020-29374", "CVE-2020-29374: vmsplice() in child, unmap, parent writes", pages=1,
               source="Jann Horn, Project Zero issue 2045; CVE-2020-29374", tags=("cve",))
    p, c = s.process("parent"), s.process("child")
    p.mmap(0, pages=1)
    p.write(0)
    p.fork(c)
    c.vmsplice(0, pipe="p")
    c.munmap(0)
    p.write(0)
    c.pipe_read("p")
    c.exit()
    return s.build()


def lru_batch_fresh_page():
    """A fresh page still in the local CPU's lru_add batch (its reference
    counts) is made R/O and written: page_count designs copy for nothing
    (David Hildenbrand, "Summary of COW ... Issues", 3ae33b08-d9ef-f846-56fb-645e3b9b4c66@redhat.com
    §5; fixed for the local CPU by d4c470970d45, 5.18)."""
    s = Script("lru-batch-fresh-page", "fresh page in the local LRU batch, mapped R/O, written", pages=1,
               source="3ae33b08-d9ef-f846-56fb-645e3b9b4c66@redhat.com §5; d4c470970d45", tags=("transient",))
    p = s.process("parent")
    p.mmap(0, pages=1)
    p.write(0)
    p.mprotect(0, prot="r")
    p.mprotect(0, prot="rw")
    p.write(0)
    p.read(0)
    return s.build()


def lru_batch_remote_cpu():
    """As above, but the page was first touched by another thread on another
    CPU: lru_add_drain() only drains the local batch ("We cannot easily
    detect+handle references from remote LRU pagevecs", do_wp_page 5.18)."""
    s = Script("lru-batch-remote-cpu", "fresh page in another CPU's LRU batch, mapped R/O, written", pages=1,
               source="mm/memory.c do_wp_page() comment since d4c470970d45 (5.18)", tags=("transient",))
    p = s.process("parent")
    t = s.cpu("parent", "parent.cpu1")
    p.mmap(0, pages=1)
    t.write(0)
    p.mprotect(0, prot="r")
    p.mprotect(0, prot="rw")
    p.write(0)
    p.read(0)
    return s.build()


def speculative_ref():
    """A previously shared page (fork, child exit) holds a transient
    speculative reference (get_page_unless_zero from a pfn walker) while the
    parent writes: "page_count != 1: 2) [unnecessary COW] can happen easily
    (speculative references due to pagecache, migration, daemon, pagevec, ...)"
    (David Hildenbrand, LKML 18 Dec 2021, the seed)."""
    s = Script("speculative-ref", "speculative reference on a previously-shared page during a write fault",
               pages=1, source="LKML 18 Dec 2021, 40e7e0ab-0828-b2e7-339f-35f68a228b3d@redhat.com",
               tags=("transient",))
    p, c = s.process("parent"), s.process("child")
    t = s.cpu("parent", "parent.cpu1")
    p.mmap(0, pages=1)
    p.write(0)
    p.fork(c)
    c.exit()
    t.speculative_get(0)
    p.write(0)
    t.speculative_put()
    p.read(0)
    return s.build()


def cases():
    return [cve_2020_29374(), lru_batch_fresh_page(), lru_batch_remote_cpu(), speculative_ref()]
