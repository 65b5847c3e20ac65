"""The anonymous test cases of tools/testing/selftests/mm/cow.c
(``anon_test_cases[]``, torvalds/linux 109364fce504 / 49850bd02658) in the
memory variants ``run_anon_test_case()`` runs them in.  Titles are the
selftest's ("<test> with <variant>"; the base-page case keeps the bare
title).  The sequence of each test follows the C code; its sync pipes become
the script order.

The cases are built at a THP/hugetlb size ``nr`` (``cases(nr)``; by default
the model's HPAGE_PMD_NR, 2 subpages, so "the upper half" of a THP is its
second page); conformance builds them again at the kernel's 512.  The
variants' verdicts do not depend on the size.
"""
from __future__ import annotations

from ..kernel.types import HPAGE_PMD_NR
from ..scenario import Script

SRC = "tools/testing/selftests/mm/cow.c anon_test_cases[] (109364fce504)"

#: variant id -> (title suffix, the address space in THPs/hugetlb pages; 0: one base page)
VARIANTS = {
    "base": ("with base page", 0),
    "swap": ("with swapped out base page", 0),
    "thp": ("with THP", 1),
    "thp-swap": ("with swapped-out THP", 1),
    "pte-thp": ("with PTE-mapped THP", 1),
    "pte-thp-swap": ("with swapped-out, PTE-mapped THP", 1),
    "single-pte-thp": ("with single PTE of THP", 1),
    "single-pte-thp-swap": ("with single PTE of swapped-out THP", 1),
    "partial-mremap-thp": ("with partially mremap()'ed THP", 2),
    "partial-shared-thp": ("with partially shared THP", 1),
    "hugetlb": ("with hugetlb", 1),
}


def variant_pages(variant: str, nr: int = HPAGE_PMD_NR) -> int:
    """The address-space pages of a variant at THP size ``nr``."""
    huge = VARIANTS[variant][1]
    return huge * nr if huge else 1


