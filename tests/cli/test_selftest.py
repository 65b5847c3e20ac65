"""Issue 12 item 5: ``cowlab selftest`` names, orders and counts its tests as
tools/testing/selftests/mm/cow.c does, ``--sizes``, and ``--compare KTAP``.

Expected names and counts come from cow.c itself (torvalds/linux 109364fce504
and 49850bd02658: main(), run_anon_test_case(), run_non_anon_test_case(),
ksft_set_plan()) and from real runs posted to LKML, quoted below; the KTAP
excerpts the parser reads are in cow.c's two real formats."""
import dataclasses
import json
import re

import pytest
from click.testing import CliRunner

from cowlab import catalog, designs, ktap, selftest as st
from cowlab.catalog import cow_c
from cowlab.cli import main

# A real cow.c run on x86-64 with every mTHP size (David Hildenbrand on linux-mm, reply to "selftests/mm: Report
# unique test names for each cow test", 2025): the plan and the first tests, as printed.
LKML_RUN_HEAD = """\
TAP version 13
# [INFO] detected PMD size: 2048 KiB
# [INFO] detected THP size: 16 KiB
# [INFO] detected THP size: 32 KiB
# [INFO] detected THP size: 64 KiB
# [INFO] detected THP size: 128 KiB
# [INFO] detected THP size: 256 KiB
# [INFO] detected THP size: 512 KiB
# [INFO] detected THP size: 1024 KiB
# [INFO] detected THP size: 2048 KiB
# [INFO] detected hugetlb page size: 2048 KiB
# [INFO] detected hugetlb page size: 1048576 KiB
# [INFO] huge zeropage is enabled
1..778
# [INFO] Anonymous memory tests in private mappings
# [RUN] Basic COW after fork() ... with base page
ok 1 No leak from parent into child
# [RUN] Basic COW after fork() ... with swapped out base page
ok 2 No leak from parent into child
# [RUN] Basic COW after fork() ... with PTE-mapped THP (16 kB)
ok 3 No leak from parent into child
# [RUN] Basic COW after fork() ... with swapped-out, PTE-mapped THP (16 kB)
ok 4 No leak from parent into child
# [RUN] Basic COW after fork() ... with single PTE of THP (16 kB)
ok 5 No leak from parent into child
# [RUN] Basic COW after fork() ... with single PTE of swapped-out THP (16 kB)
ok 6 No leak from parent into child
# [RUN] Basic COW after fork() ... with partially mremap()'ed THP (16 kB)
ok 7 No leak from parent into child
# [RUN] Basic COW after fork() ... with partially shared THP (16 kB)
ok 8 No leak from parent into child
# [RUN] Basic COW after fork() ... with PTE-mapped THP (32 kB)
ok 9 No leak from parent into child
"""


def cli(*args):
    return CliRunner().invoke(main, list(args))


def _names(text):
    return [line[len("# [RUN] "):] for line in text.splitlines() if line.startswith("# [RUN] ")]


# ----------------------------------------------------------------------------- the kernel's list
def test_778_tests_at_x86_64s_sizes_in_cow_c_order():
    """778: the LKML run above ('1..778'; 20240502085259.103784-2-david@redhat.com: '8 out of 778 tests
    failed'), this machine's real run (6.18, 8 THP sizes, 2 hugetlb sizes); ksft_set_plan()'s formula."""
    tests = st.kernel_tests()
    assert len(tests) == 778 == st.plan(8, 2)
    assert len({t.name for t in tests}) == 778 and len({t.id for t in tests}) == 778
    head = [n for n in _names(LKML_RUN_HEAD) if not n.startswith("Non-anonymous")]
    assert [t.name for t in tests[:len(head)]] == head


