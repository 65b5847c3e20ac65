"""Import every module that registers steps and operations."""
from . import fork, sync  # noqa: F401
from .mm import memory, gup, mmap, vmscan, agents, ksm, migrate, gup_test, huge_memory, hugetlb, khugepaged  # noqa: F401
from .fs import splice, direct_io  # noqa: F401
from .io_uring import rsrc  # noqa: F401
