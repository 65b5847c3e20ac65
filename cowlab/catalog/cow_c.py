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

mTHP (anonymous large folios below the PMD size, 6.8+): cow.c runs the
PTE-mapped variants (``MTHP_VARIANTS``; the PMD-mapped ``thp``/``thp-swap``
only exist for the PMD size, run_anon_test_case()) once per enabled
hugepages-<kB>kB size.  Their ids add ``-<kB>k`` (``basic-cow-fork-pte-thp-16k``).
The model runs every mTHP size on a folio of ``MODEL_MTHP_NR`` (4) subpages
with ``hpage_pmd_nr=MODEL_PMD_NR`` (8) and ``thp_sizes=(4,)``: 16 kB, the
smallest size that keeps every page class cow.c touches (the first page, the
rest, the lower and the upper half); ``case_for(..., real=True)`` builds the
kernel's geometry (size/4 kB subpages, hpage_pmd_nr=512).  The catalog
proper has the 16 kB cases (``mthp_cases()``); ``case_for()`` builds the
others on demand.
"""
from __future__ import annotations

from typing import NamedTuple

from ..kernel.types import HPAGE_PMD_NR
from ..scenario import Script

SRC = "tools/testing/selftests/mm/cow.c anon_test_cases[] (109364fce504)"
MTHP_SRC = ("; mTHP sizes: cow.c run_anon_test_case() for each hugepages-<kB>kB below the PMD size "
            "(\"selftests/mm/cow: add tests for anonymous multi-size THP\", Ryan Roberts' mTHP series, 6.8) "
            "on 19eaf44954df (6.8) anonymous mTHP")

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


#: the variants cow.c runs for an mTHP size (below the PMD size): the PTE-mapped ones (run_anon_test_case())
MTHP_VARIANTS = ("pte-thp", "pte-thp-swap", "single-pte-thp", "single-pte-thp-swap", "partial-mremap-thp",
                 "partial-shared-thp")
#: the variants of the PMD size (2048 kB): the PMD-mapped THP too
PMD_VARIANTS = ("thp", "thp-swap") + MTHP_VARIANTS
#: the mTHP sizes (kB) of x86-64 with 4 KiB pages: hugepages-16kB .. hugepages-1024kB (orders 2 .. 8)
MTHP_SIZES_KB = (16, 32, 64, 128, 256, 512, 1024)
#: the PMD THP size and the hugetlb sizes (kB) cow.c meets on x86-64
PMD_SIZE_KB = 2048
HUGETLB_1G_KB = 1048576
#: model geometry of every mTHP size: a folio of 4 subpages under a PMD of 8
MODEL_MTHP_NR = 4
MODEL_PMD_NR = 8
#: the kernel's geometry (x86-64, 4 KiB pages)
REAL_PMD_NR = 512


def variant_pages(variant: str, nr: int = HPAGE_PMD_NR) -> int:
    """The address-space pages of a variant at THP size ``nr``."""
    huge = VARIANTS[variant][1]
    return huge * nr if huge else 1


class Mthp(NamedTuple):
    """The geometry of an mTHP case: the PMD's subpages (the folio's are the
    builder's N) and the size cow.c names (kB)."""
    pmd_nr: int
    kb: int


