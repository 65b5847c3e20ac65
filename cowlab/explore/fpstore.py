"""The visited store of hash compaction (``explore(..., fingerprints=True)``).

States are numbered in the order they are found (0 is the initial state) and
kept as flat arrays, about 20 bytes a state and no Python object per state
(as TLC's and SPIN's fingerprint sets):

* ``fps[i]``: state i's 64-bit fingerprint;
* ``parent[i]``, ``tid[i]``: the link that first reached it (the parent's
  number and the thread that stepped);
* ``depth[i]``: only when asked (the cycle proviso of static POR);
* an open-addressing hash table ``slots`` (linear probing, at most half
  full) of state numbers + 1, 0 for an empty slot: fingerprint -> number;
* ``perm``: {i: thread renaming} only for the links that had one (symmetry
  over processes: ``canonical_perm``).

Step labels are not stored: a trace is rebuilt by replaying the link's
thread ids from the initial state through ``model.step`` (``trace``), which
gives the labels and reaches the very states the search stored (steps and
representatives are deterministic).

``DiskQueue`` is the breadth-first frontier on disk, so that a search's
memory is bounded by this store rather than by the states waiting to be
expanded.
"""
from __future__ import annotations

import pickle
import tempfile
from array import array
from collections import deque

NO_PARENT = 0xFFFFFFFF

#: how many frontier items ``DiskQueue`` pickles into one record on disk
DISK_CHUNK = 1024


class FingerprintStore:
    def __init__(self, nthreads: int, with_depth: bool = False, slots: int = 1 << 12):
        self.fps = array("Q")
        self.parent = array("I")
        self.tid = array("B" if nthreads < 256 else "H")
        self.depth = array("I") if with_depth else None
        self.perm = {}
        self.slots = array("I", [0]) * slots
        self.mask = slots - 1
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def find(self, fp: int) -> int:
        """The number of the state with fingerprint ``fp``, or -1."""
        slots, fps, mask = self.slots, self.fps, self.mask
        i = fp & mask
        while True:
            j = slots[i]
            if not j:
                return -1
            if fps[j - 1] == fp:
                return j - 1
            i = (i + 1) & mask

    def add(self, fp: int, parent: int, tid: int, perm=None, depth: int = 0) -> int:
        """Store a state reached from ``parent`` by thread ``tid`` (``perm``:
        the thread renaming of the link, or None) and return its number;
        -1 when its fingerprint is already stored (nothing changes)."""
        slots, fps, mask = self.slots, self.fps, self.mask
        i = fp & mask
        while True:
            j = slots[i]
            if not j:
                break
            if fps[j - 1] == fp:
                return -1
            i = (i + 1) & mask
        n = self.n
        slots[i] = n + 1
        fps.append(fp)
        self.parent.append(parent)
        self.tid.append(tid)
        if self.depth is not None:
            self.depth.append(depth)
        if perm is not None:
            self.perm[n] = perm
        self.n = n + 1
        if 2 * self.n > mask:
            self._grow()
        return n

    def _grow(self) -> None:
        size = 2 * (self.mask + 1)
        mask = size - 1
        slots = array("I", [0]) * size
        for n, fp in enumerate(self.fps):
            i = fp & mask
            while slots[i]:
                i = (i + 1) & mask
            slots[i] = n + 1
        self.slots, self.mask = slots, mask

    def links(self, i: int) -> list:
        """[(tid, thread renaming or None)] of the links from the initial state to state ``i``."""
        out = []
        parent, tid, perm = self.parent, self.tid, self.perm
        while True:
            p = parent[i]
            if p == NO_PARENT:
                break
            out.append((tid[i], perm.get(i)))
            i = p
        out.reverse()
        return out

    def trace(self, model, start, i: int, canon):
        """The links to state ``i`` as ``_trace``'s parent records [(None, tid,
        label[, renaming])]: replayed from ``start`` (the search's initial
        state) by ``model.step`` and ``canon`` (state -> (representative,
        renaming or None)), which the search applied to each successor."""
        out = []
        s = start
        for k, (tid, tm) in enumerate(self.links(i)):
            tr = model.step(s, tid)
            if tr is None:
                raise AssertionError(f"fingerprint store: link {k} (thread {tid}) does not replay")
            s, _ = canon(tr.state)         # (the renaming is the stored one)
            out.append((None, tid, tr.label) if tm is None else (None, tid, tr.label, tm))
        return out

    def nbytes(self) -> int:
        """The arrays' size in bytes (without ``perm``)."""
        arrs = [self.fps, self.parent, self.tid, self.slots] + ([self.depth] if self.depth is not None else [])
        return sum(a.itemsize * len(a) for a in arrs)


class DiskQueue:
    """A first-in first-out queue of picklable items spooled to a temporary
    file (TLC's disk-backed state queue): ``frontier="disk"``.  Items are
    appended to an in-memory tail; every ``chunk`` items the tail is pickled
    as one record (one pickle per chunk keeps the sharing between the states
    of a chunk) and written at the file's end; ``popleft`` takes from the
    head, which is the oldest chunk read back (or, with nothing on disk, the
    tail).  At most two chunks of items are in memory; the file is emptied
    whenever every chunk written has been read back."""

    def __init__(self, items=(), chunk: int | None = None):
        self.chunk = chunk or DISK_CHUNK
        self.file = None
        self.chunks = deque()          # (offset, length) of the records on disk, oldest first
        self.head = deque(items)
        self.tail = []
        self.end = 0                   # where the next record is written
        self.spilled = 0               # records written (for the report)

    def __len__(self) -> int:
        return len(self.head) + self.chunk * len(self.chunks) + len(self.tail)

    def append(self, item) -> None:
        self.tail.append(item)
        if len(self.tail) >= self.chunk:
            if self.file is None:
                self.file = tempfile.TemporaryFile(prefix="cowlab-frontier-")
            data = pickle.dumps(self.tail, pickle.HIGHEST_PROTOCOL)
            self.file.seek(self.end)
            self.file.write(data)
            self.chunks.append((self.end, len(data)))
            self.end += len(data)
            self.spilled += 1
            self.tail = []

    def popleft(self):
        if not self.head:
            if self.chunks:
                off, n = self.chunks.popleft()
                self.file.seek(off)
                self.head = deque(pickle.loads(self.file.read(n)))
                if not self.chunks:        # everything written has been read: start the file again
                    self.file.seek(0)
                    self.file.truncate()
                    self.end = 0
            else:
                self.head, self.tail = deque(self.tail), []
        return self.head.popleft()

    def clear(self) -> None:
        self.head.clear()
        self.tail = []
        self.chunks.clear()
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
