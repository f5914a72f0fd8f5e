"""The microscope: a static site with a page for the model, each layer, each unit, each image and
the embedding map (OpenAI Microscope's shape, for any model; Zeiler & Fergus 2014 for the unit
cards, lecture 002 for the embedding).

Every number and picture comes from the Python API (:func:`convscope.list_layers`,
:func:`convscope.layer_stats`, :func:`convscope.filters`, :func:`convscope.top_units`,
:func:`convscope.activations`, :func:`convscope.visualize`, :func:`convscope.compare`,
:func:`convscope.features`, :func:`convscope.embedding`); this module lays them out.

The site is static files only: it opens from ``file://`` and from any static host. Pictures are
WebP (photos, overlays, feature visualizations; quality :data:`WEBP_QUALITY`) or lossless PNG
(filters and charts, whose pixels must stay exact), each ``<img>`` lazily loaded with its size.

Incremental: ``site.json`` records, for each computed file, a key made of the model's
fingerprint, the corpus's fingerprint and the settings that made it. A rebuild recomputes only the
files whose key changed or that are missing; top-k results are kept in ``data/topk/<layer>/``
(``convscope mine``'s format, which :mod:`convscope.server` reads too) and pooled features in
:func:`convscope.features`'s cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from convscope.errors import ConvscopeError, LayerError
from convscope.report.site_html import SEARCH_JS, STYLE_CSS, esc, img, index_js, link, shell

__all__ = ["DEFAULT_CORPUS", "DEFAULT_METHODS", "SiteResult", "build_site", "layer_slug"]

FORMAT = "convscope-site/1"
DEFAULT_CORPUS = "samples-crops:64"
#: the attribution methods of the image pages: one forward and one backward pass each
DEFAULT_METHODS = ("saliency", "guided_backprop", "gradcam", "layercam")
WEBP_QUALITY = 80
THUMB = 64  # pixels of a unit's or an image's thumbnail
MAP_SIDE = 128  # pixels of a unit's map over one of its top images
UNIT_CHUNK = 32  # units whose top images are recorded in one activations() call


@dataclass
class SiteResult:
    """What :func:`build_site` made: ``files`` (relative path -> bytes) when built in memory, the
    pages and files written, how many computed files were reused from the last build, the site's
    size on disk and the build time."""

    out: Path | None
    pages: int
    written: int
    reused: int
    computed: int
    bytes: int
    seconds: float
    files: dict[str, bytes] = field(default_factory=dict)


def layer_slug(name: str) -> str:
    """A file name for a layer: itself when it is already safe, else the safe characters and a
    short hash (``_swish@1`` -> ``_swish_1-1b2c3d``), so two layers never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if safe == name and not name.startswith("."):
        return name
    return f"{safe.lstrip('.')}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _webp(image: Image.Image | np.ndarray, side: int | None = None) -> bytes:
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    im = im.convert("RGB")
    if side is not None and max(im.size) != side:
        scale = side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.BICUBIC if scale > 1 else Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=WEBP_QUALITY, method=4)
    return buf.getvalue()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


class _Store:
    """The site's files: those of this build, and the computed files kept from the last one."""

    def __init__(self, out: Path | None, rebuild: bool) -> None:
        self.out = out
        self.files: dict[str, bytes] = {}
        self.keys: dict[str, str] = {}
        self.old: dict[str, str] = {}
        self.reused = 0
        self.computed = 0
        if out is not None and not rebuild and (out / "site.json").is_file():
            try:
                meta = json.loads((out / "site.json").read_text())
                if meta.get("format") == FORMAT:
                    self.old = dict(meta.get("files", {}))
            except (OSError, ValueError):
                self.old = {}

    def fresh(self, path: str, key: str) -> bool:
        """True when ``path`` was made with ``key`` by the last build and is still there."""
        if self.out is not None and self.old.get(path) == key and (self.out / path).is_file():
            self.keys[path] = key
            self.reused += 1
            return True
        return False

    def put(self, path: str, data: bytes, key: str | None = None) -> None:
        self.files[path] = data
        if key is not None:
            self.keys[path] = key
            self.computed += 1

    def read(self, path: str) -> bytes:
        if path in self.files:
            return self.files[path]
        assert self.out is not None
        return (self.out / path).read_bytes()