def _setup(id, title, variant, N, mthp=None):
    """do_run_with_base_page() / do_run_with_thp() / run_with_hugetlb() with
    THPs and hugetlb pages of N subpages: returns (script, parent, size in
    pages of the range under test).  With ``mthp`` (an ``Mthp``) the THP is
    an mTHP of N subpages under a PMD of ``mthp.pmd_nr`` (``thp_sizes=(N,)``):
    the address space is rounded up to whole PMDs, and the PTE-mapping
    mprotect() is the no-op cow.c says it is (the folio is PTE-mapped from
    birth; cow.c mprotects its second subpage, ``mem + pagesize``)."""
    suffix = VARIANTS[variant][0]
    full_title = title if variant == "base" else f"{title} {suffix}"
    if mthp is not None:
        pages = -(-variant_pages(variant, N) // mthp.pmd_nr) * mthp.pmd_nr
        s = Script(id, full_title, pages=pages, source=SRC + MTHP_SRC,
                   tags=("cow.c", variant, "mthp", f"{mthp.kb}k"), hpage_pmd_nr=mthp.pmd_nr,
                   settings={"thp_sizes": (N,)})
    else:
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
    if variant.startswith("pte-thp") and mthp is not None:
        p.mprotect(1, pages=1, prot="r")        # mprotect(mem + pagesize, pagesize, PROT_READ) and back: a no-op
        p.mprotect(1, pages=1, prot="rw")       # for an mTHP (already PTE-mapped)
    elif variant.startswith("pte-thp"):
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


def cow_in_parent(id, title, variant, N, mprotect=False, vmsplice=False, mthp=None):
    """do_test_cow_in_parent(): child_memcmp_fn / child_vmsplice_memcmp_fn."""
    s, p, n = _setup(id, title, variant, N, mthp)
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


def vmsplice_in_parent(id, title, variant, N, before_fork, mthp=None):
    """do_test_vmsplice_in_parent()."""
    s, p, n = _setup(id, title, variant, N, mthp)
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


def iouring(id, title, variant, N, use_fork, mthp=None):
    """do_test_iouring(): register (long-term R/W pin), then fork or
    mprotect(R)+clear_softdirty()+mprotect(RW), memset 0xff, write_fixed to a
    file and compare it with memory."""
    s, p, n = _setup(id, title, variant, N, mthp)
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


def ro_pin(id, title, variant, N, test, fast, mthp=None):
    """do_test_ro_pin(): PIN_LONGTERM_TEST_START (R/O, fast or not),
    memset 0xff, PIN_LONGTERM_TEST_READ must see it."""
    s, p, n = _setup(id, title, variant, N, mthp)
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


def mthp_case_id(test_id: str, variant: str, size_kb: int) -> str:
    """The id of an mTHP case: ``basic-cow-fork-pte-thp-16k``."""
    return f"{case_id(test_id, variant)}-{size_kb}k"


def _test(test_id: str):
    for t in TESTS:
        if t[0] == test_id:
            return t
    raise KeyError(f"no cow.c anon test {test_id!r}")


def mthp_case(test_id: str, variant: str, size_kb: int, folio_nr: int, pmd_nr: int):
    """One cow.c test in an mTHP variant: a folio of ``folio_nr`` subpages
    (the only enabled size, ``thp_sizes=(folio_nr,)``) under a PMD of
    ``pmd_nr``, named for ``size_kb``."""
    if variant not in MTHP_VARIANTS:
        raise KeyError(f"{variant!r} is not an mTHP variant ({', '.join(MTHP_VARIANTS)})")
    tid, title, fn, kw = _test(test_id)
    return fn(mthp_case_id(tid, variant, size_kb), title, variant, folio_nr, mthp=Mthp(pmd_nr, size_kb), **kw)


def mthp_cases(size_kb: int = 16, pmd_nr: int = MODEL_PMD_NR):
    """The cow.c tests in every mTHP variant at model geometry (a folio of
    MODEL_MTHP_NR subpages under a PMD of ``pmd_nr``), named for
    ``size_kb``: the catalog's 16 kB cases (at ``pmd_nr=512`` those are the
    kernel's geometry of 16 kB)."""
    return [mthp_case(t[0], v, size_kb, MODEL_MTHP_NR, pmd_nr) for v in MTHP_VARIANTS for t in TESTS]


def case_for(tid: str, variant: str, size_kb: int = PMD_SIZE_KB, real: bool = False):
    """The model's case for cow.c's test ``tid`` in ``variant`` at THP /
    hugetlb size ``size_kb`` (as cow.c prints it), or None where the model has
    no counterpart: ``base``/``swap`` (the size plays no part); the PMD-size
    variants at 2048 kB (today's catalog cases; ``thp``/``thp-swap`` exist
    only there); the mTHP variants at 16 .. 1024 kB (``-<kB>k``; a folio of
    4 subpages under a PMD of 8 at model geometry, of size/4 kB under 512 with
    ``real``); hugetlb at 2048 kB and at 1 GiB (``-hugetlb-1g``: the same
    behaviour at model geometry; not at the kernel's, 262144 subpages).
    ``real``: the kernel's geometry (x86-64, 4 KiB pages)."""
    from .. import catalog
    _test(tid)
    if variant not in VARIANTS:
        raise KeyError(f"no cow.c variant {variant!r}")
    if variant in ("base", "swap"):
        return catalog.get(case_id(tid, variant), hpage_pmd_nr=REAL_PMD_NR if real else None)
    if variant == "hugetlb":
        if size_kb == PMD_SIZE_KB:
            return catalog.get(case_id(tid, variant), hpage_pmd_nr=REAL_PMD_NR if real else None)
        if size_kb == HUGETLB_1G_KB and not real:
            t, title, fn, kw = _test(tid)
            return fn(case_id(tid, variant) + "-1g", title, variant, HPAGE_PMD_NR, **kw)
        return None
    if size_kb == PMD_SIZE_KB:
        return catalog.get(case_id(tid, variant), hpage_pmd_nr=REAL_PMD_NR if real else None)
    if size_kb not in MTHP_SIZES_KB or variant not in MTHP_VARIANTS:
        return None
    if real:
        return mthp_case(tid, variant, size_kb, size_kb // 4, REAL_PMD_NR)
    return mthp_case(tid, variant, size_kb, MODEL_MTHP_NR, MODEL_PMD_NR)
