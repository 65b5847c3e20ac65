"""linux-5.8: 5.7 plus 17839856fd58 "gup: document and work around 'COW can
break either way' issue" (v5.8-rc1, backported to 5.7.3 and older stables):
every GUP that takes a reference (FOLL_GET or FOLL_PIN) on a COW mapping is
made FOLL_WRITE, so it breaks COW first; gup-fast only takes pages from
already-writable ptes.  Also c444eb564fb1 (THP split under the page lock,
CVE-2020-29368).  COW reuse is still mapcount-based."""
from __future__ import annotations

from dataclasses import dataclass

from .linux_5_7 import Linux57
from ..kernel.types import FOLL_GET, FOLL_PIN


@dataclass
class Linux58(Linux57):
    name: str = "linux-5.8"
    kernel: str = "v5.7.3 .. v5.8"
    summary: str = "5.7 + GUP forces a COW break (FOLL_WRITE) on COW mappings"
    thp_split_page_lock: bool = True
    huge_zero_wp_thp: bool = False      # 3917c80280c9 (5.8): the huge zero PMD is split, the pte COWs
    sources: tuple = ("17839856fd58 gup: document and work around 'COW can break either way' issue",
                      "c444eb564fb1 mm: thp: make the THP mapcount atomic against __split_huge_pmd_locked()")
    gup_fast_only_writable: bool = True

    def gup_force_write(self, k, vma, gup_flags):
        from ..kernel.fork import is_cow_mapping
        return is_cow_mapping(vma.flags) and bool(gup_flags & (FOLL_GET | FOLL_PIN))


DESIGN = Linux58()
