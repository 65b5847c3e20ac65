/*
 * race-fork-gup-fast by hand, for timing against cowlab (benchmarks/bench_spin.py).
 * fork's copy_present_pte() (early-COW check, then write-protect and share)
 * against pin_user_pages_fast(FOLL_WRITE) (B1 read pte, B3 grab, B4 re-check,
 * end: write_protect_seq retry).  The question: can the parent end up with a
 * pin on a page it shares with the child?  WPSEQ=0 models 5.9/5.10 (no
 * write_protect_seq, broken), WPSEQ=1 models 5.11+ (57efa1fe5957, safe).
 */
#ifndef WPSEQ
#define WPSEQ 1
#endif

bool pte_write = true;   /* parent's pte writable */
bool shared = false;     /* page shared with the child */
byte pins = 0;           /* FOLL_PIN references on the page */
byte seq = 0;            /* mm->write_protect_seq */
bool fork_done = false;
bool gup_done = false;
bool pinned = false;     /* gup-fast succeeded */
bool mmap_locked = false;

active proctype fork_() {
    bool copy;
    atomic { !mmap_locked -> mmap_locked = true; if :: WPSEQ -> seq++ :: else -> skip fi }
    /* copy_present_pte(), first step: page_maybe_dma_pinned() */
    atomic { copy = (pins > 0) }
    /* second step: write-protect and share, unless copied for the child */
    atomic { if :: !copy -> pte_write = false; shared = true :: else -> skip fi }
    atomic { if :: WPSEQ -> seq++ :: else -> skip fi; mmap_locked = false; fork_done = true }
}

active proctype gup_fast() {
    byte s; bool w;
    atomic { s = seq }
    if
    :: (s % 2 == 1) -> goto slow
    :: else -> skip
    fi;
    atomic { w = pte_write }              /* B1 */
    if :: !w -> goto slow :: else -> skip fi;
    atomic { pins++ }                     /* B3 */
    atomic {                              /* B4 */
        if :: pte_write != w -> pins--; goto slow :: else -> skip fi
    }
    atomic {                              /* end: read_seqcount_retry */
        if :: (WPSEQ && seq != s) -> pins--; goto slow :: else -> pinned = true; goto done fi
    }
slow:
    /* slow GUP under mmap_lock: a write fault breaks COW first, then pins a private page */
    atomic { !mmap_locked -> mmap_locked = true }
    atomic { if :: shared -> shared = false; pte_write = true :: else -> skip fi; pins++; pinned = true;
             mmap_locked = false }
done:
    gup_done = true
}

active proctype check() {
    (fork_done && gup_done);
    assert(!(pinned && shared))
}
