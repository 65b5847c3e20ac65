"""Typed design settings, designs by kernel version, and the honest race
commands (issue 13, items 2, 3 and 4)."""
import json
import pickle

import pytest
from click.testing import CliRunner

from cowlab import designs, matrix
from cowlab.cli import main
from cowlab.designs import DesignError, Setting


def _cli(*argv):
    r = CliRunner().invoke(main, list(argv))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r


# ----------------------------------------------------------------------------- 2: typed settings
def test_settings_are_declared_and_typed():
    d = designs.load("rfc-page-anon-shared")
    (s,) = d.SETTINGS
    assert s.name == "page_lock" and s.type == "bool" and s.default is True and s.help
    for text, want in (("false", False), ("no", False), ("off", False), ("0", False), ("True", True), ("yes", True)):
        assert designs.load("rfc-page-anon-shared", {"page_lock": text}).settings == {"page_lock": want}, text
    for bad in ("maybe", "2", "", "nein"):
        with pytest.raises(DesignError, match=r"setting page_lock: .* is not a bool; allowed: true or false"):
            designs.load("rfc-page-anon-shared", {"page_lock": bad})
    with pytest.raises(DesignError, match="has no setting nope .settings: page_lock .bool, default true"):
        designs.load("rfc-page-anon-shared", {"nope": "1"})
    assert designs.load("rfc-mapcount:page_lock=true").settings == {"page_lock": True}


def test_int_and_enum_settings():
    assert Setting("n", 3, min=1, max=8).coerce("5") == 5
    assert Setting("mode", "a", choices=("a", "b")).coerce("b") == "b"
    for s, bad in ((Setting("n", 3, min=1, max=8), "9"), (Setting("n", 3), "x"), (Setting("n", 3), True),
                   (Setting("mode", "a", choices=("a", "b")), "c")):
        with pytest.raises(ValueError, match="allowed: "):
            s.coerce(bad)


