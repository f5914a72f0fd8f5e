"""The static microscope site on a tiny model: every page and link, the search index's content
against values computed here from the model, the incremental rebuild, and a real browser loading
it from file://."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convscope
from convscope.report.site import build_site, layer_slug
from tests.browser import browser_or_skip, screenshot
from tests.models import tiny_bundle

N_IMAGES = 12
K = 4


def _corpus(folder: Path) -> Path:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (28, 30, 3), dtype=np.uint8)).save(
            folder / f"im{i:02d}.png"
        )
    return folder


def _build(bundle, out, corpus, cache, **kw):
    opts = dict(
        corpus=corpus,
        k=K,
        featurevis_steps=3,
        featurevis_size=24,
        embedding_method="pca",
        cache_dir=cache,
        progress=False,
    )
    opts.update(kw)
    return build_site(bundle, out, **opts)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    corpus = _corpus(root / "corpus")
    bundle = tiny_bundle()
    r = _build(bundle, root / "site", corpus, root / "cache")
    return bundle, corpus, root, r


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.refs.append(v)


def _index(site_dir: Path) -> list[list[str]]:
    text = (site_dir / "search-index.js").read_text()
    m = re.fullmatch(r"window\.CONVSCOPE_INDEX=(.*);\n", text, re.S)
    assert m, text[:80]
    return json.loads(m.group(1))


def test_pages_and_every_link_resolve(site):
    bundle, corpus, root, r = site
    out = root / "site"
    meta = json.loads((out / "site.json").read_text())
    assert meta["layers"] == ["act@0", "relu6"]  # the tiny model's pipeline stages
    expected = {"index.html", "images.html", "embedding.html"}
    for name in meta["layers"]:
        channels = {"act@0": 8, "relu6": 16}[name]
        assert meta["units"][name] == list(range(channels))  # every unit by default
        expected.add(f"layers/{layer_slug(name)}.html")
        expected |= {f"units/{layer_slug(name)}/{c}.html" for c in range(channels)}
    expected |= {f"images/{i}.html" for i in range(N_IMAGES)}
    pages = {str(p.relative_to(out)) for p in out.rglob("*.html")}
    assert pages == expected and r.pages == len(expected)
    for page in out.rglob("*.html"):
        parser = _Refs()
        parser.feed(page.read_text())
        assert parser.refs, page
        for ref in parser.refs:
            assert not ref.startswith(("http:", "https:", "/")), (page, ref)  # static, relative
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(out)} links to missing {ref}"
    # pictures: WebP photos and thumbnails, PNG filters and charts
    assert Image.open(out / "assets/images/0_thumb.webp").format == "WEBP"
    assert Image.open(out / "assets/model/filters.png").format == "PNG"
    assert all("loading='lazy'" in tag for tag in re.findall(r"<img[^>]*>", _read(out, "index")))


def _read(out: Path, name: str) -> str:
    return (out / f"{name}.html").read_text()


def test_index_and_pages_hold_the_models_answers(site):
    """The unit pages list the top images mined here independently, the image pages and the index
    the classes the model predicts on each image."""
    bundle, corpus, root, _ = site
    out = root / "site"
    entries = _index(out)
    kinds = {}
    for kind, name, url, detail in entries:
        kinds.setdefault(kind, {})[name] = (url, detail)
    assert set(kinds["unit"]) == {f"act@0:{c}" for c in range(8)} | {
        f"relu6:{c}" for c in range(16)
    }
    assert kinds["layer"]["relu6"][0] == "layers/relu6.html"
    # the model's own predictions, computed here
    paths = sorted(corpus.iterdir())
    x, _ = bundle.prepare([Image.open(p) for p in paths])
    with torch.no_grad():
        probs = bundle.model(x).softmax(1)
    for i, p in enumerate(paths):
        url, detail = kinds["image"][p.name]
        assert url == f"images/{i}.html"
        assert detail == f"predicted: class {int(probs[i].argmax())}"
        info = json.loads((out / f"data/images/{i}.json").read_text())
        top5 = probs[i].topk(5)
        assert [row[0] for row in info["predictions"]] == top5.indices.tolist()
        np.testing.assert_allclose(
            [row[2] for row in info["predictions"]], top5.values.numpy(), atol=1e-5
        )
    assert set(kinds["class"]) == {f"class {int(c)}" for c in probs.argmax(1)}
    # unit pages: the top images of top_units, in order, linked to their image pages
    top = convscope.top_units(bundle, corpus, "relu6", k=K)
    for c in (0, 5):
        html = (out / f"units/relu6/{c}.html").read_text()
        shown = re.findall(r"<a href='\.\./\.\./images/(\d+)\.html'>", html)
        assert [int(s) for s in shown] == top.image_indices[c].tolist()


def test_rebuild_reuses_and_recomputes_only_what_changed(site, tmp_path):
    bundle, corpus, root, first = site
    assert first.reused == 0 and first.computed > 0
    again = _build(bundle, root / "site", corpus, root / "cache")
    assert again.computed == 0 and again.reused == first.computed
    # a new layer: only its files are computed; the rest (images, thumbnails, stats) is reused
    out = tmp_path / "grow"
    light = dict(methods=("gradcam",), featurevis_steps=0, images=4)
    one = _build(bundle, out, corpus, root / "cache", layers=["relu6"], **light)
    keys_one = json.loads((out / "site.json").read_text())["files"]
    two = _build(bundle, out, corpus, root / "cache", layers=["relu6", "conv2"], **light)
    keys_two = json.loads((out / "site.json").read_text())["files"]
    new = set(keys_two) - set(keys_one)
    assert new and all("conv2" in p for p in new)
    assert two.computed == len(new) and two.reused == one.computed
    # a changed corpus image changes the corpus fingerprint: nothing stale is reused
    Image.new("RGB", (28, 30), (255, 0, 0)).save(corpus / "im00.png")
    try:
        three = _build(bundle, out, corpus, root / "cache", layers=["relu6", "conv2"], **light)
        assert three.reused == 0
    finally:
        _corpus(corpus)  # the module's corpus as it was


def test_bad_arguments_write_nothing(tmp_path):
    from convscope.errors import ConvscopeError, LayerError

    corpus = _corpus(tmp_path / "corpus")
    with pytest.raises(LayerError):
        _build(tiny_bundle(), tmp_path / "out", corpus, tmp_path / "cache", layers=["nope"])
    with pytest.raises(ConvscopeError, match="out of range"):
        _build(tiny_bundle(), tmp_path / "out", corpus, tmp_path / "cache", units=[99])
    with pytest.raises(ConvscopeError, match="unknown method|no method"):
        _build(tiny_bundle(), tmp_path / "out", corpus, tmp_path / "cache", methods=["nope"])
    assert not (tmp_path / "out").exists()


def test_cli_site(tmp_path, capsys):
    from convscope.cli.main import main

    corpus = _corpus(tmp_path / "corpus")
    code = main(
        [
            "site",
            "--model",
            "tests.models:tiny_bundle",
            "--corpus",
            str(corpus),
            "--layers",
            "relu6",
            "--units",
            "3",
            "--images",
            "2",
            "-k",
            "2",
            "--featurevis-steps",
            "0",
            "--embedding",
            "pca",
            "--cache",
            str(tmp_path / "cache"),
            "--no-progress",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == str((tmp_path / "out" / "index.html").resolve())
    meta = json.loads((tmp_path / "out/site.json").read_text())
    assert meta["images"] == 2 and len(meta["units"]["relu6"]) == 3
    assert not list((tmp_path / "out").rglob("*_featurevis.webp"))
    code = main(["site", "--model", "tests.models:tiny_bundle", "--layers", "nope"])
    assert code == 2 and "error" in capsys.readouterr().err


def test_browser_search_and_follow_a_unit_link(site):
    _, _, root, _ = site
    out = root / "site"
    pw, browser = browser_or_skip()
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "index.html").resolve().as_uri())
        assert page.inner_text("h1") == "tiny"
        page.fill("#q", "relu6:1")
        names = page.locator("#results a").all_inner_texts()
        assert names and all(n.startswith("relu6:1") for n in names)  # relu6:1, relu6:10-15
        page.locator("#results a", has_text="relu6:1").first.click()
        page.wait_for_load_state()
        assert page.url.endswith("/units/relu6/1.html")
        assert page.inner_text("h1") == "unit relu6:1"
        # lazily loaded pictures arrive once scrolled to; every one decodes
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_function(
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        screenshot(page, "site_unit_page.png")
        # a class name finds images
        page.fill("#q", "class")
        assert page.locator("#results .kind", has_text="image").count() > 0
        assert not errors
    finally:
        browser.close()
        pw.stop()
