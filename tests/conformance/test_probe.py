"""Probe helpers that need no root: where O_DIRECT files go, and the KPF
bits the comparison reads."""
import os

import pytest

from cowlab.conformance import probe


def test_fs_type_reads_mountinfo():
    assert probe.fs_type("/proc/self") == "proc"
    assert probe.fs_type("/") != ""


def test_odirect_dir_avoids_filesystems_without_gup(monkeypatch):
    # tmpfs accepts O_DIRECT (6.6+) but copies through the page cache: no GUP, so nothing to observe
    if not os.path.isdir("/dev/shm") or probe.fs_type("/dev/shm") != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    monkeypatch.setenv("COWLAB_ODIRECT_DIR", "/dev/shm")
    try:
        d = probe.odirect_dir()
    except probe.Unsupported as e:
        assert "tmpfs" in str(e)
    else:
        assert probe.fs_type(d) in probe.GUP_FS


def test_kpageflags_bits():
    # include/uapi/linux/kernel-page-flags.h: KPF_ANON 12, KPF_KSM 21; bit 34 (KPF_MAPPEDTODISK) shows
    # PG_anon_exclusive on anonymous pages, the flag it aliases (include/linux/page-flags.h)
    assert (probe.KPF_ANON, probe.KPF_KSM, probe.KPF_ANON_EXCLUSIVE) == (12, 21, 34)
