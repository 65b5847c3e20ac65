/*
 * race-swapin-mapcount (the seed: LKML 17/18 Dec 2021, Linus Torvalds / David
 * Hildenbrand) by hand, for timing against cowlab (benchmarks/bench_spin.py).
 *
 * After fork and reclaim the page is in the swap cache; the parent has swapped
 * it back in R/O (mapcount 1), the child still has its swap entry (swapcount
 * 1).  The parent's write fault decides with page_anon_shared(): mapcount +
 * swapcount > 1 means copy.  The child's do_swap_page() maps the page
 * (page_add_anon_rmap: mapcount++) and then drops its swap entry (swap_free:
 * swapcount--), both under the page lock.  PAGE_LOCK=1: the parent reads the
 * predicate under the page lock too (rfc-page-anon-shared, safe); PAGE_LOCK=0:
 * mapcount and swapcount are two loads the child's swapin can fall between
 * (rfc-page-anon-shared:page_lock=false, broken: the parent reuses the page
 * the child now maps, a missed COW).
 */
#ifndef PAGE_LOCK
#define PAGE_LOCK 1
#endif

byte mapcount = 1;       /* the parent's R/O pte */
byte swapcount = 1;      /* the child's swap entry */
bool page_locked = false;
bool child_maps = false; /* the child's pte maps the page */
bool reused = false;     /* the parent's write fault reused the page */
bool parent_done = false;
bool child_done = false;

active proctype parent_write_fault() {
    byte m;
    if :: PAGE_LOCK -> atomic { !page_locked -> page_locked = true } :: else -> skip fi;
    atomic { m = mapcount }                    /* page_mapcount() */
    atomic { reused = (m + swapcount <= 1) }   /* + page_swapcount(): reuse iff not shared */
    if :: PAGE_LOCK -> page_locked = false :: else -> skip fi;
    parent_done = true
}

active proctype child_do_swap_page() {
    atomic { !page_locked -> page_locked = true }      /* lock_page() */
    atomic { mapcount++; child_maps = true }           /* set_pte_at + page_add_anon_rmap */
    atomic { swapcount-- }                             /* swap_free() */
    page_locked = false;                               /* unlock_page() */
    child_done = true
}

active proctype check() {
    (parent_done && child_done);
    assert(!(reused && child_maps))                    /* the child would see the parent's write */
}