def test_a_user_design_declares_settings_and_bad_declarations_are_refused(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("from dataclasses import dataclass\nfrom cowlab.designs import Setting\n"
                 "from cowlab.designs.linux_5_19 import Linux519\n"
                 "@dataclass\nclass Mine(Linux519):\n    name: str = 'mine'\n"
                 "    SETTINGS = (Setting('depth', 2, 'how deep', min=1, max=4),)\n")
    assert designs.load(str(f), {"depth": "3"}).settings == {"depth": 3}
    r = _cli("run", "basic-cow-fork", "-d", f"{f}:depth=9")
    assert r.exit_code == 2 and r.stderr.strip().count("\n") == 0
    assert "design mine: setting depth: '9' is out of range; allowed: an integer in 1..4" in r.stderr
    f.write_text(f.read_text().replace("Setting('depth', 2, 'how deep', min=1, max=4)", "'depth'"))
    with pytest.raises(DesignError, match="SETTINGS is .*expected a tuple of cowlab.designs.Setting"):
        designs.load(str(f))


def test_bad_settings_on_the_command_line_are_one_line_exit_2():
    for argv in (["run", "basic-cow-fork", "-d", "rfc-mapcount:page_lock=maybe"],
                 ["run", "basic-cow-fork", "-d", "rfc-mapcount", "--set", "page_lock=maybe"],
                 ["run", "basic-cow-fork", "-d", "rfc-mapcount:lock=true"],
                 ["run", "basic-cow-fork", "-d", "rfc-mapcount:page_lock"],
                 ["matrix", "-c", "basic-cow-fork", "-d", "linux-6.18", "--set", "page_lock=true"]):
        r = _cli(*argv)
        assert r.exit_code == 2, argv
        assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("cowlab: error: "), r.stderr
    r = _cli("run", "basic-cow-fork", "-d", "rfc-mapcount:page_lock=maybe")
    assert "allowed: true or false" in r.stderr


def test_one_design_with_and_without_a_setting_is_two_columns():
    r = _cli("matrix", "-c", "race-swapin-mapcount", "-c", "basic-cow-fork",
             "-d", "rfc-page-anon-shared:page_lock=false", "-d", "rfc-page-anon-shared", "-q", "--format", "json")
    d = json.loads(r.stdout)
    assert [x["name"] for x in d["designs"]] == ["rfc-page-anon-shared:page_lock=false", "rfc-page-anon-shared"]
    res = {(x["case"], x["design"]): x for x in d["results"]}
    # the seed: without the page lock page_anon_shared() misses the COW; with it (the default) it does not
    assert res[("race-swapin-mapcount", "rfc-page-anon-shared:page_lock=false")]["outcomes"]["missed"] > 0
    assert res[("race-swapin-mapcount", "rfc-page-anon-shared")]["outcomes"]["missed"] == 0
    assert r.exit_code == 1


def test_set_applies_to_the_designs_that_declare_it():
    r = _cli("matrix", "-c", "race-swapin-mapcount", "-d", "rfc-page-anon-shared", "-d", "linux-6.18",
             "--set", "page_lock=no", "-q", "--format", "json")
    d = json.loads(r.stdout)
    assert [x["name"] for x in d["designs"]] == ["rfc-page-anon-shared:page_lock=false", "linux-6.18"]
    assert "applies to rfc-page-anon-shared" in r.stderr


def test_settings_travel_in_the_picklable_unit():
    u = ("race-swapin-mapcount", "rfc-page-anon-shared", (("page_lock", False),))
    r = pickle.loads(pickle.dumps(matrix.run_unit(*pickle.loads(pickle.dumps(u)))))
    assert r.outcomes["missed"] > 0
    r = matrix.run_unit("race-swapin-mapcount", "rfc-page-anon-shared:page_lock=false", ())
    assert r.outcomes["missed"] > 0
    m = matrix.compute([("rfc-page-anon-shared", {"page_lock": "false"}), "rfc-page-anon-shared"],
                       ["race-swapin-mapcount"], jobs=1)
    assert [r.design for r in m.results] == ["rfc-page-anon-shared:page_lock=false", "rfc-page-anon-shared"]


def test_designs_name_shows_its_settings():
    r = CliRunner().invoke(main, ["designs", "rfc-mapcount"], terminal_width=200)
    assert r.exit_code == 0
    assert "page_lock" in r.output and "bool" in r.output and "false" in r.output and "page lock" in r.output
    r = _cli("designs", "linux-6.18")
    assert "settings: none" in r.output
    assert _cli("designs", "nope").exit_code == 2


# ----------------------------------------------------------------------------- 4: designs by kernel version
@pytest.mark.parametrize("spec, name", [("6.6", "linux-6.5"), ("v6.6", "linux-6.5"), ("v5.15.120", "linux-5.11"),
                                        ("6.1", "linux-5.19"), ("5.7.5", "linux-5.8"), ("6.18.44", "linux-6.18"),
                                        ("6.8.0-45-generic", "linux-6.5")])
def test_a_kernel_version_selects_its_design(spec, name):
    r = _cli("run", "basic-cow-fork", "-d", spec, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["design"] == name
    assert r.stderr.startswith(f"cowlab: -d {spec}: kernel {spec}: design {name}")


def test_host_selects_the_design_for_uname(monkeypatch):
    import platform
    monkeypatch.setattr(platform, "release", lambda: "5.10.0-28-amd64")
    r = _cli("matrix", "-c", "basic-cow-fork", "-d", "host", "-q", "--format", "json")
    assert json.loads(r.stdout)["designs"][0]["name"] == "linux-5.9"
    assert "host kernel 5.10.0-28-amd64: design linux-5.9" in r.stderr


def test_suggestions_rank_by_version():
    with pytest.raises(DesignError) as e:
        designs.load("linux-6.1")
    # 6.1 is modelled by linux-5.19 (v5.19 .. v6.1); spelling would suggest linux-6.18 first
    assert "did you mean linux-5.19," in str(e.value) and "-d 6.1 selects the design for kernel 6.1: linux-5.19" \
        in str(e.value)
    with pytest.raises(DesignError, match="did you mean linux-6.9, linux-6.5, linux-6.18"):
        designs.load("linux-6.10")
    with pytest.raises(DesignError, match="did you mean rfc-mapcount"):
        designs.load("rfc-mapcont")


# ----------------------------------------------------------------------------- 3: races
def test_run_on_a_race_case_says_it_ran_one_schedule():
    r = _cli("run", "race-fork-gup-fast", "-d", "linux-5.9")
    assert "ran one schedule" in r.output and "cowlab explore race-fork-gup-fast -d linux-5.9" in r.output
    assert r.exit_code == 3                   # nothing on that schedule, and one schedule proves no absence
    j = json.loads(_cli("run", "race-fork-gup-fast", "-d", "linux-5.9", "--format", "json").stdout)
    assert j["race"] is True and "explore" in j["note"]
    r = _cli("run", "basic-cow-fork", "-d", "linux-5.9")
    assert "schedule" not in r.output and r.exit_code == 0


def test_explain_explores_a_race_and_says_so():
    r = _cli("explain", "race-thp-split", "-d", "linux-6.18")
    assert "every interleaving was explored" in r.output and "none shows" in r.output and r.exit_code == 0
    r = _cli("explain", "race-thp-split", "-d", "linux-5.7", "--schedule", "auto")
    assert "the shortest interleaving the explorer found to the missed COW" in r.output and r.exit_code == 1
    r = _cli("explain", "race-thp-split", "-d", "linux-5.7", "--schedule", "sequential")
    assert "one schedule of a race case" in r.output
    r = _cli("explain", "basic-cow-fork", "-d", "linux-6.18", "--schedule", "explore")
    assert "every interleaving was explored" in r.output


def test_explore_prints_and_saves_each_kind(tmp_path):
    t = tmp_path / "t.json"
    r = CliRunner().invoke(main, ["explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--kind", "all",
                                  "--save-trace", str(t)], terminal_width=250)
    for kind, steps in (("missed", 32), ("wrong", 30), ("unnecessary", 15)):
        assert f"shortest trace to the {kind} COW" in r.output
        saved = json.loads((tmp_path / f"t.{kind}.json").read_text())
        assert len(saved["trace"]) == steps, kind
        rr = _cli("replay", str(tmp_path / f"t.{kind}.json"), "--format", "json")
        assert json.loads(rr.stdout)["verdicts"][kind] >= 1
    r = _cli("explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--kind", "wrong", "--save-trace", str(t))
    assert "shortest trace to the wrong COW" in r.output and "shortest trace to the missed COW" not in r.output
    assert len(json.loads(t.read_text())["trace"]) == 30
    j = json.loads(_cli("explore", "race-fork-gup-fast", "-d", "linux-5.9", "-q", "--format", "json").stdout)
    assert {k: len(v) for k, v in j["traces"].items()} == {"missed": 32, "wrong": 30, "unnecessary": 15}
    assert j["trace"] == j["traces"]["unnecessary"]
    r = _cli("explore", "race-fork-gup-fast", "-d", "linux-5.11", "-q", "--kind", "missed", "--save-trace",
             str(tmp_path / "none.json"))
    assert "no missed COW found" in r.output and "not written" in r.stderr and not (tmp_path / "none.json").exists()
