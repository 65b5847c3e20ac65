"""Live probe: does madvise(MADV_COLLAPSE) collapse a PTE-mapped anonymous THP
in cow.c's four anon_thp_test_cases[] setups on this kernel?  Prints, per
setup, AnonHugePages of the range before and after PTE-mapping it, the
madvise() result and AnonHugePages after the collapse.  Changes no sysfs
knob (needs THP enabled=madvise or always); no swap.

    python tools/probe_madv_collapse.py unshared fully lower upper

On this machine (6.18.44, 2026-12-02) every setup collapses (madvise() 0,
2048 kB PMD-mapped after), the fully shared one included: the range's ptes
are all R/O after fork(), so 6.18 has dropped the SCAN_PAGE_RO test.
"""
import ctypes, ctypes.util, os, mmap, sys
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MADV_HUGEPAGE, MADV_COLLAPSE, MADV_DONTFORK, MADV_DOFORK = 14, 25, 10, 11
PS = 4096; THP = 2 << 20
def anonhuge(addr):
    with open("/proc/self/smaps") as f:
        cur = None
        for line in f:
            if "-" in line.split()[0] and len(line.split()) >= 5:
                lo, hi = [int(x, 16) for x in line.split()[0].split("-")]
                cur = lo <= addr < hi
            elif cur and line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    return None
def run(test):
    raw = libc.mmap(None, 2 * THP, 3, 0x22, -1, 0)
    mem = (raw + THP) & ~(THP - 1)
    assert libc.madvise(mem, THP, MADV_HUGEPAGE) == 0
    ctypes.memset(mem, 1, THP)
    before = anonhuge(mem)
    libc.mprotect(mem + PS, PS, 1); libc.mprotect(mem + PS, PS, 3)
    pte_mapped = anonhuge(mem)
    if test == "unshared":
        r = libc.madvise(mem, THP, MADV_COLLAPSE); e = ctypes.get_errno()
        print(test, "thp", before, "after-mprotect", pte_mapped, "collapse", r, os.strerror(e) if r else "", "after", anonhuge(mem)); return
    if test == "lower": libc.madvise(mem + THP // 2, THP // 2, MADV_DONTFORK)
    if test == "upper": libc.madvise(mem, THP // 2, MADV_DONTFORK)
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(rd, 1); os._exit(0)
    if test in ("lower", "upper"): libc.madvise(mem, THP, MADV_DOFORK)
    r = libc.madvise(mem, THP, MADV_COLLAPSE); e = ctypes.get_errno()
    print(test, "thp", before, "after-mprotect", pte_mapped, "collapse", r, os.strerror(e) if r else "", "after", anonhuge(mem))
    os.write(wr, b"0"); os.waitpid(pid, 0)
for t in sys.argv[1:]: run(t)