def test_the_pmd_size_gets_thp_and_swapped_out_thp_first():
    """run_anon_test_case(): for size == pmdsize, run_with_thp() and run_with_thp_swap() before the six
    PTE-level variants; then run_with_hugetlb() per hugetlb size."""
    names = [t.name for t in st.kernel_tests() if t.tid == "basic-cow-fork"]
    i = names.index("Basic COW after fork() ... with THP (2048 kB)")
    assert names[i - 1] == "Basic COW after fork() ... with partially shared THP (1024 kB)"
    assert names[i:i + 10] == [
        "Basic COW after fork() ... with THP (2048 kB)",
        "Basic COW after fork() ... with swapped-out THP (2048 kB)",
        "Basic COW after fork() ... with PTE-mapped THP (2048 kB)",
        "Basic COW after fork() ... with swapped-out, PTE-mapped THP (2048 kB)",
        "Basic COW after fork() ... with single PTE of THP (2048 kB)",
        "Basic COW after fork() ... with single PTE of swapped-out THP (2048 kB)",
        "Basic COW after fork() ... with partially mremap()'ed THP (2048 kB)",
        "Basic COW after fork() ... with partially shared THP (2048 kB)",
        "Basic COW after fork() ... with hugetlb (2048 kB)",
        "Basic COW after fork() ... with hugetlb (1048576 kB)"]
    assert len(names) == 2 + 8 * 6 + 2 + 2 == 54
    assert not {"Basic COW after fork() ... with THP (16 kB)",
                "Basic COW after fork() ... with swapped-out THP (16 kB)"} & set(names)


def test_collapse_then_non_anon_tests_in_cow_c_order():
    """run_anon_thp_test_cases() after every anon test (its descs, anon_thp_test_cases[]), then
    run_non_anon_test_case(): zeropage, memfd, tmpfile, huge zeropage, memfd hugetlb per size."""
    tests = st.kernel_tests()
    assert [t.name for t in tests[756:760]] == [
        "Basic COW after fork() when collapsing before fork()",
        "Basic COW after fork() when collapsing after fork() (fully shared)",
        "Basic COW after fork() when collapsing after fork() (lower shared)",
        "Basic COW after fork() when collapsing after fork() (upper shared)"]
    assert [t.name for t in tests[760:766]] == [
        "Basic COW ... with shared zeropage", "Basic COW ... with memfd", "Basic COW ... with tmpfile",
        "Basic COW ... with huge zeropage", "Basic COW ... with memfd hugetlb (2048 kB)",
        "Basic COW ... with memfd hugetlb (1048576 kB)"]
    assert tests[-1].name == "R/O longterm GUP-fast pin ... with memfd hugetlb (1048576 kB)"
    assert [t.id for t in tests[756:760]] == ["collapse-before-fork", "collapse-after-fork-fully-shared",
                                              "collapse-after-fork-lower-shared", "collapse-after-fork-upper-shared"]


def test_a_single_thp_size_gives_the_older_count():
    """cow.c with the PMD size only and 2 hugetlb sizes: '1..190' (David Hildenbrand, LKML, a run on a kernel
    without mTHP sizes: '# [INFO] detected THP size: 2048 KiB ... 1..190'); no THP at all: no THP test, no
    collapse test, no huge zeropage (tests_per_*: 'if (pmdsize)')."""
    assert len(st.kernel_tests((2048,), (2048, 1048576))) == 190 == st.plan(1, 2)
    none = st.kernel_tests((), (2048,), pmd_kb=None)
    assert len(none) == st.plan(0, 1, thp=False) == 14 * 3 + 3 * 4
    assert not any("THP" in t.name or "collaps" in t.name or "huge zeropage" in t.name for t in none)


# ----------------------------------------------------------------------------- case_for
def test_case_for_finds_todays_cases_and_no_others():
    assert cow_c.case_for("basic-cow-fork", "base").id == "basic-cow-fork"
    assert cow_c.case_for("basic-cow-fork", "pte-thp", 2048).id == "basic-cow-fork-pte-thp"
    assert cow_c.case_for("vmsplice-before-fork", "hugetlb", 2048).id == "vmsplice-before-fork-hugetlb"
    one_g = cow_c.case_for("vmsplice-before-fork", "hugetlb", 1048576)
    two_m = catalog.get("vmsplice-before-fork-hugetlb")
    assert one_g.id == "vmsplice-before-fork-hugetlb-1g" and one_g.threads == two_m.threads   # the same behaviour
    assert cow_c.case_for("basic-cow-fork", "thp", 16) is None            # THP_RUN_PMD: only at the PMD size
    assert cow_c.case_for("non-anon-cow", "memfd") is None                # file pages
    assert cow_c.case_for("ro-pin", "zeropage").id == "ro-pin-zeropage"
    assert cow_c.case_for("ro-fast-pin", "huge-zeropage").id == "ro-fast-pin-huge-zeropage"
    real = cow_c.case_for("basic-cow-fork", "thp", 2048, real=True)
    assert real.id == "basic-cow-fork-thp" and real.hpage_pmd_nr == cow_c.KERNEL_PMD_NR
    with pytest.raises(KeyError):
        cow_c.case_for("no-such-test", "base")