def _setup(id, title, variant, N):
    """do_run_with_base_page() / do_run_with_thp() / run_with_hugetlb() with
    THPs and hugetlb pages of N subpages: returns (script, parent, size in
    pages of the range under test)."""
    suffix = VARIANTS[variant][0]
    full_title = title if variant == "base" else f"{title} {suffix}"
    s = Script(id, full_title, pages=variant_pages(variant, N), source=SRC, tags=("cow.c", variant),
               hpage_pmd_nr=N)
    p = s.process("parent")
    size = 1
    if variant in ("base", "swap"):
        p.mmap(0, pages=1)
        p.madvise(0, advice="nohugepage")
        p.write(0)                              # memset(mem, 1, pagesize)
        if variant == "swap":
            p.pageout(0)                        # MADV_PAGEOUT
        return s, p, 1
    if variant == "hugetlb":
        p.mmap(0, pages=N, hugetlb=True)
        p.write(0, pages=N)                     # memset(mem, 1, hugetlbsize)
        return s, p, N
    p.mmap(0, pages=N, thp=True)                # aligned to thpsize, MADV_HUGEPAGE
    p.write(0, pages=N)                         # mem[0] = 1 populates the THP; memset(mem, 1, thpsize)
    size = N
    if variant.startswith("pte-thp"):
        p.mprotect(0, pages=1, prot="r")        # mprotect one subpage R and back: PTE-maps the THP
        p.mprotect(0, pages=1, prot="rw")
    elif variant.startswith("single-pte-thp"):
        p.madvise(1, pages=N - 1, advice="dontneed")   # all but the first page
        size = 1
    elif variant == "partial-mremap-thp":
        p.mremap(N // 2, pages=N // 2, new_addr=N + 1)  # move the upper half elsewhere
        size = N // 2
    elif variant == "partial-shared-thp":
        sh = s.process("sharer")
        p.madvise(1, pages=N - 1, advice="dontfork")   # share only the first subpage
        p.fork(sh)
        sh.exit()
        p.madvise(1, pages=N - 1, advice="dofork")
    if variant.endswith("-swap"):
        p.pageout(0, pages=size)                # madvise(mem, size, MADV_PAGEOUT)
    return s, p, size


def cow_in_parent(id, title, variant, N, mprotect=False, vmsplice=False):
    """do_test_cow_in_parent(): child_memcmp_fn / child_vmsplice_memcmp_fn."""
    s, p, n = _setup(id, title, variant, N)
    c = s.process("child")
    p.fork(c)
    c.read(0, pages=n)                          # child: memcpy(old, mem)
    if vmsplice:
        c.vmsplice(0, pages=n, pipe="p")        # vmsplice(fds[1], &iov, 1, 0)
        c.munmap(0, pages=n)
    if mprotect:
        p.mprotect(0, pages=n, prot="r")
        p.mprotect(0, pages=n, prot="rw")
    p.write(0, pages=n)                         # memset(mem, 0xff, size) with the child alive
    if vmsplice:
        c.pipe_read("p")                        # child: read the pipe, compare with old
    else:
        c.read(0, pages=n)                      # child: memcmp(old, mem)
    c.exit()
    return s.build()


def vmsplice_in_parent(id, title, variant, N, before_fork):
    """do_test_vmsplice_in_parent()."""
    s, p, n = _setup(id, title, variant, N)
    c = s.process("child")
    p.read(0, pages=n)                          # memcpy(old, mem)
    if before_fork:
        p.vmsplice(0, pages=n, pipe="p")
    p.fork(c)
    if not before_fork:
        p.vmsplice(0, pages=n, pipe="p")
    p.munmap(0, pages=n)
    c.write(0, pages=n)                         # child: memset(mem, 0xff)
    c.exit()
    p.pipe_read("p")                            # parent: read the pipe, compare with old
    return s.build()


def iouring(id, title, variant, N, use_fork):
    """do_test_iouring(): register (long-term R/W pin), then fork or
    mprotect(R)+clear_softdirty()+mprotect(RW), memset 0xff, write_fixed to a
    file and compare it with memory."""
    s, p, n = _setup(id, title, variant, N)
    p.io_uring_register(0, pages=n, buf="b")
    if use_fork:
        c = s.process("child")
        p.fork(c)
    else:
        p.mprotect(0, pages=n, prot="r")
        p.clear_refs()
        p.mprotect(0, pages=n, prot="rw")
    p.write(0, pages=n)
    p.io_uring_write_fixed(buf="b")
    p.io_uring_unregister(buf="b")
    if use_fork:
        c.exit()
    return s.build()


def ro_pin(id, title, variant, N, test, fast):
    """do_test_ro_pin(): PIN_LONGTERM_TEST_START (R/O, fast or not),
    memset 0xff, PIN_LONGTERM_TEST_READ must see it."""
    s, p, n = _setup(id, title, variant, N)
    if test in ("shared", "previously-shared"):
        c = s.process("child")
        p.fork(c)
        if test == "previously-shared":
            c.exit()
    else:
        p.mprotect(0, pages=n, prot="r")
        p.clear_refs()
        p.mprotect(0, pages=n, prot="rw")
    p.pin_longterm(0, pages=n, fast=fast)
    p.write(0, pages=n)
    p.pin_read()
    p.unpin()
    if test == "shared":
        c.exit()
    return s.build()


#: (id, title, builder, kwargs) in anon_test_cases[] order
TESTS = [
    ("basic-cow-fork", "Basic COW after fork()", cow_in_parent, {}),
    ("basic-cow-fork-mprotect", "Basic COW after fork() with mprotect() optimization", cow_in_parent,
     {"mprotect": True}),
    ("vmsplice-unmap-child", "vmsplice() + unmap in child", cow_in_parent, {"vmsplice": True}),
    ("vmsplice-unmap-child-mprotect", "vmsplice() + unmap in child with mprotect() optimization", cow_in_parent,
     {"mprotect": True, "vmsplice": True}),
    ("vmsplice-before-fork", "vmsplice() before fork(), unmap in parent after fork()", vmsplice_in_parent,
     {"before_fork": True}),
    ("vmsplice-after-fork", "vmsplice() + unmap in parent after fork()", vmsplice_in_parent,
     {"before_fork": False}),
    ("iouring-ro-mapping", "R/O-mapping a page registered as iouring fixed buffer", iouring, {"use_fork": False}),
    ("iouring-fork", "fork() with an iouring fixed buffer", iouring, {"use_fork": True}),
    ("ro-pin-shared", "R/O GUP pin on R/O-mapped shared page", ro_pin, {"test": "shared", "fast": False}),
    ("ro-fast-pin-shared", "R/O GUP-fast pin on R/O-mapped shared page", ro_pin, {"test": "shared", "fast": True}),
    ("ro-pin-previously-shared", "R/O GUP pin on R/O-mapped previously-shared page", ro_pin,
     {"test": "previously-shared", "fast": False}),
    ("ro-fast-pin-previously-shared", "R/O GUP-fast pin on R/O-mapped previously-shared page", ro_pin,
     {"test": "previously-shared", "fast": True}),
    ("ro-pin-exclusive", "R/O GUP pin on R/O-mapped exclusive page", ro_pin, {"test": "exclusive", "fast": False}),
    ("ro-fast-pin-exclusive", "R/O GUP-fast pin on R/O-mapped exclusive page", ro_pin,
     {"test": "exclusive", "fast": True}),
]


def case_id(test_id: str, variant: str) -> str:
    return test_id if variant == "base" else f"{test_id}-{variant}"


def cases(variants=None, nr: int = HPAGE_PMD_NR):
    """The cases of ``variants`` (all by default) with THPs and hugetlb pages
    of ``nr`` subpages."""
    out = []
    for variant in variants or VARIANTS:
        for tid, title, fn, kw in TESTS:
            out.append(fn(case_id(tid, variant), title, variant, nr, **kw))
    return out


# ----------------------------------------------------------------------------- anon_thp_test_cases[]
THP_SRC = ("tools/testing/selftests/mm/cow.c anon_thp_test_cases[] do_test_anon_thp_collapse() (109364fce504; "
           "added by 20230104144905.460075-1-david@redhat.com)")


def anon_thp_collapse(id, title, N, test):
    """do_run_with_thp(THP_RUN_PMD) then do_test_anon_thp_collapse(): a
    PMD-mapped THP of N subpages, PTE-mapped by mprotect()ing its second
    subpage R/O and back; ``test`` is ANON_THP_COLLAPSE_UNSHARED (collapse,
    then fork), _FULLY_SHARED (fork, collapse), _LOWER_SHARED /
    _UPPER_SHARED (MADV_DONTFORK the other half, fork, MADV_DOFORK the whole
    THP so the VMAs merge again, collapse).  The child backs up its part
    (child_memcmp_fn), the parent memsets the whole THP, the child compares.
    When MADV_COLLAPSE fails cow.c reports the test skipped ("MADV_COLLAPSE
    failed: %s"), writes parent_ready without the memset and waits for the
    child; the case runs the memset anyway (a case has no branches) and the
    failure is its ``Error`` effect (``madvise(MADV_COLLAPSE)`` with the
    errno), which the selftest verdict reads (``selftest.judge``)."""
    s = Script(id, title, pages=N, source=THP_SRC, tags=("cow.c", "anon-thp", "collapse"), hpage_pmd_nr=N)
    p, c = s.process("parent"), s.process("child")
    h = N // 2
    p.mmap(0, pages=N, thp=True)                # aligned to the PMD size, MADV_HUGEPAGE
    p.write(0, pages=N)                         # mem[0] = 1 populates the THP; memset(mem, 1, thpsize)
    p.mprotect(1, pages=1, prot="r")            # PTE-map the THP: one subpage R/O ...
    p.mprotect(1, pages=1, prot="rw")           # ... and back
    if test == "unshared":
        p.madvise(0, pages=N, advice="collapse")
    elif test == "lower":
        p.madvise(h, pages=h, advice="dontfork")
    elif test == "upper":
        p.madvise(0, pages=h, advice="dontfork")
    p.fork(c)
    lo, n = {"unshared": (0, N), "fully": (0, N), "lower": (0, h), "upper": (h, h)}[test]
    c.read(lo, pages=n)                         # child_memcmp_fn(): memcpy(old, mem, size)
    if test in ("lower", "upper"):
        p.madvise(0, pages=N, advice="dofork")  # "Revert MADV_DONTFORK such that we merge the VMAs"
    if test != "unshared":
        p.madvise(0, pages=N, advice="collapse")    # "Collapse before anyone modified the COW-shared page"
    p.write(0, pages=N)                         # memset(mem, 0xff, size)
    c.read(lo, pages=n)                         # child: memcmp(old, mem, size)
    c.exit()
    return s.build()


#: (id, title, test) in anon_thp_test_cases[] order
THP_TESTS = [
    ("collapse-before-fork", "Basic COW after fork() when collapsing before fork()", "unshared"),
    ("collapse-after-fork-fully-shared", "Basic COW after fork() when collapsing after fork() (fully shared)",
     "fully"),
    ("collapse-after-fork-lower-shared", "Basic COW after fork() when collapsing after fork() (lower shared)",
     "lower"),
    ("collapse-after-fork-upper-shared", "Basic COW after fork() when collapsing after fork() (upper shared)",
     "upper"),
]


def thp_cases(nr: int = HPAGE_PMD_NR):
    """cow.c's anon_thp_test_cases[] (run_anon_thp_test_cases(): PMD-size THP
    only) with a THP of ``nr`` subpages."""
    return [anon_thp_collapse(tid, title, nr, test) for tid, title, test in THP_TESTS]
