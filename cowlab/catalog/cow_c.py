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

``non_anon_cases()`` are the ``non_anon_test_cases[]`` the model can express
(the shared zeropage and the huge zeropage; memfd, tmpfile and memfd hugetlb
are file pages).  ``case_for()`` maps each test cow.c's main() runs (test,
variant, size; ``cowlab.selftest.kernel_tests()``) to its case by the ids
pinned for issue 12 (``kernel_case_id()``), or None where the model has none.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
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
    if variant.startswith("pte-thp"):
        # mprotect(mem + pagesize, pagesize, PROT_READ) and back: PTE-maps a PMD THP (splits the PMD); a no-op for
        # an mTHP, already PTE-mapped
        p.mprotect(1, pages=1, prot="r")
        p.mprotect(1, pages=1, prot="rw")
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


# ----------------------------------------------------------------------------- the rest of cow.c
#: anon_thp_test_cases[] (run_anon_thp_test_cases(), at the PMD size only) as (case id, desc) pairs;
#: case_for() looks them up in the catalog by these ids
COLLAPSE_TESTS = [(tid, desc) for tid, desc, _ in THP_TESTS]

SRC_NON_ANON = "tools/testing/selftests/mm/cow.c non_anon_test_cases[] (109364fce504 / 49850bd02658)"

#: non_anon_test_cases[]: (test id, desc, fn); the case id of a test in a variant is ``<test id>-<variant>``
NON_ANON_TESTS = [
    ("non-anon-cow", "Basic COW", "test_cow"),
    ("ro-pin", "R/O longterm GUP pin", "test_ro_pin"),
    ("ro-fast-pin", "R/O longterm GUP-fast pin", "test_ro_fast_pin"),
]

#: run_non_anon_test_case()'s memory variants: variant -> (title suffix, what the model has: None, the model
#: maps it; else why not).  The huge zeropage runs only with THP (pmdsize), memfd hugetlb once per hugetlb size
NON_ANON_VARIANTS = {
    "zeropage": ("with shared zeropage", None),
    "memfd": ("with memfd", "file pages (a memfd's page cache) are not in the model"),
    "tmpfile": ("with tmpfile", "file pages (a tmpfile's page cache) are not in the model"),
    "huge-zeropage": ("with huge zeropage", None),
    "memfd-hugetlb": ("with memfd hugetlb", "hugetlbfs file pages (memfd hugetlb) are not in the model"),
}


def _non_anon_setup(id, title, variant, N):
    """run_with_zeropage() / run_with_huge_zeropage(): ``mem``, a private
    anonymous R/W mapping, and ``smem``, a second one mapped R/O, both
    populated by a read -- the shared zeropage (FORCE_READ of one byte), or
    with MADV_HUGEPAGE on a PMD-aligned range the huge zero folio
    (do_huge_pmd_anonymous_page(): a read fault maps it, use_zero_page at
    its default, 1).  -> (script, process, pages of each mapping); ``smem``
    starts at page ``n``."""
    huge = variant == "huge-zeropage"
    n = N if huge else 1
    s = Script(id, f"{title} {NON_ANON_VARIANTS[variant][0]}", pages=2 * n, source=SRC_NON_ANON,
               tags=("cow.c-non-anon", variant), hpage_pmd_nr=N)
    p = s.process("parent")
    p.mmap(0, pages=n, thp=huge)                # mem: PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON
    p.mmap(n, pages=n, prot="r", thp=huge)      # smem: PROT_READ
    p.read(0)                                   # FORCE_READ(*mem)
    p.read(n)                                   # FORCE_READ(*smem)
    return s, p, n


def non_anon_cow(id, title, variant, N):
    """test_cow(): memcpy(old, smem), memset(mem, 0xff), smem must still
    read ``old`` ("Other mapping modified" otherwise): the write to the
    zero page must COW it (do_wp_page() -> wp_page_copy(); the huge zero
    PMD: do_huge_pmd_wp_page() allocates a THP or splits, 5.7 .. 6.18)."""
    s, p, n = _non_anon_setup(id, title, variant, N)
    p.read(n, pages=n)                          # memcpy(old, smem, size)
    p.write(0, pages=n)                         # memset(mem, 0xff, size)
    p.read(n, pages=n)                          # memcmp(smem, old, size)
    return s.build()