@pytest.fixture
def with_catalog_cases(monkeypatch):
    """Cases under the pinned ids added to the catalog, as the mthp and collapse work will add them."""
    def add(*cases):
        full = dict(catalog._all())
        full.update({c.id: c for c in cases})
        monkeypatch.setattr(catalog, "_all", lambda nr=2: full)
    return add


def _as(case, cid):
    return dataclasses.replace(case, id=cid, title=case.title + " (as " + cid + ")")


def test_mthp_and_collapse_cases_appear_once_the_catalog_has_them(with_catalog_cases):
    if "basic-cow-fork-pte-thp-16k" not in catalog.ids():          # until the mthp work is merged
        assert cow_c.case_for("basic-cow-fork", "pte-thp", 16) is None
    if "collapse-before-fork" not in catalog.ids():                # until the collapse work is merged
        assert cow_c.case_for("collapse-before-fork", "thp") is None
    base = catalog.get("basic-cow-fork-pte-thp")
    with_catalog_cases(_as(base, "basic-cow-fork-pte-thp-16k"), _as(base, "collapse-before-fork"))
    assert cow_c.case_for("basic-cow-fork", "pte-thp", 16).id == "basic-cow-fork-pte-thp-16k"
    assert cow_c.case_for("collapse-before-fork", "thp").id == "collapse-before-fork"
    rows = {r.test.id: r for r in st.run(designs.load("linux-6.18"), st.kernel_tests((16,), ()))}
    assert rows["basic-cow-fork-pte-thp-16k"].verdict == "pass"
    assert rows["collapse-before-fork"].verdict == "pass"
    if "basic-cow-fork-pte-thp-swap-16k" not in catalog.ids():
        assert rows["basic-cow-fork-pte-thp-swap-16k"].verdict == "none"


def test_identical_runs_are_made_once(monkeypatch):
    """All mTHP sizes run the same model case at model geometry (a 4-subpage folio) apart from id and title:
    one run for the three mTHP sizes, one for the PMD size."""
    ran = []
    real_run = st.run_sequential
    monkeypatch.setattr(st, "run_sequential", lambda m: ran.append(m) or real_run(m))
    rows = st.run(designs.load("linux-6.18"), [t for t in st.kernel_tests((16, 32, 64), ())
                                                if t.tid == "basic-cow-fork" and t.variant == "pte-thp"])
    assert [r.result.case for r in rows] == ["basic-cow-fork-pte-thp-16k", "basic-cow-fork-pte-thp-32k",
                                             "basic-cow-fork-pte-thp-64k", "basic-cow-fork-pte-thp"]
    assert [m.case.id for m in ran] == ["basic-cow-fork-pte-thp-16k", "basic-cow-fork-pte-thp"]
    assert all(r.verdict == "pass" for r in rows)


def test_a_design_without_mthp_skips_the_mthp_tests_as_cow_c_does(with_catalog_cases):
    """do_run_with_thp(): 'Did not get a THP populated' -> KSFT_SKIP when the last subpage of the THP-sized
    range is not populated -- a kernel without mTHP (before 6.8: 19eaf44954df, anon mTHP) faults 4 KiB pages."""
    base = catalog.get("basic-cow-fork-pte-thp")
    with_catalog_cases(_as(base, "basic-cow-fork-pte-thp-16k"))
    d = designs.load("linux-6.5")
    d = dataclasses.replace(d) if dataclasses.is_dataclass(d) else d
    d.anon_mthp = False
    rows = {r.test.id: r for r in st.run(d, st.kernel_tests((16,), ()))}
    r = rows["basic-cow-fork-pte-thp-16k"]
    assert (r.verdict, r.message, r.result) == ("skip", "Did not get a THP populated", None)
    assert rows["basic-cow-fork-pte-thp"].verdict == "pass"           # the PMD size stays
    text = st.ktap(d, list(rows.values()), (2048, (16,), ()))
    assert "# Did not get a THP populated\nok 3 # SKIP Basic COW after fork() ... with PTE-mapped THP (16 kB)" in text


