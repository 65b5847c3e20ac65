"""linux-5.11: 5.9 plus
57efa1fe5957 "mm/gup: prevent gup_fast from racing with COW during fork"
(write_protect_seq; FOLL_PIN gup-fast only; v5.11-rc1, 5.10.4 stable),
feb889fb40fa "mm: don't put pinned pages into the swap cache" (v5.11-rc5:
shrink_page_list keeps maybe-pinned anon pages not yet in the swap cache),
9348b73c2e1b "mm: don't play games with pinned pages in clear_page_refs"
(v5.11-rc5: soft-dirty clearing leaves writable maybe-pinned ptes alone).
Also the model of the kernels of the Dec 2021 thread (5.16): COW rules unchanged."""
from __future__ import annotations

from dataclasses import dataclass

from .linux_5_9 import Linux59


@dataclass
class Linux511(Linux59):
    name: str = "linux-5.11"
    kernel: str = "v5.11 .. v5.17"
    summary: str = "5.9 + write_protect_seq vs gup-fast; pinned pages kept out of swap and soft-dirty"
    sources: tuple = ("57efa1fe5957 mm/gup: prevent gup_fast from racing with COW during fork",
                      "feb889fb40fa mm: don't put pinned pages into the swap cache",
                      "9348b73c2e1b mm: don't play games with pinned pages in clear_page_refs")
    write_protect_seq: bool = True

    def may_add_to_swap(self, k, pfn):
        return not (not k.PageSwapCache(pfn) and k.folio_maybe_dma_pinned(pfn))

    def clear_refs_skip(self, k, mm, pfn):
        return k.mm_has_pinned(mm) and k.folio_maybe_dma_pinned(pfn)


DESIGN = Linux511()
