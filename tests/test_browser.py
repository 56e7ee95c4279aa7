"""The patch browser end to end in a real headless Chromium (Debian's, driven by Playwright).

One page load and a few interactions against the embedded backend: the aggregated map,
a drawn search box with a date range, the thumbnail grid, the item view with its view
dates, the spectrum of a clicked pixel (one line per view) and the GeoTIFF download.
Screenshots go to ``docs/`` (``SPECTRALEARTH_SCREENSHOTS=0`` to skip writing them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def served(patch_catalog):
    from spectralearth.catalog.api import ServeConfig, create_app
    from spectralearth.catalog.api.thread import ServerThread

    s = ServerThread(create_app(ServeConfig(catalog_url=patch_catalog.catalog)))
    yield s
    s.stop()


def _shot(page, name: str) -> None:
    if os.environ.get("SPECTRALEARTH_SCREENSHOTS", "1") != "0":
        page.screenshot(path=str(DOCS / name))


def test_browse_page_in_chromium(served, patch_catalog):
    from playwright.sync_api import sync_playwright

    from spectralearth.catalog.patches import read_patch_items

    items = {it["id"]: it for it in read_patch_items(patch_catalog.catalog)}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                           "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"])
        page = browser.new_page(viewport={"width": 1400, "height": 860}, accept_downloads=True)
        errors, outside = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(served.url) and not r.url.startswith("data:") else None)
        page.goto(served.url + "/browse/")
        page.wait_for_selector("body[data-ready='1']", timeout=60000)
        # zoomed out: aggregated counts that add up to every patch
        counts = page.eval_on_selector_all(".agg-label", "els => els.map(e => Number(e.textContent))")
        assert counts and sum(counts) == 90
        assert "90 patches" in page.inner_text("#info")
        _shot(page, "browser-overview.png")

        # a date range and a box drawn over the patches
        page.fill("#date-from", "2022-01-01")
        page.fill("#date-to", "2024-12-31")
        page.click("#draw-box")
        box = page.locator("#map").bounding_box()
        x0, y0 = box["x"] + 0.05 * box["width"], box["y"] + 0.05 * box["height"]
        x1, y1 = box["x"] + 0.95 * box["width"], box["y"] + 0.95 * box["height"]
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
        page.mouse.move(x1, y1, steps=4)
        page.mouse.up()
        page.wait_for_selector(".thumb img", timeout=30000)
        page.wait_for_function("() => [...document.querySelectorAll('.thumb img')].every(i => i.complete && i.naturalWidth === 128)", timeout=30000)
        shown = page.eval_on_selector_all(".thumb", "els => els.map(e => e.dataset.id)")
        assert 0 < len(shown) <= 24 and set(shown) <= set(items)

        # the item view: dates of its views, thumbnail, spectrum of a clicked pixel, download
        pick = max(shown, key=lambda i: items[i]["properties"]["spectralearth:view_count"])
        page.click(f".thumb[data-id='{pick}']")
        page.wait_for_selector(f"#item-thumb[data-loaded='{pick}']", timeout=30000)
        dates = page.eval_on_selector_all("#item-dates li", "els => els.map(e => e.textContent)")
        want = items[pick]["properties"]["spectralearth:view_datetimes"]
        assert len(dates) == len(want) and all(d.startswith(w.replace("T", " ").replace("Z", "")) for d, w in zip(dates, want, strict=True))
        thumb = page.locator("#item-thumb").bounding_box()
        page.mouse.click(thumb["x"] + thumb["width"] * (64.5 / 128), thumb["y"] + thumb["height"] * (100.5 / 128))
        page.wait_for_selector("#spectrum svg polyline", timeout=30000)
        assert page.get_attribute("#spectrum", "data-row") == "100" and page.get_attribute("#spectrum", "data-col") == "64"
        lines = page.eval_on_selector_all("#spectrum polyline.view-line", "els => [...new Set(els.map(e => e.dataset.datetime))]")
        assert sorted(lines) == sorted(want)
        page.locator("#spectrum").scroll_into_view_if_needed()
        _shot(page, "browser-item.png")
        with page.expect_download(timeout=60000) as dl:
            page.click("#download")
        path = dl.value.path()
        assert Path(path).read_bytes()[:4] in (b"II*\x00", b"MM\x00*") and dl.value.suggested_filename == f"{pick}.tif"

        # zoomed in: the footprints themselves
        it = items[pick]
        w, s, e, n = it["bbox"]
        page.evaluate(f"map.setView([{(s + n) / 2}, {(w + e) / 2}], 11)")
        page.wait_for_function("() => document.querySelectorAll('.leaflet-overlay-pane path').length > 3", timeout=30000)
        assert not errors, json.dumps(errors)
        assert not outside, f"the page reached beyond its server: {outside[:5]}"
        browser.close()