# ----------------------------------------------------------------------------- host sizes
def test_host_sizes_as_cow_c_detects_them(tmp_path):
    """read_pmd_pagesize(), thp_supported_orders() (a hugepages-<kB>kB counts only with an 'enabled' file:
    this machine's hugepages-8kB has only shmem_enabled), detect_hugetlb_page_sizes()."""
    thp = tmp_path / "transparent_hugepage"
    thp.mkdir()
    (thp / "hpage_pmd_size").write_text("2097152\n")
    for kb, files in ((8, ["shmem_enabled"]), (16, ["enabled", "shmem_enabled"]), (64, ["enabled"]),
                      (2048, ["enabled"])):
        (thp / f"hugepages-{kb}kB").mkdir()
        for f in files:
            (thp / f"hugepages-{kb}kB" / f).write_text("always inherit madvise [never]\n")
    (tmp_path / "hugepages" / "hugepages-2048kB").mkdir(parents=True)
    (tmp_path / "hugepages" / "hugepages-1048576kB").mkdir()
    (tmp_path / "hugepages" / "README").write_text("")
    pmd, sizes, huge = st.host_sizes(str(tmp_path))
    assert (pmd, sizes, sorted(huge)) == (2048, (16, 64, 2048), [2048, 1048576])
    assert st.host_sizes(str(tmp_path / "nothing")) == (None, (), ())


# ----------------------------------------------------------------------------- the command
def test_selftest_ktap_in_cow_c_format():
    r = cli("selftest", "-d", "linux-6.18")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "TAP version 13" and "1..778" in lines
    assert lines.index("1..778") < lines.index("# [INFO] Anonymous memory tests in private mappings")
    results = [x for x in lines if re.match(r"(not )?ok \d+", x)]
    assert [int(x.split()[1]) for x in results] == list(range(1, 779))
    assert _names(r.output)[:len(_names(LKML_RUN_HEAD))] == _names(LKML_RUN_HEAD)
    # 6.x: only the hugetlb vmsplice tests fail, flagged XFAIL ('pass:769 fail:0 xfail:8 skip:1',
    # 20240502085259.103784-2-david@redhat.com): 4 vmsplice tests x 2 hugetlb sizes
    assert re.search(r"^# Totals: pass:\d+ fail:0 xfail:8 xpass:0 skip:\d+ error:0$", r.output, re.M)
    i = lines.index("# [RUN] vmsplice() + unmap in child ... with hugetlb (1048576 kB)")
    assert lines[i + 1] == "# Leak from parent into child"            # ksft_print_msg() before the result
    assert re.fullmatch(r"ok \d+ # XFAIL vmsplice\(\) \+ unmap in child \.\.\. with hugetlb \(1048576 kB\)",
                        next(x for x in lines[i + 1:] if not x.startswith("#")))
    i = lines.index("# [RUN] Basic COW ... with memfd")
    assert re.fullmatch(r"ok \d+ # SKIP model has none: .*memfd.*", lines[i + 1])
    assert "# [RUN] Non-anonymous memory tests in private mappings" in lines


def test_selftest_fails_where_cow_c_would():
    """5.7 leaks (reference 7.5: <=5.7 the vmsplice tests fail in every anon variant) and its R/O pins of the
    zeropage and the huge zeropage are unreliable (84209e87c696, 6.2)."""
    r = cli("selftest", "-d", "linux-5.7", "--format", "json")
    assert r.exit_code == 1
    res = {x["name"]: x for x in json.loads(r.output)["results"]}
    assert res["vmsplice() + unmap in child ... with base page"]["selftest"] == "fail"
    assert res["vmsplice() + unmap in child ... with base page"]["message"] == "Leak from parent into child"
    assert res["R/O longterm GUP pin ... with huge zeropage"]["selftest"] == "fail"
    assert res["R/O longterm GUP pin ... with huge zeropage"]["message"] == "Longterm R/O pin is not reliable"
    assert res["Basic COW ... with shared zeropage"]["selftest"] == "pass"
    assert res["Basic COW ... with shared zeropage"]["message"] == "Other mapping not modified"
    assert res["Basic COW ... with memfd"]["model"] == "none" and res["Basic COW ... with memfd"]["case"] is None


