"""The studio driven through its real page in headless Chromium, on the real engine.

Upload two images, paint with seeded random weights at 48 px, watch the live image change, see
and download the result; then start a long job, cancel it and delete it from the page. All of it
under the studio's own Content-Security-Policy: any violation fails the test. Skips cleanly
without Chromium or the playwright package (the browser itself comes from Debian: apt-get install
chromium).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from painterly.studio import create_app  # noqa: E402
from test_studio_api import png_bytes  # noqa: E402
from test_studio_jobs import live_server, one_torch_thread  # noqa: E402, F401 (a fixture)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
]
TIMEOUT_MS = 40_000

# Records every src the stage image shows, so the test sees the live preview change.
WATCH_STAGE = """() => {
  window.stageSources = [];
  new MutationObserver(() => window.stageSources.push(document.getElementById('stage-img').src))
    .observe(document.getElementById('stage-img'), {attributes: true, attributeFilter: ['src']});
}"""


# Every Content-Security-Policy violation the page causes, from before its first script runs.
CSP_WATCH = """window.cspViolations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.cspViolations.push(`CSP: ${e.violatedDirective} blocked ${e.blockedURI}`));"""


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setattr("painterly.studio.jobs.PREVIEW_INTERVAL", 0.0)  # a preview for every step
    with live_server(create_app(tmp_path / "data")) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        page.add_init_script(CSP_WATCH)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#field-size")
        yield page
        errors += page.evaluate("window.cspViolations")
        browser.close()
        assert not errors, errors


def set_fields(page, **values):
    page.click("details.advanced summary")
    for name, value in values.items():
        selector = f"#field-{name}"
        if page.eval_on_selector(selector, "e => e.tagName") == "SELECT":
            page.select_option(selector, str(value))
        else:
            page.fill(selector, str(value))


def wait_status(page, prefix: str) -> None:
    """Wait until the status line under the picture starts with ``prefix``."""
    script = "p => document.getElementById('status-text').textContent.startsWith(p)"
    try:
        page.wait_for_function(script, arg=prefix)
    except sync_api.TimeoutError:
        shown = page.text_content("#status-text"), page.text_content("#form-error")
        raise AssertionError(f"waited for {prefix!r}; the page shows {shown}") from None


def test_paint_watch_download_and_cancel(page, tmp_path):
    (tmp_path / "content.png").write_bytes(png_bytes(64, 48, seed=1))
    (tmp_path / "style.png").write_bytes(png_bytes(48, 48, seed=2))
    page.set_input_files("#content-file", str(tmp_path / "content.png"))
    page.set_input_files("#style-file", str(tmp_path / "style.png"))
    page.wait_for_selector("#content-thumbs figure")
    page.wait_for_selector("#style-thumbs figure")
    set_fields(page, size=48, iterations=150, weights="random", model="vgg16")
    page.evaluate(WATCH_STAGE)

    page.click("#start")
    wait_status(page, "Done")
    sources = page.evaluate("window.stageSources")
    previews = {s for s in sources if "/preview?v=" in s}
    assert len(previews) >= 2, sources  # the live image changed while the job ran
    # the stage swaps the last preview for the result once the job's end arrives
    page.wait_for_function("() => document.getElementById('stage-img').src.includes('/result')")
    page.wait_for_function("() => document.getElementById('stage-img').naturalWidth === 48")  # the result, loaded

    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename.startswith("painterly-")
    assert Image.open(io.BytesIO(Path(download.path()).read_bytes())).size == (48, 36)

    set_fields(page, iterations=100000)
    page.click("#start")
    wait_status(page, "Iteration")
    page.click("#cancel")
    wait_status(page, "Cancelled")
    jobs = page.evaluate("fetch('/api/jobs').then(r => r.json())")["jobs"]
    assert [j["status"] for j in jobs] == ["cancelled", "done"]
    assert page.locator("#gallery .card").count() == 2
    assert page.is_hidden("#cancel")

    page.once("dialog", lambda dialog: dialog.accept())  # "Delete this run and its picture?"
    page.click("#delete")
    page.wait_for_function("() => document.querySelectorAll('#gallery .card').length === 1")
    jobs = page.evaluate("fetch('/api/jobs').then(r => r.json())")["jobs"]
    assert [j["status"] for j in jobs] == ["done"]
    wait_status(page, "Done")  # the remaining run is shown
    legend = page.eval_on_selector_all("#legend i", "items => items.map(i => getComputedStyle(i).backgroundColor)")
    assert len(legend) == 4 and "rgba(0, 0, 0, 0)" not in legend  # the swatches are coloured under the CSP
