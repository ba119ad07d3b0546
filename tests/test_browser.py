"""A real browser: headless Debian Chromium, driven by Playwright, uses the page."""

import shutil
import threading
import time
from pathlib import Path

import pytest

import cnn_eval
import cnn_model
from cnnlib import server
from serving_model import face_photo, tiny_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Debian's own Chromium; Playwright never downloads a browser here.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def _browser_missing():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -r requirements.txt)"
    if not Path(CHROMIUM).is_file():
        return "Chromium is not installed (apt-get install chromium; .ci/run does it)"
    return None


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(_browser_missing() is not None,
                                 reason=_browser_missing() or "")]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    path = tiny_model(folder)
    model = cnn_model.load_model(path)
    trained = cnn_eval.trained_params(path, model, {"classes": [], "aliases": {},
                                                    "crop_faces": False, "face_margin": 0.1})
    httpd = server.make_server(server.create_app(server.load_predictor(model, path, trained)),
                               "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.effective_port}"
    httpd.close()
    thread.join(5)


def test_page_boxes_a_face_and_names_its_class(base_url, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = face_photo(tmp_path / "photo.jpg", 1)
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda r: None if r.url.startswith((base_url, "blob:", "data:"))
                    else outside.append(r.url))
            page.goto(base_url + "/")
            page.wait_for_function("document.getElementById('model').textContent"
                                   ".startsWith('Model ')", timeout=15_000)
            page.set_input_files("#file", str(photo))
            page.wait_for_selector(".result .box", timeout=30_000)
            boxes = page.locator(".result .box")
            assert boxes.count() == 1
            assert "whole" not in (boxes.first.get_attribute("class") or "")
            predicted = page.locator(".result .predicted").first.text_content()
            classes = page.evaluate("facts.classes")
            assert predicted in classes
            assert predicted in boxes.first.text_content()
            assert page.locator(".result .bar").count() == len(classes)
            box = boxes.first.bounding_box()
            image = page.locator(".result img").first.bounding_box()
            assert box["width"] > 20 and image["x"] <= box["x"] <= image["x"] + image["width"]
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert outside == []  # the page fetched nothing but this server


def test_webcam_mode_sends_frames_and_draws_the_chart(base_url):
    """Chromium's fake camera (a test pattern, no face): frames are scored, the chart fills."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            page = browser.new_page()
            page.goto(base_url + "/")
            page.wait_for_function("document.getElementById('model').textContent"
                                   ".startsWith('Model ')", timeout=15_000)
            page.click("#camera")
            deadline = time.monotonic() + 30
            while page.evaluate("history.length") < 3 and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            assert page.evaluate("history.length") >= 3
            assert "whole frame" in page.text_content("#live-label")
            assert page.locator("#live-overlay .box").count() == 1
            page.click("#camera")  # stops the camera and the frames
        finally:
            browser.close()