def test_sizes_options():
    r = cli("selftest", "-d", "linux-6.18", "--sizes", "16,64", "--hugetlb-sizes", "none")
    assert r.exit_code == 0 and "1..324" in r.output and st.plan(3, 0) == 324
    assert "with PTE-mapped THP (64 kB)" in r.output and "(32 kB)" not in r.output and "hugetlb (" not in r.output
    for bad in (["--sizes", "24"], ["--sizes", "4096"], ["--hugetlb-sizes", "4096"]):
        r = cli("selftest", "-d", "linux-6.18", *bad)
        assert r.exit_code == 2 and r.output.count("\n") == 1 and bad[0] in r.output, r.output
    r = cli("selftest", "-d", "linux-6.18", "--sizes", "host", "--format", "json")
    assert r.exit_code == 0
    pmd, thp, huge = st.host_sizes()
    assert json.loads(r.output)["plan"] == st.plan(len(thp), len(huge), bool(pmd))
    r = cli("selftest")
    assert r.exit_code == 2 and "--design" in r.output


# ----------------------------------------------------------------------------- --compare
OLD_FORMAT = """\
TAP version 13
# [INFO] detected PMD size: 2048 KiB
# [INFO] detected THP size: 2048 KiB
# [INFO] detected hugetlb page size: 2048 KiB
1..168
# [INFO] Anonymous memory tests in private mappings
# [RUN] Basic COW after fork() ... with base page
ok 1 No leak from parent into child
# [RUN] Basic COW after fork() ... with swapped out base page
ok 2 # SKIP MADV_PAGEOUT did not work, is swap enabled?
# [RUN] Basic COW after fork() ... with THP (2048 kB)
not ok 3 Leak from parent into child
"""

# 49850bd02658 (log_test_start() / log_test_result()) under run_vmtests.sh under run_kselftest.sh
NEW_FORMAT_NESTED = """\
TAP version 13
1..1
# timeout set to 0
# selftests: mm: run_vmtests.sh
# # --------------------
# # running ./cow
# # --------------------
# # TAP version 13
# # # [INFO] detected PMD size: 2048 KiB
# # # [INFO] detected THP size: 16 KiB
# # # [INFO] detected THP size: 2048 KiB
# # # [INFO] detected hugetlb page size: 2048 KiB
# # # [INFO] huge zeropage is enabled
# # 1..999
# # # [INFO] Anonymous memory tests in private mappings
# # # [RUN] Basic COW after fork() ... with base page
# # ok 1 Basic COW after fork() ... with base page
# # # [RUN] Basic COW after fork() ... with PTE-mapped THP (16 kB)
# # ok 2 Basic COW after fork() ... with PTE-mapped THP (16 kB)
# # # [RUN] vmsplice() + unmap in child ... with hugetlb (2048 kB)
# # # Leak from parent into child
# # ok 3 # XFAIL vmsplice() + unmap in child ... with hugetlb (2048 kB)
# # # [RUN] R/O GUP pin on R/O-mapped shared page ... with base page
# # # gup_test not available
# # ok 4 # SKIP R/O GUP pin on R/O-mapped shared page ... with base page
# # # [RUN] Non-anonymous memory tests in private mappings
# # # [RUN] Basic COW ... with memfd
# # ok 5 Basic COW ... with memfd
# # # [RUN] R/O longterm GUP pin ... with huge zeropage
# # ok 6 # SKIP Did not get THPs populated
# # # Totals: pass:3 fail:0 xfail:1 xpass:0 skip:2 error:0
# # [PASS]
# ok 1 selftests: mm: run_vmtests.sh
"""


