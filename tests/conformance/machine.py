"""The machine knobs the live-kernel runs change and must put back, read for
comparison before and after a run (the live tests share this)."""

WATCHED = ["/proc/sys/vm/nr_hugepages", "/proc/sys/fs/pipe-max-size", "/sys/block/zram0/disksize",
           "/sys/kernel/mm/ksm/run", "/sys/kernel/mm/ksm/sleep_millisecs", "/sys/kernel/mm/ksm/smart_scan",
           "/sys/kernel/mm/ksm/pages_to_scan"]


def values() -> dict:
    """{knob: its value now}, for the knobs this machine has (and every per-size anonymous THP knob,
    hugepages-<kB>kB/enabled, which a case's thp_sizes sets)."""
    import glob
    out = {}
    for p in WATCHED + sorted(glob.glob("/sys/kernel/mm/transparent_hugepage/hugepages-*kB/enabled")):
        try:
            with open(p) as f:
                out[p] = f.read().strip()
        except OSError:
            pass
    return out