def non_anon_ro_pin(id, title, variant, N, fast):
    """test_ro_pin() / test_ro_fast_pin(): do_test_ro_pin(RO_PIN_TEST): a
    R/O long-term pin of the zero page mapped there, memset 0xff,
    PIN_LONGTERM_TEST_READ must see it (84209e87c696, 6.2: FOLL_LONGTERM
    unshares the zeropage and the huge zeropage first)."""
    s, p, n = _non_anon_setup(id, title, variant, N)
    p.pin_longterm(0, pages=n, fast=fast)       # PIN_LONGTERM_TEST_START, R/O
    p.write(0, pages=n)                         # memset(mem, 0xff, size)
    p.pin_read()                                # PIN_LONGTERM_TEST_READ
    p.unpin()
    return s.build()


#: the non-anon cases built here; the R/O pins of the shared zeropage are catalog/mutation.py's
#: (``ro-pin-zeropage``, ``ro-fast-pin-zeropage``, the same scenario, older)
_NON_ANON_BUILT = [("non-anon-cow", "zeropage"), ("non-anon-cow", "huge-zeropage"), ("ro-pin", "huge-zeropage"),
                   ("ro-fast-pin", "huge-zeropage")]


def non_anon_cases(nr: int = HPAGE_PMD_NR):
    """The non_anon_test_cases[] the model can express: the shared zeropage
    and the huge zeropage (THPs of ``nr`` subpages)."""
    desc = {t: d for t, d, _ in NON_ANON_TESTS}
    out = []
    for tid, variant in _NON_ANON_BUILT:
        cid = f"{tid}-{variant}"
        if tid == "non-anon-cow":
            out.append(non_anon_cow(cid, desc[tid], variant, nr))
        else:
            out.append(non_anon_ro_pin(cid, desc[tid], variant, nr, fast=tid == "ro-fast-pin"))
    return out


# ----------------------------------------------------------------------------- cow.c's tests -> the model's cases
#: x86-64: the PMD size and the sizes cow.c can detect (hugepages-<kB>kB of anonymous THP: orders 2 .. 9;
#: /sys/kernel/mm/hugepages/: 2 MiB and 1 GiB)
PMD_KB = PMD_SIZE_KB
THP_KB = MTHP_SIZES_KB + (PMD_SIZE_KB,)
HUGETLB_KB = (PMD_SIZE_KB, HUGETLB_1G_KB)
#: the kernel's subpages per PMD THP (x86-64, 4 KiB pages)
KERNEL_PMD_NR = REAL_PMD_NR

THP_VARIANTS = [v for v, (_, huge) in VARIANTS.items() if huge and v != "hugetlb"]
#: run only at the PMD size (THP_RUN_PMD / THP_RUN_PMD_SWAPOUT: ``assert(thpsize == pmdsize)``)
PMD_ONLY = ("thp", "thp-swap")


def kernel_case_id(tid: str, variant: str, size_kb: int | None = None) -> str:
    """The case id of cow.c test ``tid`` in ``variant`` at ``size_kb`` (the
    ids pinned for issue 12): the PMD size (2048 kB) keeps today's
    ``case_id()``, an mTHP size adds ``-<kB>k``, the 1 GiB hugetlb page
    ``-hugetlb-1g``; a non-anon test ``<test>-<variant>`` (``-1g`` for memfd
    hugetlb of 1 GiB); a collapse test is its id."""
    if tid in _COLLAPSE_IDS:
        return tid
    if tid in _NON_ANON_IDS:
        cid = f"{tid}-{variant}"
        return cid + "-1g" if variant == "memfd-hugetlb" and size_kb == 1048576 else cid
    cid = case_id(tid, variant)
    if variant == "hugetlb" and size_kb == 1048576:
        return cid + "-1g"
    if variant in THP_VARIANTS and size_kb not in (None, PMD_KB):
        return f"{cid}-{size_kb}k"
    return cid


