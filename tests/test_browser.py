"""07_explore in a real browser: Voilà serves the notebook on loopback, headless Chromium
(Debian's ``chromium``, driven by Playwright with the system browser; never a browser
download) opens it, changes a method, hovers over and clicks a point, and screenshots
each state.

Run alone: ``pytest -m browser``. Screenshots go to ``$MVCPAPER_SCREENSHOTS`` (default: the
test's temporary folder). Skipped where Chromium, Voilà or Playwright are missing, unless
``MVCPAPER_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing them), where that
is a failure instead.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _need(what: str, ok: bool):
    if not ok:
        if os.environ.get("MVCPAPER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{what} is required (MVCPAPER_REQUIRE_BROWSER=1) but missing; .ci/run installs it")
        pytest.skip(f"{what} not installed (apt-get install chromium; pip install -e '.[browser]')")


def _chromium() -> str:
    path = os.environ.get("MVCPAPER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    _need("Debian's chromium", bool(path))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc, timeout: float = 90):
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url.rsplit("/voila", 1)[0] + "/", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"voila did not answer at {url} within {timeout} s")


@pytest.fixture
def served_notebook(tmp_path):
    """07_explore with the smoke preset, served by Voilà; yields (url, cfg)."""
    try:
        import papermill as pm
        import voila  # noqa: F401
    except ImportError:
        _need("voila", False)
    from mvcpaper.presets import resolve
    from mvcpaper.reproduce import notebooks_dir

    cache = tmp_path / "cache"
    cfg = resolve("smoke", cache_dir=cache)
    ds = cfg.load(cfg.datasets[0])
    cfg.features(ds, cfg.backbones[0], progress=False)  # warm the feature cache: the page opens sooner
    nb = tmp_path / "07_explore.ipynb"
    pm.execute_notebook(str(notebooks_dir() / "07_explore.ipynb"), str(nb), prepare_only=True,
                        parameters={"preset": "smoke", "cache_dir": str(cache), "webgl": False})
    port = _free_port()
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "voila", nb.name, f"--port={port}", "--no-browser",
                             "--Voila.ip=127.0.0.1", "--NotebookClient.timeout=600"],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url + "voila", proc)
        yield url, cfg
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _not_blank(path: Path):
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert arr.std() > 10, f"{path} looks blank"


def test_explore_notebook_in_headless_chromium(served_notebook, tmp_path):
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright", False)
    url, cfg = served_notebook
    shots = Path(os.environ.get("MVCPAPER_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    root = ".mvcpaper-explorer"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            page.goto(url, timeout=120_000)
            # the kernel runs the notebook, then the widgets render
            page.wait_for_selector(root, timeout=300_000)
            page.wait_for_function(f"document.querySelector('{root}').innerText.includes('done in')",
                                   timeout=300_000)
            page.wait_for_selector(f"{root} .js-plotly-plot .scatterlayer path.point", timeout=60_000)
            assert page.locator(f"{root} .js-plotly-plot").count() >= 3  # two maps + the matrix
            n_points = page.locator(f"{root} .js-plotly-plot").first.locator(".scatterlayer path.point").count()
            assert n_points == len(cfg.load(cfg.datasets[0]))
            _not_blank(_shot(page, shots, "1_opened"))

            # switch method B to k-means: the scores and panel B's title follow
            page.locator(f"{root} .widget-dropdown", has_text="method B").locator("select").select_option(
                label="KM (kmeans)")
            page.wait_for_function(
                f"document.querySelector('{root} .mvcpaper-scores').innerText.split('KM (kmeans)').length === 3",
                timeout=120_000)
            page.wait_for_function(
                f"Array.from(document.querySelectorAll('{root} .js-plotly-plot .gtitle'))"
                ".some(t => t.textContent.startsWith('B: KM (kmeans)'))", timeout=60_000)
            _not_blank(_shot(page, shots, "2_method_b_switched"))

            # hover over a point of panel A: its image becomes the thumbnail
            caption = page.locator(f"{root} .widget-html", has_text="cluster A:").first
            before = caption.inner_text()
            point = page.locator(f"{root} .js-plotly-plot").first.locator(".scatterlayer path.point").nth(17)
            box = point.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_function(
                "([sel, old]) => { const e = Array.from(document.querySelectorAll(sel))"
                ".find(x => x.innerText.includes('cluster A:')); return e && e.innerText !== old; }",
                arg=[f"{root} .widget-html", before], timeout=60_000)
            hovered = caption.inner_text()
            assert hovered.startswith("#")
            _not_blank(_shot(page, shots, "3_hover"))

            # click it: its cluster opens in the gallery
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            cluster = hovered.split("cluster A:")[1].split()[0]
            page.wait_for_function(
                f"Array.from(document.querySelectorAll('{root} .widget-html'))"
                f".some(x => x.innerText.startsWith('cluster {cluster} of A'))", timeout=60_000)
            assert page.locator(f"{root} .widget-gridbox img").count() > 0
            _not_blank(_shot(page, shots, "4_cluster_gallery"))
        finally:
            browser.close()


def test_cluster_report_in_headless_chromium(tmp_path):
    """``report.html`` of ``mvcpaper cluster``, opened from disk: every cluster's thumbnails
    decode (natural width > 0) and the embedded map is drawn; a full-page screenshot is kept."""
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright", False)
    from test_folder import _colour_folder

    from mvcpaper.folder import cluster_folder

    root = _colour_folder(tmp_path / "imgs")
    cluster_folder(root, tmp_path / "out", k=3, backbones=["pixels"], method="kmeans", progress=False)
    shots = Path(os.environ.get("MVCPAPER_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((tmp_path / "out" / "report.html").as_uri())
        sections = page.locator("section")
        assert sections.count() == 3
        for i in range(3):
            widths = sections.nth(i).locator("img.t").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
            assert len(widths) >= 8 and all(w > 0 for w in widths)
        assert page.locator("img[alt='2-D map']").evaluate("i => i.naturalWidth") > 300
        page.screenshot(path=str(shots / "cluster_report.png"), full_page=True)
        browser.close()
