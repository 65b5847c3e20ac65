"""The HTML trace in a real browser (headless Chromium from Debian, driven by
Selenium): it loads with no console errors and no network requests, the
slider and the keys move through the steps, the verdict step is shown; a
screenshot is kept in test-artifacts/.  Skips, saying why, where Chromium or
its driver is not installed (.ci/run installs them)."""
import shutil
from pathlib import Path

import pytest

from cowlab import catalog, designs
from cowlab.report import html, trace

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Debian's chromium and chromium-driver are not installed")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1500,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def _page(tmp_path, case, design, **settings):
    m, trs, meta = trace.transitions_for(catalog.get(case), designs.load(design, settings or None))
    doc = trace.build(m, trs, meta)
    p = tmp_path / f"{case}.html"
    p.write_text(html.render(doc))
    return p, doc


def test_trace_page_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    p, doc = _page(tmp_path, "cve-2020-29374", "linux-5.7")
    browser.get(p.as_uri())
    pos = browser.find_element(By.ID, "pos")
    v = doc["verdict_step"]
    assert v is not None
    # opens on the verdict step, highlighted, with its explanation
    assert pos.text == f"step {v} / {len(doc['steps']) - 1}"
    info = browser.find_element(By.ID, "stepinfo")
    assert "verdict" in info.get_attribute("class")
    assert "MISSED COW" in info.text and "still uses" in info.text
    assert browser.find_element(By.CSS_SELECTOR, "#lanetable tr.verdict")
    # the board draws page tables, pages and the pipe reference, with arrows
    assert browser.find_elements(By.CSS_SELECTOR, "#procs .row")
    assert "pipe child:p" in browser.find_element(By.ID, "side").text
    assert browser.execute_script("return document.querySelectorAll('#arrows line').length") >= 2
    # keys and slider move through the steps
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.HOME)
    assert pos.text.startswith("step 0 /")
    body.send_keys(Keys.ARROW_RIGHT)
    body.send_keys(Keys.ARROW_RIGHT)
    assert pos.text.startswith("step 2 /")
    browser.execute_script("const s=document.getElementById('slider'); s.value=5; s.dispatchEvent(new Event('input'))")
    assert pos.text.startswith("step 5 /")
    body.send_keys("v")
    assert pos.text.startswith(f"step {v} /")
    # nothing fetched from the network, no console errors
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "cve-2020-29374-linux-5.7.png"))
    assert (ARTIFACTS / "cve-2020-29374-linux-5.7.png").stat().st_size > 10000


