"""The report in a real headless browser (Debian Chromium driven by Playwright):
every section and figure renders, nothing errors, and planted script payloads
stay text. THRESHER_UPDATE_SCREENSHOT=1 also refreshes docs/report.png."""
import os
import shutil
from pathlib import Path

import pytest

from tests.report.test_html import BAD_FIELD, BAD_LABEL, IMG, LINK, SCRIPT, SECTIONS, make_run

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_HEIGHT = 1700
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    for name in (os.environ.get("THRESHER_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"):
        if name and (shutil.which(name) or Path(name).is_file()):
            return shutil.which(name) or name
    return None


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) is not installed: pip install playwright"
    if _chromium() is None:
        return "no chromium binary: run scripts/install_browser.sh (apt-get install -y chromium)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    from thresher.report.html import write_report

    tmp = tmp_path_factory.mktemp("browser")
    out = tmp / "report.html"
    write_report(make_run(tmp), out, cache_dir=str(tmp / "cache"))
    return out


@pytest.fixture(scope="module")
def page_state(report_path, tmp_path_factory):
    """Open the report once; collect console errors, page errors, dialogs and requests."""
    from playwright.sync_api import sync_playwright

    state = {"console": [], "errors": [], "dialogs": [], "requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: state["console"].append((m.type, m.text)))
            page.on("pageerror", lambda e: state["errors"].append(str(e)))
            page.on("dialog", lambda d: (state["dialogs"].append(d.message), d.dismiss()))
            page.on("request", lambda r: state["requests"].append(r.url))
            page.goto(report_path.as_uri(), wait_until="load")
            state["page"] = page
            yield state
        finally:
            browser.close()


def test_every_section_and_figure_renders(page_state):
    page = page_state["page"]
    for sec in SECTIONS:
        heading = page.locator(f"section#{sec} > h2")
        assert heading.count() == 1 and heading.is_visible(), sec
        assert page.locator(f"section#{sec}[data-absent]").count() == 0, sec
    images = page.locator("figure img")
    assert images.count() == 9
    sizes = page.eval_on_selector_all(
        "figure img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, e.getBoundingClientRect().width,"
                      " e.getBoundingClientRect().height])")
    for complete, nw, nh, w, h in sizes:
        assert complete and nw > 0 and nh > 0 and w > 100 and h > 50


def test_no_errors_and_no_network(page_state):
    assert page_state["errors"] == []
    assert [m for m in page_state["console"] if m[0] in ("error", "warning")] == []
    # the page itself and its inline data images only
    assert all(u.startswith(("file://", "data:")) for u in page_state["requests"])


def test_planted_payloads_show_as_text_and_never_run(page_state, tmp_path):
    page = page_state["page"]
    text = page.inner_text("body")
    for payload in (SCRIPT, IMG, LINK, BAD_LABEL, BAD_FIELD):
        assert payload in text, payload
    assert page.locator("script").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("img:not(figure img)").count() == 0
    # click the text of the javascript: link (it is text, so nothing happens) and hover the field name
    page.get_by_text("click me", exact=False).first.click()
    page.get_by_text(BAD_FIELD, exact=False).first.hover()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page_state["dialogs"] == []
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000


def test_screenshot_of_the_demo_report(tmp_path):
    """The README screenshot: the report on the demo recipe's subset (written to
    docs/report.png only when THRESHER_UPDATE_SCREENSHOT=1)."""
    if os.environ.get("THRESHER_UPDATE_SCREENSHOT") != "1":
        pytest.skip("set THRESHER_UPDATE_SCREENSHOT=1 to refresh docs/report.png")
    import yaml
    from playwright.sync_api import sync_playwright

    from thresher.api import run_recipe
    from thresher.report.html import write_report

    recipe = yaml.safe_load((ROOT / "examples" / "recipes" / "dedup_quality_deita.yaml").read_text())
    recipe.update(data=str(ROOT / "examples" / "demo" / "pool.jsonl"), output=str(tmp_path / "deita_1k.jsonl"))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run_recipe(tmp_path / "recipe.yaml", keep_removed=True)
    write_report(result["manifest"], tmp_path / "report.html", pool=result["pool"],
                 selected=result["selection"].indices, figures=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": SCREENSHOT_HEIGHT})
        page.goto((tmp_path / "report.html").as_uri(), wait_until="load")
        (ROOT / "docs").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "report.png"), full_page=False)
        browser.close()