def build_site(
    model: Any,
    out: str | os.PathLike | None,
    *,
    corpus: Any = DEFAULT_CORPUS,
    layers: Sequence[str] | None = None,
    units: int | Sequence[int] | None = None,
    images: int | None = None,
    k: int = 9,
    methods: Sequence[str] = DEFAULT_METHODS,
    featurevis_steps: int = 64,
    featurevis_size: int = 128,
    feature_layer: str | None = None,
    embedding_method: str = "tsne",
    stats_images: int = 16,
    maps: bool = True,
    layer_table: bool = True,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    rebuild: bool = False,
    progress: bool = True,
    top: Any = None,
    features: Any = None,
) -> SiteResult:
    """Build the microscope site of ``model`` over ``corpus`` into the folder ``out``.

    Args:
        model: a model name, ``nn.Module`` or bundle (:func:`convscope.load_model`).
        out: the site's folder (created; a rebuild reuses what it holds), or None to build in
            memory only (``result.files``; nothing is reused).
        corpus: anything :func:`convscope.corpus.open` takes (default :data:`DEFAULT_CORPUS`).
        layers: the layers with pages (default: the pipeline's stages,
            :func:`convscope.inside.activations.pipeline_layers`); each must output a 4-D map.
        units: the units with pages per layer: a number (the strongest by their best activation)
            or channel indices; None: every unit.
        images: image pages for the first ``images`` corpus images (None: all).
        k: top images per unit.
        methods: the attribution methods on each image page (:func:`convscope.compare`).
        featurevis_steps: steps of each unit's feature visualization (lucid preset, at
            ``featurevis_size`` pixels); 0 leaves them out.
        feature_layer: the layer of the embedding map's pooled features (default: the last
            pipeline stage).
        embedding_method: ``"tsne"``, ``"pca"`` or ``"umap"`` (:func:`convscope.embedding`).
        stats_images: corpus images the model page's per-layer statistics run on (0: none).
        maps: show each unit's map over its top images (one forward pass of them per layer).
        layer_table: list every layer of the model on the model page (one traced pass).
        cache_dir: the features cache (default :func:`convscope.corpus.features.default_cache_dir`).
        rebuild: ignore what the folder holds and recompute everything.
        progress: progress bars.
        top, features: results already computed (a :class:`~convscope.corpus.mining.TopUnits`
            holding ``layers``; ``(array, valid, top1)`` of ``feature_layer``), e.g. by the demo
            page's single pass over its corpus.

    Returns a :class:`SiteResult`. Bad arguments raise a ConvscopeError before any file is written;
    the files are written all at once at the end (:func:`convscope.fileio.write_all`).
    """
    import convscope
    from convscope.corpus.sources import open as open_corpus
    from convscope.corpus.stream import model_fingerprint
    from convscope.inside.activations import pipeline_layers

    start = time.perf_counter()
    bundle = convscope.load_model(model)
    c = open_corpus(corpus)
    if len(c) == 0:
        raise ConvscopeError(f"the corpus {c.name} holds no image")
    for name, v, least in (
        ("k", k, 1),
        ("batch_size", batch_size, 1),
        ("stats_images", stats_images, 0),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ConvscopeError(f"{name} must be an integer >= {least}, not {v!r}")
    if isinstance(featurevis_steps, bool) or not isinstance(featurevis_steps, int):
        raise ConvscopeError(f"featurevis_steps must be an integer, not {featurevis_steps!r}")
    if images is not None and (isinstance(images, bool) or not isinstance(images, int)):
        raise ConvscopeError(f"images must be an integer or None, not {images!r}")
    method_names = [convscope.method_info(m).name for m in methods]  # unknown names fail here
    root = None if out is None else Path(out)
    if root is not None and root.exists() and not root.is_dir():
        raise ConvscopeError(f"output path {root} exists and is not a folder")
    example = _example(bundle)
    from convscope.core.layers import resolve_layer

    stages = pipeline_layers(bundle.model, example) if not (layers and feature_layer) else []
    chosen = [resolve_layer(bundle.model, n).spec for n in (layers or stages)]
    if not chosen:
        raise LayerError("the site needs at least one layer")
    feature_layer = resolve_layer(bundle.model, feature_layer or stages[-1]).spec
    n_images = len(c) if images is None else max(0, min(images, len(c)))

    store = _Store(root, rebuild)
    fp = model_fingerprint(bundle.model)
    cfp = c.fingerprint()
    base = (FORMAT, fp, cfp)

    tops = _top_k(bundle, c, chosen, k, batch_size, store, base, top, progress)
    unit_lists = {name: _pick_units(tops[name], units) for name in chosen}
    feats = _features(bundle, c, feature_layer, cache_dir, batch_size, features, progress)
    top1 = feats[2]
    class_of = _class_namer(bundle)

    index: list[list[str]] = []
    pages: dict[str, bytes] = {}
    foot = f"convscope {convscope.__version__} · {bundle.name} · corpus {c.name} ({len(c)} images)"

    def page(path: str, title: str, body: str) -> None:
        depth = path.count("/")
        pages[path] = shell(title, body, root="../" * depth, model=bundle.name, footer=foot)

    # -- image thumbnails (every corpus image: the embedding map and the unit pages use them) ------
    thumbs = _thumbnails(c, bundle, store, base, progress)
    # -- model page -------------------------------------------------------------------------------
    page(
        "index.html",
        f"{bundle.name}: microscope",
        _model_page(
            bundle, c, chosen, unit_lists, store, base, stats_images, batch_size, layer_table
        ),
    )
    index.append(["model", bundle.name, "index.html", f"{len(chosen)} layers"])
    # -- layer and unit pages ---------------------------------------------------------------------
    bar = _bar(sum(len(v) for v in unit_lists.values()), "site units", progress)
    try:
        for name in chosen:
            lt = tops[name]
            slug = layer_slug(name)
            fv = _featurevis(
                bundle, name, unit_lists[name], featurevis_steps, featurevis_size, store, base
            )
            similar = _similar_units(bundle, name, lt.shape[0], unit_lists[name])
            cards = _unit_assets(
                bundle, c, lt, unit_lists[name], store, base, batch_size, bar, maps
            )
            for ch in unit_lists[name]:
                if cards[ch]["card"]:
                    cards[ch]["card_size"] = _size_of(store.read(cards[ch]["card"]))
                classes = sorted(
                    {class_of(int(top1[i])) for i in lt.image_indices[ch].tolist() if top1[i] >= 0}
                )
                page(
                    f"units/{slug}/{ch}.html",
                    f"{name}:{ch}",
                    _unit_page(
                        name, ch, lt, c, cards[ch], fv.get(ch), similar, n_images, classes, thumbs
                    ),
                )
                index.append(
                    [
                        "unit",
                        f"{name}:{ch}",
                        f"units/{slug}/{ch}.html",
                        "top images: " + ", ".join(classes),
                    ]
                )
            page(
                f"layers/{slug}.html",
                name,
                _layer_page(bundle, name, lt, unit_lists[name], cards, fv, store, base),
            )
            index.append(["layer", name, f"layers/{slug}.html", f"{lt.shape[0]} units"])
    finally:
        if bar is not None:
            bar.close()
    # -- image pages ------------------------------------------------------------------------------
    fired = _units_per_image(tops, unit_lists)
    image_assets = _image_assets(
        bundle, c, n_images, method_names, store, base, batch_size, progress
    )
    for i in range(n_images):
        label = c.label(i)
        cls = class_of(int(top1[i])) if top1[i] >= 0 else ""
        assets = dict(image_assets[i])
        if not assets.get("error"):
            assets["_preds"] = store.read(assets["preds"])
            for part in ("compare", "strip"):
                if assets[part]:
                    assets[f"{part}_size"] = _size_of(store.read(assets[part]))
        page(f"images/{i}.html", label, _image_page(i, label, assets, fired.get(i, [])))
        index.append(["image", label, f"images/{i}.html", f"predicted: {cls}" if cls else ""])
    pages["images.html"] = shell(
        "images",
        _images_page(c, n_images, thumbs, top1, class_of),
        root="",
        model=bundle.name,
        footer=foot,
    )
    # -- embedding map ----------------------------------------------------------------------------
    page(
        "embedding.html",
        "embedding",
        _embedding_page(feats, feature_layer, embedding_method, thumbs, n_images, store, base, c),
    )
    for cls in sorted({class_of(int(t)) for t in top1[:n_images] if t >= 0}):
        first = next(i for i in range(n_images) if top1[i] >= 0 and class_of(int(top1[i])) == cls)
        index.append(["class", cls, f"images/{first}.html", "predicted for corpus images"])

    store.put("style.css", STYLE_CSS.encode())
    store.put("search.js", SEARCH_JS.encode())
    store.put("search-index.js", index_js(index))
    for path, data in pages.items():
        store.put(path, data)
    seconds = time.perf_counter() - start
    meta = {
        "format": FORMAT,
        "model": {"name": bundle.name, "fingerprint": fp},
        "corpus": c.describe(),
        "layers": chosen,
        "feature_layer": feature_layer,
        "units": {n: list(u) for n, u in unit_lists.items()},
        "images": n_images,
        "k": k,
        "files": store.keys,
        "seconds": round(seconds, 2),
    }
    store.put("site.json", (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    written = 0
    size = 0
    if root is not None:
        from convscope.fileio import write_all

        write_all(root, store.files)
        written = len(store.files)
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    else:
        size = sum(len(v) for v in store.files.values())
    return SiteResult(
        out=root,
        pages=len(pages),
        written=written,
        reused=store.reused,
        computed=store.computed,
        bytes=size,
        seconds=time.perf_counter() - start,
        files=store.files if root is None else {},
    )


# -- computing (calls into the API) -----------------------------------------------------------------


def _example(bundle: Any) -> torch.Tensor:
    side = getattr(bundle.preprocess, "crop", None) or bundle.meta.get("input_size", 224)
    return torch.zeros(1, 3, side, side, device=bundle.device)


def _bar(total: int, desc: str, progress: bool) -> Any:
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="unit" if "unit" in desc else "image")


def _top_k(bundle, c, layers, k, batch_size, store: _Store, base, given, progress):
    """Each layer's top-k: from ``given``, from ``data/topk/<layer>/`` when its key matches, or
    mined in one pass for all the layers missing."""
    from convscope.corpus.mining import TopUnits, load_top_units, top_units

    out, missing = {}, []
    for name in layers:
        if given is not None and name in getattr(given, "layers", {}):
            out[name] = given[name]
            continue
        folder = f"data/topk/{layer_slug(name)}"
        key = _key(base, "topk", name, k)
        if store.fresh(f"{folder}/topk.json", key) and store.fresh(
            f"{folder}/topk.safetensors", key
        ):
            out[name] = load_top_units(store.out / folder)[name]
        else:
            missing.append(name)
    if missing:
        mined = top_units(bundle, c, missing, k=k, batch_size=batch_size, progress=progress)
        for name in missing:
            one = TopUnits({name: mined[name]}, dict(mined.meta))
            folder = f"data/topk/{layer_slug(name)}"
            key = _key(base, "topk", name, k)
            for rel, data in _topk_files(one).items():
                store.put(f"{folder}/{rel}", data, key)
            out[name] = mined[name]
    return out


def _topk_files(one: Any) -> dict[str, bytes]:
    """The two files :meth:`TopUnits.save` writes, as bytes (written with the rest of the site)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        one.save(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def _pick_units(lt: Any, units: int | Sequence[int] | None) -> list[int]:
    n = lt.values.shape[0]
    if units is None:
        return list(range(n))
    if isinstance(units, int) and not isinstance(units, bool):
        if units < 1:
            raise ConvscopeError(f"units must be >= 1, not {units}")
        return sorted(lt.values[:, 0].argsort(descending=True)[:units].tolist())
    picked = [int(u) for u in units]
    bad = [u for u in picked if not 0 <= u < n]
    if bad:
        raise ConvscopeError(f"unit(s) {bad} out of range for {lt.layer} (0-{n - 1})")
    return sorted(dict.fromkeys(picked))


def _features(bundle, c, layer, cache_dir, batch_size, given, progress):
    if given is not None:
        array, valid, top1 = given
        return np.asarray(array), np.asarray(valid, dtype=bool), np.asarray(top1)
    import convscope

    f = convscope.features(
        bundle, c, layer, cache_dir=cache_dir, batch_size=batch_size, progress=progress
    )
    top1 = f.top1 if f.top1 is not None else np.full(len(f), -1, dtype=np.int64)
    return np.asarray(f.array), np.asarray(f.valid), np.asarray(top1)


def _class_namer(bundle: Any):
    names = bundle.class_names

    def name(i: int) -> str:
        if names is not None and 0 <= i < len(names):
            return str(names[i])
        return f"class {i}"

    return name


def _thumbnails(c, bundle, store: _Store, base, progress) -> dict[int, str]:
    paths = {}
    todo = []
    for i in range(len(c)):
        path = f"assets/images/{i}_thumb.webp"
        paths[i] = path
        if not store.fresh(path, _key(base, "thumb", i, THUMB)):
            todo.append(i)
    bar = _bar(len(todo), "site thumbnails", progress)
    for i in todo:
        try:
            pix = c.pixels(i, bundle)
        except ConvscopeError:
            paths[i] = ""
            continue
        store.put(paths[i], _webp(pix, THUMB), _key(base, "thumb", i, THUMB))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return paths


def _featurevis(bundle, layer, chans, steps, size, store: _Store, base) -> dict[int, str]:
    """One lucid-preset visualization per unit, batched per layer (16 units per run)."""
    if steps <= 0 or not chans:
        return {}
    import convscope

    slug = layer_slug(layer)
    paths, todo = {}, []
    for ch in chans:
        path = f"assets/units/{slug}/{ch}_featurevis.webp"
        paths[ch] = path
        if not store.fresh(path, _key(base, "featurevis", layer, ch, steps, size)):
            todo.append(ch)
    for s in range(0, len(todo), 16):
        part = todo[s : s + 16]
        r = convscope.visualize(
            bundle, [f"channel:{layer}:{ch}" for ch in part], steps=steps, size=size, seed=0
        )
        for j, ch in enumerate(part):
            key = _key(base, "featurevis", layer, ch, steps, size)
            store.put(paths[ch], _webp(r.image(j)), key)
    return paths


def _similar_units(bundle: Any, layer: str, channels: int, chans: Sequence[int]) -> dict:
    """Per unit, the 5 units of the layer whose filters are nearest by cosine: the layer's own
    convolution, or the last convolution inside it with one filter per unit."""
    import convscope
    from convscope.core.layers import resolve_layer
    from convscope.inside.filters import is_convolution

    ref = resolve_layer(bundle.model, layer)
    conv = None
    if is_convolution(ref.module):
        conv = ref.name
    else:
        for n, m in ref.module.named_modules():
            if n and is_convolution(m) and getattr(m, "out_channels", None) == channels:
                conv = f"{ref.name}.{n}" if ref.name else n
    if conv is None:
        return {}
    try:
        f = convscope.filters(bundle, conv)
    except ConvscopeError:
        return {}
    if f.n != channels:
        return {}
    if channels < 2:
        return {}
    return {"conv": conv, **{i: f.similar(i, k=min(5, channels - 1)) for i in chans}}


def _unit_assets(bundle, c, lt, chans, store: _Store, base, batch_size, bar, maps) -> dict:
    """Per unit: its card of top-k patches (cut at the receptive-field boxes) and its top images
    with the unit's map overlaid and the box drawn; one activations() pass per chunk of units."""
    import convscope
    from convscope.corpus.cards import unit_card

    slug = layer_slug(lt.layer)
    out: dict[int, dict] = {}
    todo = []
    for ch in chans:
        key = _key(
            base, "unit", lt.layer, ch, lt.values[ch].tolist(), lt.image_indices[ch].tolist()
        )
        paths = {
            "card": f"assets/units/{slug}/{ch}_card.webp",
            "thumb": f"assets/units/{slug}/{ch}_thumb.webp",
            "maps": [f"assets/units/{slug}/{ch}_map{r}.webp" for r in range(lt.k)] if maps else [],
            "key": key,
        }
        out[ch] = paths
        if all(store.fresh(p, key) for p in [paths["card"], paths["thumb"], *paths["maps"]]):
            if bar is not None:
                bar.update(1)
        else:
            todo.append(ch)
    for s in range(0, len(todo), UNIT_CHUNK):
        part = todo[s : s + UNIT_CHUNK]
        wanted = sorted({int(i) for ch in part for i in lt.image_indices[ch].tolist()})
        pixels = {i: c.pixels(i, bundle) for i in wanted}
        if maps:
            items = [c.load(i) for i in wanted]
            tensors = all(isinstance(t, torch.Tensor) for t in items)
            batch = torch.stack(items) if tensors else items
            acts = convscope.activations(bundle, batch, [lt.layer], batch_size=batch_size)
            recorded = acts.maps[acts.layers[0]]
            row = {i: r for r, i in enumerate(wanted)}
        for ch in part:
            paths = out[ch]
            key = paths["key"]
            if lt.boxes is not None:
                card = unit_card(lt, ch, c, bundle, size=64)
                store.put(paths["card"], _webp(card), key)
                best = lt.boxes[ch, 0].tolist()
                pix = pixels[int(lt.image_indices[ch, 0])]
                patch = pix[best[0] : best[2], best[1] : best[3]]
                store.put(paths["thumb"], _webp(patch, THUMB), key)
            else:
                paths["card"] = ""
                store.put(paths["thumb"], _webp(pixels[int(lt.image_indices[ch, 0])], THUMB), key)
            if maps:
                _unit_maps(lt, ch, recorded, row, pixels, paths["maps"], store, key)
            if bar is not None:
                bar.update(1)
    return out


def _unit_maps(lt, ch, recorded, row, pixels, paths, store: _Store, key) -> None:
    """The unit's map over each top image (bilinear, one scale for the row: the best activation is
    the top of the colour map), the receptive field of the maximum outlined; drawn at
    :data:`MAP_SIDE` pixels."""
    from convscope.viz.receptive_field import draw_boxes
    from convscope.viz.render import overlay, to_pil

    idx = [int(i) for i in lt.image_indices[ch].tolist()]
    m = recorded[[row[i] for i in idx], ch].float()
    h, w = pixels[idx[0]].shape[:2]
    side = min(MAP_SIDE, max(h, w))
    sh, sw = round(h * side / max(h, w)), round(w * side / max(h, w))
    up = torch.nn.functional.interpolate(m[:, None], size=(sh, sw), mode="bilinear")[:, 0]
    up = (up / m.amax().clamp_min(1e-12)).clamp(0, 1).cpu()
    for r, i in enumerate(idx):
        small = np.asarray(Image.fromarray(pixels[i]).resize((sw, sh), Image.BILINEAR))
        im = to_pil(overlay(torch.from_numpy(small.copy()), up[r], alpha=0.5))
        if lt.boxes is not None:
            t, left, b, rt = (v * side / max(h, w) for v in lt.boxes[ch, r].tolist())
            box = (int(t), int(left), max(int(t) + 1, round(b)), max(int(left) + 1, round(rt)))
            im = draw_boxes(im, [box], scale=1, width=2)
        store.put(paths[r], _webp(im), key)


def _image_assets(bundle, c, n, methods, store: _Store, base, batch_size, progress) -> list[dict]:
    """Per image page: the photo as the model saw it, the methods side by side
    (:func:`convscope.compare`, one batch per chunk), the pipeline strip
    (:func:`convscope.activations`) and the top-5 predictions (kept in the page's key file)."""
    import convscope
    from convscope.viz.compare import comparison_figure
    from convscope.viz.render import to_pil

    out, todo = [], []
    for i in range(n):
        key = _key(base, "image", i, list(methods))
        paths = {
            "photo": f"assets/images/{i}.webp",
            "compare": f"assets/images/{i}_compare.webp",
            "strip": f"assets/images/{i}_strip.webp",
            "preds": f"data/images/{i}.json",
            "key": key,
        }
        out.append(paths)
        if not all(store.fresh(p, key) for k_, p in paths.items() if k_ != "key"):
            todo.append(i)
    bar = _bar(len(todo), "site images", progress)
    step = max(1, min(batch_size, 16))
    for s in range(0, len(todo), step):
        part = todo[s : s + step]
        items, ok = [], []
        for i in part:
            try:
                items.append(c.load(i))
                ok.append(i)
            except ConvscopeError:
                out[i] = {"key": out[i]["key"], "error": True}
        if not ok:
            continue
        batch = torch.stack(items) if all(isinstance(t, torch.Tensor) for t in items) else items
        from convscope.api import prepare_inputs

        x, pixels, _ = prepare_inputs(bundle, batch)
        cmp = convscope.compare(bundle, x, list(methods)) if methods else None
        acts = convscope.activations(bundle, x)
        first = None
        if cmp is not None and cmp.explanations:
            first = next(iter(cmp.explanations.values()))
            for r in cmp.explanations.values():
                r.pixels, r.labels = pixels, [c.label(i) for i in ok]
        preds = first.top_predictions(5) if first is not None else _predictions(bundle, x)
        for j, i in enumerate(ok):
            paths = out[i]
            key = paths["key"]
            if pixels is not None:
                store.put(paths["photo"], _webp(to_pil(pixels[j].cpu())), key)
            else:
                store.put(paths["photo"], _webp(c.pixels(i, bundle)), key)
            if first is not None:
                store.put(paths["compare"], _webp(comparison_figure(cmp.explanations, j)), key)
            else:
                paths["compare"] = ""
            store.put(paths["strip"], _webp(acts.strip(j)), key)
            info = {
                "predictions": [[a, b, round(p, 6)] for a, b, p in preds[j]],
                "skipped": dict(cmp.skipped) if cmp is not None else {},
            }
            store.put(paths["preds"], json.dumps(info).encode(), key)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _predictions(bundle, x) -> list[list[tuple[int, str, float]]]:
    import convscope

    r = convscope.explain(bundle, x, "saliency")
    return r.top_predictions(5)


# -- pages (layout only) ----------------------------------------------------------------------------


def _model_page(
    bundle, c, chosen, unit_lists, store: _Store, base, n_stats, batch_size, layer_table
):
    import convscope
    from convscope.report.page import table

    parts = [
        f"<h1>{esc(bundle.name)}</h1><p class='note'>The model's layers"
        + (f", their statistics over {min(n_stats, len(c))} images" if n_stats else "")
        + f" of the corpus {esc(c.name)}, its first-layer filters, and "
        "a page for each layer below and each unit of it. Search by layer, "
        "unit (<code>LAYER:K</code>), class or image name above.</p>",
        "<h2>Layers with pages</h2><div class='grid'>",
    ]
    for name in chosen:
        parts.append(
            f"<div class='card'>{link(f'layers/{layer_slug(name)}.html', name)}"
            f"<div class='note'>{len(unit_lists[name])} unit pages</div></div>"
        )
    parts.append("</div>")
    # first-layer filters
    key = _key(base, "filters-first")
    if not store.fresh("assets/model/filters.png", key):
        try:
            grid = convscope.filters(bundle).grid()
            store.put("assets/model/filters.png", _png(grid), key)
        except ConvscopeError:
            key = ""
    if key:
        w, h = _size_of(store.read("assets/model/filters.png"))
        parts.append(
            "<h2>First-layer filters</h2><p class='note'>zero is mid-grey; one symmetric scale "
            "for the layer (convscope.filters)</p>"
            + img("assets/model/filters.png", "first-layer filters", w, h, "pixel")
        )
    # statistics chart
    n = min(n_stats, len(c))
    key = _key(base, "stats", n)
    if n == 0:
        pass
    elif not store.fresh("assets/model/stats.png", key):
        items = [c.load(i) for i in range(n)]
        batch = torch.stack(items) if all(isinstance(t, torch.Tensor) for t in items) else items
        s = convscope.layer_stats(bundle, batch, batch_size=min(batch_size, 8))
        store.put("assets/model/stats.png", _png(s.chart(title=f"{bundle.name}, {n} images")), key)
    if n:
        w, h = _size_of(store.read("assets/model/stats.png"))
        parts.append(
            "<h2>Per-layer statistics</h2>"
            + img("assets/model/stats.png", "per-layer statistics", w, h)
        )
    if not layer_table:
        return "".join(parts)
    rows = [
        [
            li.name,
            li.type,
            "" if li.output_shape is None else " x ".join(str(s) for s in li.output_shape),
            li.params,
        ]
        for li in convscope.list_layers(bundle)
    ]
    parts.append(
        "<h2>All layers</h2>" + table(["layer", "type", "output", "parameters"], rows, {3})
    )
    return "".join(parts)


def _layer_page(bundle, name, lt, chans, cards, fv, store: _Store, base) -> str:
    import convscope

    slug = layer_slug(name)
    chans_, h, w = lt.shape
    parts = [
        f"<h1>{esc(name)}</h1><p class='note'>{chans_} units, {h} x {w} map; "
        f"{len(chans)} with pages. Each card: the unit's best patch (its receptive field in its "
        "top image)" + (", its feature visualization" if fv else "") + ".</p>"
    ]
    key = _key(base, "filters", name)
    path = f"assets/layers/{slug}_filters.png"
    have = store.fresh(path, key)
    if not have:
        try:
            grid = convscope.filters(bundle, name).grid()
            store.put(path, _png(grid), key)
            have = True
        except ConvscopeError:
            have = False
    if have:
        fw, fh = _size_of(store.read(path))
        parts.append("<h2>Filters</h2>" + img("../" + path, f"filters of {name}", fw, fh, "pixel"))
    parts.append("<h2>Units</h2><div class='grid'>")
    for ch in chans:
        pics = img(f"../{cards[ch]['thumb']}", f"best patch of {name}:{ch}", THUMB, THUMB)
        if ch in fv:
            pics += img(f"../{fv[ch]}", f"feature visualization of {name}:{ch}", THUMB, THUMB)
        parts.append(
            f"<div class='card unit'><a href='../units/{esc(slug)}/{ch}.html'>{pics}"
            f"<div>unit {ch}</div><div class='note'>max {float(lt.values[ch, 0]):.3g}</div></a>"
            "</div>"
        )
    parts.append("</div>")
    return "".join(parts)


def _unit_page(name, ch, lt, c, card, fv_path, similar, n_images, classes, thumbs) -> str:
    slug = layer_slug(name)
    up = "../../"
    parts = [
        f"<h1>unit {esc(name)}:{ch}</h1><p class='note'>"
        f"{link(f'{up}layers/{slug}.html', 'layer ' + name)} · best activation "
        f"{float(lt.values[ch, 0]):.4g} · top images predicted as: {esc(', '.join(classes))}</p>"
    ]
    if fv_path:
        parts.append(
            "<h2>Feature visualization</h2><p class='note'>an image optimized to excite the unit "
            "(convscope.visualize, lucid preset)</p>" + img(up + fv_path, "feature vis.", 192, 192)
        )
    if card["card"]:
        parts.append(
            f"<h2>Top-{lt.k} patches</h2><p class='note'>the receptive field of the unit's "
            "maximum in each of its best images, with the value (Zeiler &amp; Fergus 2014)</p>"
            + img(up + card["card"], f"top patches of {name}:{ch}", *card["card_size"])
        )
    if card["maps"]:
        parts.append(
            "<h2>Where it fires</h2><p class='note'>its map over each top image (one scale for "
            "the row), the receptive field of the maximum outlined</p><div class='grid'>"
        )
    else:
        parts.append(f"<h2>Its top {lt.k} images</h2><div class='grid'>")
    for r, i in enumerate(lt.image_indices[ch].tolist()):
        if card["maps"]:
            pic = img(up + card["maps"][r], c.label(int(i)), MAP_SIDE, MAP_SIDE)
        else:
            pic = img(up + thumbs[int(i)], c.label(int(i)), THUMB, THUMB)
        if i < n_images:
            pic = f"<a href='{up}images/{int(i)}.html'>{pic}</a>"
        parts.append(
            f"<div class='thumb'>{pic}{esc(c.label(int(i)))}<br>{float(lt.values[ch, r]):.3g}</div>"
        )
    parts.append("</div>")
    if similar.get(ch):
        items = ", ".join(
            link(f"{j}.html", f"{name}:{j}") + f" ({cos:.2f})" for j, cos in similar[ch]
        )
        parts.append(
            f"<h2>Units with the most similar weights</h2><p class='note'>cosine of the filters "
            f"of {esc(similar['conv'])}: {items}</p>"
        )
    return "".join(parts)


def _image_page(i: int, label: str, assets: dict, fired: list[tuple[str, int, float]]) -> str:
    from convscope.report.page import bars

    up = "../"
    if assets.get("error"):
        return f"<h1>{esc(label)}</h1><p class='note'>this image could not be decoded.</p>"
    info = json.loads(assets["_preds"]) if "_preds" in assets else None
    parts = [f"<h1>{esc(label)}</h1>"]
    parts.append(img(up + assets["photo"], label, 224, 224))
    if info is not None:
        parts.append(
            "<h2>Top-5 predictions</h2>" + bars([(b, p) for _, b, p in info["predictions"]])
        )
    if assets.get("compare"):
        parts.append(
            "<h2>Attribution methods side by side</h2><p class='note'>each for the top-1 class, "
            "each on its own colour scale</p>"
            + f"<a href='{up}{esc(assets['compare'])}'>"
            + img(up + assets["compare"], "methods side by side", *assets["compare_size"])
            + "</a>"
        )
        if info is not None and info.get("skipped"):
            parts.append(
                "<p class='note'>skipped: "
                + esc("; ".join(f"{m}: {why}" for m, why in info["skipped"].items()))
                + "</p>"
            )
    parts.append(
        "<h2>Activations, stem to head</h2>"
        + f"<a href='{up}{esc(assets['strip'])}'>"
        + img(up + assets["strip"], "activations strip", *assets["strip_size"])
        + "</a>"
    )
    if fired:
        items = " · ".join(
            link(f"{up}units/{layer_slug(n)}/{ch}.html", f"{n}:{ch}") + f" ({v:.3g})"
            for n, ch, v in fired[:40]
        )
        parts.append(
            f"<h2>Units with this image in their top images</h2><p class='note'>{items}</p>"
        )
    return "".join(parts)


def _units_per_image(tops, unit_lists) -> dict[int, list[tuple[str, int, float]]]:
    fired: dict[int, list[tuple[str, int, float]]] = {}
    for name, chans in unit_lists.items():
        lt = tops[name]
        for ch in chans:
            for r, i in enumerate(lt.image_indices[ch].tolist()):
                fired.setdefault(int(i), []).append((name, ch, float(lt.values[ch, r])))
    for v in fired.values():
        v.sort(key=lambda t: -t[2])
    return fired


def _images_page(c, n_images, thumbs, top1, class_of) -> str:
    parts = [
        f"<h1>Images</h1><p class='note'>{n_images} of the {len(c)} images of {esc(c.name)} have "
        "a page.</p><div class='grid'>"
    ]
    for i in range(n_images):
        if not thumbs.get(i):
            continue
        cls = class_of(int(top1[i])) if top1[i] >= 0 else ""
        parts.append(
            f"<div class='thumb'><a href='images/{i}.html'>"
            + img(thumbs[i], c.label(i), THUMB, THUMB)
            + f"</a>{esc(cls)}</div>"
        )
    parts.append("</div>")
    return "".join(parts)


def _embedding_page(feats, layer, method, thumbs, n_images, store: _Store, base, c) -> str:
    import convscope

    array, valid, top1 = feats
    rows = np.flatnonzero(valid)
    key = _key(base, "embedding", layer, method, rows.tolist())
    path = "data/embedding.json"
    if store.fresh(path, key):
        xy = np.asarray(json.loads(store.read(path))["xy"])
    else:
        if len(rows) >= 4:
            emb = convscope.embedding(array[rows], method, seed=0)
            xy = emb.xy  # row r of the valid features (an array's indices are 0..n-1)
        else:
            xy = np.zeros((len(rows), 2))
        store.put(path, json.dumps({"xy": np.asarray(xy).round(5).tolist()}).encode(), key)
    side, cell = 760, 40
    lo, hi = xy.min(0) if len(xy) else 0, xy.max(0) if len(xy) else 1
    span = np.where(hi - lo > 0, hi - lo, 1)
    pos = ((xy - lo) / span * (side - cell)).round().astype(int) if len(xy) else xy
    parts = [
        f"<h1>Embedding map</h1><p class='note'>{method} of the pooled features of "
        f"{esc(layer)} ({len(rows)} images, seed 0): images the layer finds alike lie close. "
        "Click an image for its page.</p>",
        f"<div class='emb' style='width:{side}px;height:{side}px'>",
    ]
    for (x, y), i in zip(pos.tolist(), rows.tolist()):
        if not thumbs.get(i):
            continue
        pic = img(thumbs[i], c.label(i), cell, cell)
        href = f"images/{i}.html" if i < n_images else thumbs[i]
        parts.append(f"<a href='{esc(href)}' style='left:{x}px;top:{y}px'>{pic}</a>")
    parts.append("</div>")
    return "".join(parts)
