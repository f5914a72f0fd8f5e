"""The explorer in a real browser against a real uvicorn on a free loopback port: upload a photo,
switch method and layer, see the map change, and read the predictions of the Python API."""

from __future__ import annotations

import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

import convscope
from tests.browser import browser_or_skip, screenshot
from tests.models import tiny_bundle

pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from convscope.server.app import create_app

    bundle = tiny_bundle()
    app = create_app(bundle, cache_dir=tmp_path_factory.mktemp("cache"))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started
    yield bundle, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_explorer_in_a_browser(server, tmp_path):
    import httpx

    bundle, url = server
    rng = np.random.default_rng(7)
    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(photo)
    ref = convscope.explain(bundle, Image.open(photo), "gradcam")
    pw, browser = browser_or_skip()
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('method').options.length > 5")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("tr.pred")
        rows = page.locator("tr.pred").all_inner_texts()
        expected = ref.top_predictions(5)[0]
        assert [r.split("\t")[0] for r in rows] == [name for _, name, _ in expected]
        assert [r.split("\t")[1] for r in rows] == [f"{100 * p:.1f}%" for _, _, p in expected]

        def map_loaded(previous: str | None) -> str:
            page.wait_for_function(
                "([prev]) => { const m = document.getElementById('map');"
                " const src = m.getAttribute('src');"
                " return src && src !== prev && m.complete && m.naturalWidth > 0; }",
                arg=[previous or ""],
            )
            return page.get_attribute("#map", "src")

        first = map_loaded(None)
        assert "method=gradcam" in first
        page.select_option("#layer", "act@0")
        second = map_loaded(first)
        assert "method=gradcam" in second and "layer=act%400" in second
        page.select_option("#method", "saliency")
        third = map_loaded(second)
        assert "method=saliency" in third
        maps = [
            httpx.get(url + src if src.startswith("/") else src).content
            for src in (first, second, third)
        ]
        assert len({bytes(m) for m in maps}) == 3  # each switch changed the picture
        want = np.asarray(ref.overlay(0))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(maps[0]))), want)
        # hovering the map lists the strongest units there
        page.hover("#map", position={"x": 100, "y": 100})
        page.wait_for_selector("#acts a")
        assert page.locator("#acts a").first.inner_text().startswith("act@0:")
        screenshot(page, "explorer.png")
        assert not errors
    finally:
        browser.close()
        pw.stop()