_COLLAPSE_IDS = {t for t, _ in COLLAPSE_TESTS}
_NON_ANON_IDS = {t for t, _, _ in NON_ANON_TESTS}
_ANON_IDS = {t[0] for t in TESTS}


def _catalog_case(cid: str, real: bool):
    """The catalog case ``cid`` at the model's geometry, or at the kernel's
    (``real``: ``cases(real=True)`` where the cow.c builder offers it, else
    the catalog case rebuilt at 512 subpages); None if there is none."""
    from . import CatalogError, _all, get
    if cid not in _all():
        return None
    if not real:
        return _all()[cid]
    built = _real_cases()
    if cid in built:
        return built[cid]
    try:
        return get(cid, hpage_pmd_nr=KERNEL_PMD_NR)
    except CatalogError:
        return None


@lru_cache(maxsize=None)
def _real_cases() -> dict:
    """cases(real=True) by id, when cases() takes ``real`` (the kernel's
    geometry for every variant, mTHP sizes included); else {}."""
    import inspect
    if "real" not in inspect.signature(cases).parameters:
        return {}
    return {c.id: c for c in cases(real=True)}


def case_for(tid: str, variant: str, size_kb: int = 2048, real: bool = False):
    """The model's case for cow.c test ``tid`` (an anon_test_cases[] id of
    TESTS, a COLLAPSE_TESTS id, a NON_ANON_TESTS id) in memory ``variant``
    at ``size_kb`` (a THP or hugetlb size in kB; ignored where cow.c has
    none), at the model's geometry or the kernel's (``real``) -> Case, or
    None when the model has none.  Every case is looked up in the catalog by
    its ``kernel_case_id()``, so mTHP and collapse cases appear once the
    catalog has them; the 1 GiB hugetlb variant behaves as the 2 MiB one
    (the same hugetlb paths: hugetlb_wp(), copy_hugetlb_page_range()) and
    is that case under its own id until the catalog has one.  KeyError for
    a test or variant cow.c does not have."""
    if tid in _COLLAPSE_IDS:
        return _catalog_case(tid, real)
    if tid in _NON_ANON_IDS:
        if variant not in NON_ANON_VARIANTS:
            raise KeyError(f"{tid}: no non-anon variant {variant!r}")
        if NON_ANON_VARIANTS[variant][1] is not None:
            return None
        return _catalog_case(kernel_case_id(tid, variant), real)
    if tid not in _ANON_IDS or variant not in VARIANTS:
        raise KeyError(f"cow.c has no test {tid!r} in variant {variant!r}")
    if variant == "hugetlb":
        if size_kb not in HUGETLB_KB:
            return None
        if real and size_kb == HUGETLB_1G_KB:
            return None         # (262144 subpages: not at the kernel's geometry)
        c = _catalog_case(kernel_case_id(tid, variant, size_kb), real)
        if c is None and size_kb == HUGETLB_1G_KB:
            base = _catalog_case(case_id(tid, variant), real)
            if base is not None:
                c = dataclasses.replace(base, id=kernel_case_id(tid, variant, size_kb), title=base.title + " (1 GiB)")
        return c
    if variant in THP_VARIANTS and size_kb != PMD_KB:
        # an mTHP size: built on demand (the catalog has the 16 kB cases at model geometry: the same case)
        if variant not in MTHP_VARIANTS or size_kb not in MTHP_SIZES_KB:
            return None
        if real:
            return mthp_case(tid, variant, size_kb, size_kb // 4, REAL_PMD_NR)
        return mthp_case(tid, variant, size_kb, MODEL_MTHP_NR, MODEL_PMD_NR)
    return _catalog_case(kernel_case_id(tid, variant, size_kb if variant in THP_VARIANTS else None), real)