def test_user_strings_are_escaped(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from cowlab.model import CowModel
    from cowlab.run import run_sequential
    from cowlab.scenario import Script
    from cowlab.explore import replay
    s = Script("xss", "<img src=x onerror=alert(1)></script><b>bold</b>", pages=1, source="<script>evil()</script>")
    p = s.process("parent")
    p.mmap(0)
    p.write(0)
    m = CowModel(s.build(), designs.load("linux-6.18"))
    r = run_sequential(m)
    trs = list(replay(m, [(0, t["label"]) for t in r.trace]))
    page = tmp_path / "xss.html"
    page.write_text(html.render(trace.build(m, trs)))
    browser.get(page.as_uri())
    assert "<img src=x onerror=alert(1)></script><b>bold</b>" in browser.find_element(By.TAG_NAME, "h1").text
    assert not browser.find_elements(By.CSS_SELECTOR, "header b, header img")
    assert browser.find_element(By.ID, "pos").text.startswith("step 0 /")


RACES = ("race-swapin-mapcount", "race-fork-gup-fast", "race-thp-split")


@pytest.mark.parametrize("case", RACES)
def test_every_step_of_a_race_has_text_and_no_markup_leaks(browser, tmp_path, case):
    """Each step's panel tells the step (its docstring as text, what changed or
    that nothing visible did, the design's decisions); no RST markup shows."""
    from selenium.webdriver.common.by import By
    p, doc = _page(tmp_path, case, "rfc-page-anon-shared", page_lock=False)
    browser.get(p.as_uri())
    assert any("``" in (st["doc"] or "") for st in doc["steps"])          # there is markup to render
    for i in range(len(doc["steps"])):
        browser.execute_script(f"go({i})")
        info = browser.find_element(By.ID, "stepinfo")
        lines = [x.text for x in info.find_elements(By.CSS_SELECTOR, ".doc, .chg, .ev, .dec")]
        assert lines and all(x.strip() for x in lines[:1]), (case, i, info.text)
        assert any(x.startswith("changed: ") or x.startswith("•") or "COW" in x for x in lines), (case, i, lines)
        assert "``" not in info.text and ":func:`" not in info.text, (case, i, info.text)
    assert "``" not in browser.find_element(By.TAG_NAME, "body").text


def test_the_decision_shows_what_it_read_when_it_read_it(browser, tmp_path):
    """race-swapin-mapcount under rfc-page-anon-shared without the page lock:
    page_mapcount() was read as 1, before the child's swapin made it 2; the
    panel of the deciding step says 1 and the step it was read in."""
    from selenium.webdriver.common.by import By
    p, doc = _page(tmp_path, "race-swapin-mapcount", "rfc-page-anon-shared", page_lock=False)
    (st,) = [s for s in doc["steps"] for d in s["decisions"] if d["hook"] == "wp_anon" and d["answer"] == "REUSE"]
    (read,) = [r for d in st["decisions"] for r in d["reads"] if r["call"].startswith("page_mapcount(")]
    assert read["value"] == "1" and read["step"] < st["i"]
    pfn = int(read["call"].split("(")[1].split(",")[0])
    before = doc["steps"][st["i"] - 1]["state"]
    assert next(pg for pg in before["pages"] if pg["pfn"] == pfn)["mapcount"] == [2]      # today's value differs
    browser.get(p.as_uri() + f"#step={st['i']}")
    dec = browser.find_element(By.CSS_SELECTOR, "#stepinfo .dec").text
    assert f"{read['call']} = 1 (at step {read['step']})" in dec and "-> REUSE" in dec


def test_step_link_opens_and_highlights_the_step(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    p, doc = _page(tmp_path, "race-fork-gup-fast", "linux-5.9")
    n = len(doc["steps"]) - 1
    target = 3 if doc["verdict_step"] != 3 else 4
    browser.get(p.as_uri() + f"#step={target}")
    assert browser.find_element(By.ID, "pos").text == f"step {target} / {n}"
    row = browser.find_element(By.CSS_SELECTOR, f'#lanetable tr[data-i="{target}"]')
    assert "cur" in row.get_attribute("class") and "target" in row.get_attribute("class")
    assert browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(), l = document.getElementById('lanes').getBoundingClientRect();"
        "return r.top >= l.top && r.bottom <= l.bottom;", row)
    assert browser.find_element(By.CSS_SELECTOR, "#stepinfo a.perma").get_attribute("href").endswith(f"#step={target}")
    # stepping updates the address; changing the address moves the page
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    assert browser.execute_script("return location.hash") == f"#step={target + 1}"
    browser.execute_script("location.hash = '#step=1'")
    assert browser.find_element(By.ID, "pos").text == f"step 1 / {n}"


def test_the_page_is_usable_at_800_px(browser, tmp_path):
    from selenium.webdriver.common.by import By
    p, doc = _page(tmp_path, "race-swapin-mapcount", "rfc-page-anon-shared", page_lock=False)
    browser.set_window_size(800, 900)
    try:
        browser.get(p.as_uri())
        width = browser.execute_script("return window.innerWidth")
        assert width <= 800
        # nothing wider than the window: no sideways scrolling of the page
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        for sel in ("#lanes", "#stepinfo", "#board", "#slider"):
            r = browser.find_element(By.CSS_SELECTOR, sel).rect
            assert r["width"] > 200 and r["x"] >= 0 and r["x"] + r["width"] <= width + 1, (sel, r)
        # the lanes sit above the board, not squeezed beside it
        assert browser.find_element(By.ID, "lanes").rect["y"] < browser.find_element(By.ID, "stepinfo").rect["y"]
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "race-swapin-mapcount-800px.png"))
    finally:
        browser.set_window_size(1500, 1000)
