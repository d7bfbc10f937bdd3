"""The page of `sketchkit serve` in a real headless browser (Debian's chromium + chromium-driver, Selenium):
draw three strokes with pointer events, segment, recolour one stroke by clicking, undo/redo, save the
stroke-3 JSON and read its labels back; a screenshot goes to the test's temporary folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sketchkit.io import read_sketch

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no browser: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
           ".ci/run does) to run the page test",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(*extra):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "sketchkit.cli", "serve", "--backbone", "tiny-random",
                                "--port", str(port), "--quiet", *map(str, extra)], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).json()["warm"]:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


@pytest.fixture()
def server():
    with running_server() as base:
        yield base


@pytest.fixture()
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _wait(condition, timeout=60.0, what="the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _stroke_labels(driver) -> list[str | None]:
    from selenium.webdriver.common.by import By

    return [g.get_attribute("data-label") for g in driver.find_elements(By.CSS_SELECTOR, "#strokes g[data-stroke]")]


def test_draw_segment_recolour_by_click_and_save(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(server + "/")
    _wait(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready"), what="the page to connect")
    assert driver.find_element(By.ID, "random-badge").is_displayed()  # tiny-random: says RANDOM WEIGHTS
    assert "RANDOM WEIGHTS" in driver.find_element(By.ID, "random-badge").text
    driver.find_element(By.ID, "labels").send_keys("house, tree, sun")

    canvas = driver.find_element(By.ID, "canvas")
    for k in range(3):  # three horizontal strokes: pointerdown, pointermoves, pointerup
        chain = ActionChains(driver).move_to_element_with_offset(canvas, -240 + 160 * k, -60 + 50 * k).click_and_hold()
        for _ in range(6):
            chain.move_by_offset(20, 0)
        chain.release().perform()
    assert len(_stroke_labels(driver)) == 3 and _stroke_labels(driver) == [None, None, None]

    driver.find_element(By.ID, "segment").click()
    _wait(lambda: all(_stroke_labels(driver)), what="the segmentation")
    model = _stroke_labels(driver)
    assert set(model) <= {"house", "tree", "sun"}
    legend = [item.get_attribute("data-label") for item in driver.find_elements(By.CSS_SELECTOR, "#legend li[data-label]")]
    assert legend[:3] == ["house", "tree", "sun"]

    chosen = next(name for name in legend if name != model[0])
    driver.find_element(By.TAG_NAME, "body").send_keys(str(legend.index(chosen) + 1))  # number key picks the label
    first = driver.find_element(By.CSS_SELECTOR, '#strokes g[data-stroke="0"]')
    ActionChains(driver).move_to_element(first).click().perform()  # recolour stroke 0 by clicking it
    _wait(lambda: _stroke_labels(driver)[0] == chosen, what="the recolouring")
    recoloured = driver.find_element(By.CSS_SELECTOR, '#strokes g[data-stroke="0"] path.stroke').get_attribute("stroke")
    assert recoloured == driver.execute_script("return colour(arguments[0])", chosen) != \
        driver.execute_script("return colour(arguments[0])", model[0])

    first = driver.find_element(By.CSS_SELECTOR, '#strokes g[data-stroke="0"]')  # drawn anew
    ActionChains(driver).move_to_element_with_offset(canvas, 0, 300).move_to_element(first).perform()  # hover
    tooltip = _wait(lambda: driver.find_element(By.ID, "tooltip").text, what="the tooltip")
    assert f"stroke 0: {chosen} (corrected)" in tooltip and "confidence" in tooltip and "top-" in tooltip

    ActionChains(driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()  # Ctrl-Z
    _wait(lambda: _stroke_labels(driver)[0] == model[0], what="undo")
    ActionChains(driver).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys("z").key_up(Keys.SHIFT) \
        .key_up(Keys.CONTROL).perform()  # Ctrl-Shift-Z
    _wait(lambda: _stroke_labels(driver)[0] == chosen, what="redo")

    driver.find_element(By.ID, "save-json").click()
    saved = driver.downloads / "drawing.labels.json"
    _wait(lambda: saved.is_file() and not list(driver.downloads.glob("*.crdownload")), what="the download")
    doc = json.loads(saved.read_text())
    assert doc["img_w"] == 1100 and doc["img_h"] == 770 and len(doc["scene_strokes"]) > 3
    expected = [chosen, *model[1:]]
    assert list(read_sketch(saved).labels) == [expected[i] for i in doc["source_strokes"]]

    screenshot = tmp_path / "serve_page.png"
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


def test_folder_mode_page_lasso_progress_saves_and_resumes(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    folder = tmp_path / "drawings"
    folder.mkdir()
    for example in sorted((REPO / "examples").glob("*.svg")):
        shutil.copy(example, folder / example.name)
    driver = browser
    with running_server("--annotate", folder, "--labels", "house,tree,sun") as base:
        driver.get(base + "/")
        progress = lambda: driver.find_element(By.ID, "progress").text  # noqa: E731
        _wait(lambda: progress() == "0 / 3 done" and all(_stroke_labels(driver)), what="the first sketch, segmented")
        assert "car_road.svg" in driver.find_element(By.ID, "item-name").text
        driver.find_element(By.TAG_NAME, "body").send_keys("2")  # pick "tree"
        canvas = driver.find_element(By.ID, "canvas")
        half_w, half_h = canvas.size["width"] // 2 - 4, canvas.size["height"] // 2 - 4
        lasso = ActionChains(driver).move_to_element_with_offset(canvas, -half_w, -half_h).click_and_hold()
        for dx, dy in ((half_w, -half_h), (half_w, half_h), (-half_w, half_h), (-half_w, -half_h + 2)):
            lasso.move_to_element_with_offset(canvas, dx, dy)
        lasso.release().perform()  # a lasso around every stroke
        _wait(lambda: set(_stroke_labels(driver)) == {"tree"}, what="the lasso")
        driver.find_element(By.ID, "save-folder").click()  # Save & next
        _wait(lambda: progress() == "1 / 3 done" and "house_tree_sun.svg" in driver.find_element(By.ID, "item-name").text,
              what="the next sketch")
        saved = folder / "car_road.labels.json"
        assert saved.is_file() and set(read_sketch(saved).labels) == {"tree"}
    with running_server("--annotate", folder) as base:  # reopening resumes at the first sketch not done
        driver.get(base + "/")
        _wait(lambda: driver.find_element(By.ID, "progress").text == "1 / 3 done", what="the resumed page")
        _wait(lambda: "house_tree_sun.svg" in driver.find_element(By.ID, "item-name").text, what="the resumed sketch")