def test_parse_both_formats_and_runner_prefixes():
    old = ktap.parse(OLD_FORMAT, "old.ktap")
    assert [(k.n, k.name, k.status) for k in old.tests] == [
        (1, "Basic COW after fork() ... with base page", "pass"),
        (2, "Basic COW after fork() ... with swapped out base page", "skip"),
        (3, "Basic COW after fork() ... with THP (2048 kB)", "fail")]
    assert old.tests[1].reason == "MADV_PAGEOUT did not work, is swap enabled?"
    assert (old.plan, old.pmd_kb, old.thp_kb, old.hugetlb_kb) == (168, 2048, (2048,), (2048,))
    new = ktap.parse(NEW_FORMAT_NESTED, "new.ktap")
    assert [(k.n, k.status) for k in new.tests] == [(1, "pass"), (2, "pass"), (3, "xfail"), (4, "skip"),
                                                     (5, "pass"), (6, "skip")]
    assert new.tests[2].reason == "Leak from parent into child"
    assert new.tests[3].reason == "gup_test not available"
    assert new.tests[5].reason == "Did not get THPs populated"       # ksft_test_result_skip(): no name
    assert new.tests[4].name == "Basic COW ... with memfd"           # the non-anon header is no test
    assert new.totals == {"pass": 3, "fail": 0, "xfail": 1, "xpass": 0, "skip": 2, "error": 0}
    assert (new.plan, new.thp_kb, new.hugetlb_kb) == (999, (16, 2048), (2048,))


