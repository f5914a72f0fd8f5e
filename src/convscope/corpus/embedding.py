"""2-D embeddings of feature vectors and the picture of images placed at their embedded positions
(Karpathy's "cnnembed": t-SNE of CNN codes, images snapped to a grid; lecture 002).

Methods, all seeded and deterministic for a given seed:

- ``"pca"``: the first two principal components, ``Y = (X - mean) V[:, :2]`` with V from the SVD
  of the centered X (signs fixed: each component's largest loading is positive).
- ``"tsne"``: openTSNE's t-SNE (van der Maaten & Hinton 2008; FFT-accelerated gradients of
  Linderman et al. 2019 from 2000 points, Barnes-Hut below), PCA initialization, perplexity
  ``min(30, (n - 1) / 3)``. openTSNE rather than
  scikit-learn's TSNE: it is several times faster on thousands of points and supports adding
  points to an existing map.
- ``"umap"``: umap-learn (McInnes et al. 2018), an optional extra (``pip install
  convscope[umap]``): it pulls numba and pynndescent and its first import JIT-compiles for ~15 s.

Grid snapping: the embedded points are scaled into a ``cols x rows`` grid (``ceil(sqrt(n))``
square by default) and each point gets its own cell by a minimum-cost assignment of points to
cells (squared distance, scipy's ``linear_sum_assignment``; a greedy nearest-free-cell pass above
2500 points), so no two images overlap and neighbours stay neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convscope.errors import ConvscopeError

__all__ = ["EMBEDDINGS", "Embedding", "embedding", "embedding_map", "snap_to_grid"]

EMBEDDINGS = ("tsne", "umap", "pca")


@dataclass
class Embedding:
    """``xy`` (n, 2) positions of the rows ``indices`` (global corpus indices for features)."""

    xy: np.ndarray
    indices: np.ndarray
    method: str
    seed: int


def embedding(features: Any, method: str = "tsne", *, seed: int = 0, **options: Any) -> Embedding:
    """2-D positions of feature vectors.

    ``features`` is a :class:`~convscope.corpus.features.Features` (its valid rows are embedded)
    or an (n, C) array or tensor. ``options`` go to openTSNE's ``TSNE`` or umap's ``UMAP``.
    """
    from convscope.corpus.features import Features

    if method not in EMBEDDINGS:
        raise ConvscopeError(f"unknown embedding {method!r}; use one of {', '.join(EMBEDDINGS)}")
    if isinstance(features, Features):
        indices = features.indices
        x = np.asarray(features.array[features.valid], dtype=np.float64)
    else:
        x = np.asarray(
            features.detach().cpu().numpy() if hasattr(features, "detach") else features,
            dtype=np.float64,
        )
        indices = np.arange(x.shape[0])
    if x.ndim != 2:
        raise ConvscopeError(f"features to embed are an (n, C) array, not {x.shape}")
    n = x.shape[0]
    if n < 3:
        raise ConvscopeError(f"an embedding needs at least 3 points, not {n}")
    if not np.isfinite(x).all():
        raise ConvscopeError("the features to embed contain NaN or inf")
    if method == "pca":
        xy = _pca(x)
    elif method == "tsne":
        xy = _tsne(x, seed, options)
    else:
        xy = _umap(x, seed, options)
    return Embedding(np.asarray(xy, dtype=np.float64), np.asarray(indices), method, seed)


def _pca(x: np.ndarray) -> np.ndarray:
    centered = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(comps.shape[0]), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    xy = centered @ comps.T
    if xy.shape[1] < 2:  # a single feature: a line
        xy = np.concatenate([xy, np.zeros((xy.shape[0], 1))], axis=1)
    return xy


def _tsne(x: np.ndarray, seed: int, options: dict[str, Any]) -> np.ndarray:
    from openTSNE import TSNE

    opts = {
        "n_components": 2,
        "perplexity": min(30.0, (x.shape[0] - 1) / 3),
        "initialization": "pca",
        "random_state": seed,
        "n_jobs": 1,
        "verbose": False,
        # Barnes-Hut is the faster gradient below a few thousand points, FFT above
        "negative_gradient_method": "bh" if x.shape[0] < 2000 else "fft",
    }
    opts.update(options)
    return np.asarray(TSNE(**opts).fit(x))


def _umap(x: np.ndarray, seed: int, options: dict[str, Any]) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise ConvscopeError(
            "method='umap' needs umap-learn: pip install 'convscope[umap]' (or use tsne or pca)"
        ) from None
    opts = {"n_components": 2, "random_state": seed, "n_neighbors": min(15, x.shape[0] - 1)}
    opts.update(options)
    return np.asarray(umap.UMAP(**opts).fit_transform(x))


def snap_to_grid(
    xy: np.ndarray, cols: int | None = None, rows: int | None = None
) -> tuple[np.ndarray, int, int]:
    """Assign each point its own cell of a ``cols x rows`` grid, near its scaled position:
    ((n, 2) integer (column, row) per point, cols, rows)."""
    xy = np.asarray(xy, dtype=np.float64)
    n = xy.shape[0]
    if cols is None and rows is None:
        cols = rows = max(1, math.ceil(math.sqrt(n)))
    elif cols is None:
        cols = math.ceil(n / rows)
    elif rows is None:
        rows = math.ceil(n / cols)
    if cols * rows < n:
        raise ConvscopeError(f"a {cols} x {rows} grid has fewer cells than {n} images")
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    scaled = (xy - lo) / np.where(hi > lo, hi - lo, 1.0)
    target = scaled * np.array([cols - 1, rows - 1])
    cells = np.stack(np.meshgrid(np.arange(cols), np.arange(rows), indexing="xy"), -1).reshape(
        -1, 2
    )
    if n <= 2500:
        from scipy.optimize import linear_sum_assignment

        cost = ((target[:, None, :] - cells[None, :, :]) ** 2).sum(-1)
        point, cell = linear_sum_assignment(cost)
        out = np.empty((n, 2), dtype=np.int64)
        out[point] = cells[cell]
        return out, cols, rows
    # Greedy: points in order of their distance to their nearest cell centre, each takes the
    # nearest free cell (searched in growing rings).
    free = np.ones((rows, cols), dtype=bool)
    out = np.empty((n, 2), dtype=np.int64)
    rounded = np.rint(target).astype(np.int64)
    order = np.argsort(((target - rounded) ** 2).sum(1), kind="stable")
    for p in order:
        c0, r0 = rounded[p]
        for radius in range(max(cols, rows) + 1):
            c_lo, c_hi = max(0, c0 - radius), min(cols - 1, c0 + radius)
            r_lo, r_hi = max(0, r0 - radius), min(rows - 1, r0 + radius)
            window = free[r_lo : r_hi + 1, c_lo : c_hi + 1]
            if window.any():
                rr, cc = np.nonzero(window)
                d = (rr + r_lo - target[p, 1]) ** 2 + (cc + c_lo - target[p, 0]) ** 2
                j = int(np.argmin(d))
                r, c = rr[j] + r_lo, cc[j] + c_lo
                free[r, c] = False
                out[p] = (c, r)
                break
    return out, cols, rows


def embedding_map(
    emb: Embedding,
    images: Any,
    *,
    bundle: Any = None,
    labels: Sequence[int] | np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
    cell: int = 48,
    cols: int | None = None,
    rows: int | None = None,
) -> Any:
    """The cnnembed picture: each image at its embedded position, snapped to a grid, on one
    canvas (a PIL image). ``images`` is a corpus (thumbnails of ``emb.indices``, as ``bundle``
    sees them when given) or a sequence of (H, W, 3) uint8 arrays in the embedding's order.
    ``labels`` (one per embedded point, e.g. the model's top-1 class) colour each image's frame,
    with a legend of the most frequent ones named by ``label_names``."""
    from PIL import Image

    from convscope.corpus.sources import Corpus
    from convscope.viz.corpus import grid_canvas

    if isinstance(images, Corpus):
        thumbs = []
        for i in emb.indices:
            if bundle is not None:
                thumbs.append(images.pixels(int(i), bundle))
            else:
                thumbs.append(np.asarray(images.load(int(i)).convert("RGB")))
    else:
        thumbs = [np.asarray(a) for a in images]
    if len(thumbs) != len(emb.xy):
        raise ConvscopeError(f"{len(thumbs)} images for {len(emb.xy)} embedded points")
    where, cols, rows = snap_to_grid(emb.xy, cols, rows)
    thumbs = [np.asarray(Image.fromarray(t).resize((cell, cell), Image.BILINEAR)) for t in thumbs]
    return grid_canvas(thumbs, where, cols, rows, labels=labels, label_names=label_names)
