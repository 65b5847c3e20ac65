"""linux-6.5: 5.19 plus
64fe24a3e05e (6.0): mprotect() maps exclusive anon ptes writable directly
(can_change_pte_writable(): VM_WRITE, soft-dirty not tracked or pte
soft-dirty, PageAnonExclusive);
84209e87c696 / 8d6a0ac09a16 (6.2): R/O long-term pins unshare non-anon pages
(the shared zeropage) in COW mappings too;
6cce3314b928 (6.1): ksmd breaks COW of a KSM page with FAULT_FLAG_UNSHARE;
7d8faaf15545 (6.1): madvise(MADV_COLLAPSE) (khugepaged.py);
a7e689dd1c06 (6.5): O_DIRECT pins with FOLL_PIN (vmsplice stays FOLL_GET),
so gup_must_unshare() unshares a page an O_DIRECT write(2) reads from.
do_wp_page() is 5.19's: a PTE-mapped large folio is still reused by its
refcount (the "last subpage" case) until 6.9.
No anonymous mTHP (``anon_mthp`` False): that is 6.8's 19eaf44954df, which
this design, modelling v6.5 .. v6.7's fault path, leaves out (a v6.8 kernel
with hugepages-<kB>kB enabled below the PMD size is not modelled here);
only the PMD size exists, whatever the case's ``thp_sizes`` says."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .linux_5_19 import Linux519
from ..kernel.types import FOLL_PIN, FOLL_LONGTERM, VM_WRITE, VM_SOFTDIRTY


@dataclass
class Linux65(Linux519):
    name: str = "linux-6.5"
    kernel: str = "v6.5 .. v6.8"
    summary: str = "5.19 + mprotect maps exclusive pages writable, unshare of non-anon, O_DIRECT FOLL_PIN"
    sources: tuple = ("64fe24a3e05e mm/mprotect: try avoiding write faults for exclusive anonymous pages",
                      "84209e87c696 mm/gup: reliable R/O long-term pinning in COW mappings",
                      "a7e689dd1c06 block: Convert bio_iov_iter_get_pages to use iov_iter_extract_pages")
    unshare_non_anon: bool = True
    odirect_gup: int = FOLL_PIN
    break_ksm_unshare: bool = True       # 6cce3314b928 (6.1)
    madv_collapse: bool = True           # 7d8faaf15545 (6.1): madvise(MADV_COLLAPSE)
    SETTINGS: ClassVar[tuple] = ()
    #: MADV_PAGEOUT tests a PTE-mapped large folio for sharing by its first subpage's mapcount
    #: (folio_estimated_sharers(), 2f406263e3e9; v6.5's madvise_cold_or_pageout_pte_range())
    pageout_sharers_head: bool = True

    def gup_must_unshare_non_anon(self, k, gup_flags, pfn):
        return bool(gup_flags & FOLL_LONGTERM)

    def mprotect_make_writable(self, k, vma, pte, pfn, idx):
        """can_change_pte_writable() (6.0+)."""
        if not vma.flags & VM_WRITE:
            return False
        if not vma.flags & VM_SOFTDIRTY and not pte.soft_dirty:
            return False
        return k.PageAnonExclusive(pfn, idx)


DESIGN = Linux65()