def test_compare_pairs_each_kernel_test_with_the_model(tmp_path):
    f = tmp_path / "cow.ktap"
    f.write_text(NEW_FORMAT_NESTED)
    r = cli("selftest", "--compare", str(f), "-d", "linux-6.18", "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    got = {t["name"]: (t["kernel"], t["model"], t["outcome"]) for t in d["tests"]}
    assert got == {
        "Basic COW after fork() ... with base page": ("pass", "pass", "agree"),
        "Basic COW after fork() ... with PTE-mapped THP (16 kB)": ("pass", "pass", "agree"),
        "vmsplice() + unmap in child ... with hugetlb (2048 kB)": ("xfail", "xfail", "agree"),
        "R/O GUP pin on R/O-mapped shared page ... with base page": ("skip", "pass", "kernel skipped"),
        "Basic COW ... with memfd": ("pass", "none", "model has none"),
        "R/O longterm GUP pin ... with huge zeropage": ("skip", "pass", "kernel skipped")}
    assert d["totals"]["agree"] == 3 and d["totals"]["kernel skipped"] == 2 and d["totals"]["disagree"] == 0
    skipped = next(t for t in d["tests"] if t["kernel"] == "skip")
    assert skipped["kernel_reason"] == "gup_test not available"
    assert d["design"] == "linux-6.18" and d["kernel_run"]["plan"] == 999


def test_compare_disagreement_is_a_finding(tmp_path):
    f = tmp_path / "old.ktap"
    f.write_text(OLD_FORMAT)
    r = cli("selftest", "--compare", str(f), "-d", "linux-6.18")
    assert r.exit_code == 1, r.output                     # the kernel leaked "with THP", the model does not
    assert "disagree" in r.output and "1 agree, 1 disagree" in r.output and "1 kernel skipped" in r.output
    j = json.loads(cli("selftest", "--compare", str(f), "-d", "linux-6.18", "--format", "json").output)
    assert [(t["kernel"], t["model"], t["outcome"]) for t in j["tests"]] == [
        ("pass", "pass", "agree"), ("skip", "pass", "kernel skipped"), ("fail", "pass", "disagree")]
    assert j["tests"][2]["kernel_reason"] == "Leak from parent into child"   # 109364fce504: the result line


def test_compare_defaults_to_the_host_design(tmp_path):
    f = tmp_path / "cow.ktap"
    f.write_text(NEW_FORMAT_NESTED)
    r = CliRunner().invoke(main, ["selftest", "--compare", str(f), "--format", "json"])
    name, _ = designs.resolve("host")
    assert json.loads(r.stdout)["design"] == name and "host kernel" in r.stderr


@pytest.mark.parametrize("text,line,what", [
    ("", 1, "no '# [RUN] <test>' line"),
    ("TAP version 13\n1..3\nok 1 x\n", 1, "no '# [RUN] <test>' line"),
    ("1..2\n# [RUN] A ... with base page\nok 1 A\n# [RUN] B ... with base page\nok 3 B\n", 5, "expected 2"),
    ("1..2\nok 1 A\n# [RUN] A ... with base page\nok 2 A\n", 2, "no '# [RUN] <test>' line before it"),
    ("1..1\n# [RUN] A ... with base page\nok one\n", 3, "not a KTAP result line"),
    ("1..1\n# [RUN] A ... with base page\n# [RUN] B ... with base page\n", 2, "no test result"),
    ("1..1\n# [RUN] A ... with base page\nok 1 A\n# [RUN] B ... with base page\nok 2 B\n", 5, "more than the plan"),
])
def test_a_bad_file_is_a_usage_error_naming_file_and_line(tmp_path, text, line, what):
    f = tmp_path / "bad.ktap"
    f.write_text(text)
    r = CliRunner().invoke(main, ["selftest", "--compare", str(f), "-d", "linux-6.18"])
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and f"{f}:{line}: " in r.stderr and what in r.stderr, r.stderr


def test_an_unreadable_file_is_a_usage_error(tmp_path):
    f = tmp_path / "bin.ktap"
    f.write_bytes(b"# [RUN] A\n\xff\xfe\n")
    r = CliRunner().invoke(main, ["selftest", "--compare", str(f), "-d", "linux-6.18"])
    assert r.exit_code == 2 and f"{f}:2: not a text file" in r.stderr
    r = CliRunner().invoke(main, ["selftest", "--compare", str(tmp_path / "none.ktap"), "-d", "linux-6.18"])
    assert r.exit_code == 2 and "cannot read it" in r.stderr and r.stderr.count("\n") == 1


def test_the_models_own_ktap_compares_as_agreeing(tmp_path):
    """A round trip: the model's KTAP read back agrees with the model test by test (its "model has none"
    skips are kernel skips)."""
    r = cli("selftest", "-d", "linux-5.11")
    f = tmp_path / "model.ktap"
    f.write_text(r.output)
    j = json.loads(cli("selftest", "--compare", str(f), "-d", "linux-5.11", "--format", "json").output)
    n = j["totals"]
    assert n["disagree"] == 0 and n["agree"] + n["kernel skipped"] == 778 and n["agree"] > 150
    j = json.loads(cli("selftest", "--compare", str(f), "-d", "linux-6.18", "--format", "json").output)
    assert j["totals"]["disagree"] > 0                    # 5.11 fails tests 6.18 passes


def test_every_kernel_test_id_names_its_test():
    """judge() (docs/catalog.md, tools/mutate.py) finds the cow.c test of any case id of the pinned forms:
    mTHP '-<kB>k', '-hugetlb-1g', the collapse ids, the non-anon ids."""
    for t in st.kernel_tests():
        assert st.test_of(t.id) == (t.tid, t.variant), t.id
    with pytest.raises(KeyError):
        st.test_of("cve-2020-29374")


def test_compare_takes_the_selection(tmp_path):
    f = tmp_path / "cow.ktap"
    f.write_text(NEW_FORMAT_NESTED)
    j = json.loads(cli("selftest", "--compare", str(f), "-d", "linux-6.18", "-t", "base", "--format",
                       "json").output)
    assert [t["n"] for t in j["tests"]] == [1, 4]                       # the two "... with base page" tests
    r = cli("selftest", "--compare", str(f), "-d", "linux-6.18", "--sizes", "all")
    assert r.exit_code == 2 and "--compare" in r.output


def test_a_run_vmtests_log_of_several_programs_keeps_cows_part():
    """run_vmtests.sh prints '# running ./<program>' before each program; gup_longterm's output (LKML, Itaru
    Kitayama's log) has '[RUN]' lines and a plan of its own at the same level."""
    other = ("# # --------------------\n# # running ./gup_longterm\n# # --------------------\n# # TAP version 13\n"
             "# # 1..56\n# # # [RUN] R/W longterm GUP pin in MAP_SHARED file mapping ... with memfd\n"
             "# # ok 1 Should have worked\n# # # Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:0\n")
    text = NEW_FORMAT_NESTED.replace("# # --------------------\n# # running ./cow", other + "# # --------------------\n"
                                     "# # running ./cow")
    run = ktap.parse(text, "vmtests.log")
    assert [k.n for k in run.tests] == [1, 2, 3, 4, 5, 6] and run.plan == 999
    assert run.tests[0].name == "Basic COW after fork() ... with base page"
    assert run.tests[0].line == text.splitlines().index("# # # [RUN] Basic COW after fork() ... with base page") + 1
