"""Nearest neighbours in a layer's feature space: the corpus images a network finds closest to a
query image (lecture 002: test images in the first column, their nearest training images in the
last hidden layer beside them; Krizhevsky et al. 2012, Fig. 4).

Exact search with faiss (``IndexFlatIP`` on L2-normalized features for ``metric="cosine"``,
``IndexFlatL2`` for ``metric="l2"``; on GPUs when a faiss with GPU support is installed), over the
cached pooled features of :func:`convscope.features`. The score returned is the cosine similarity
(higher is closer) or the Euclidean distance (lower is closer). faiss was chosen over
scikit-learn's NearestNeighbors for its exact flat indexes that scale to millions of rows with
BLAS, and over a hand-written torch search so the same call can use an approximate faiss index
later; tests check it against brute force.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from convscope.corpus.features import Features, features, pool_activation
from convscope.corpus.sources import Corpus, DatasetCorpus
from convscope.corpus.sources import open as open_corpus
from convscope.errors import ConvscopeError

__all__ = ["METRICS", "Neighbours", "knn", "neighbours", "query_features"]

METRICS = ("cosine", "l2")


@dataclass
class Neighbours:
    """``indices`` (Q, k) global corpus indices, nearest first; ``scores`` (Q, k) cosine
    similarities or L2 distances; ``query_labels`` names of the queries; ``meta``."""

    indices: np.ndarray
    scores: np.ndarray
    metric: str
    query_labels: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    query_pixels: list[np.ndarray] = field(default_factory=list, repr=False)

    def figure(self, corpus: Corpus, bundle: Any, size: int = 80) -> Any:
        """Lecture 002's figure: each query, then its neighbours as the model saw them."""
        from convscope.viz.corpus import neighbours_figure

        rows = [[corpus.pixels(int(i), bundle) for i in row] for row in self.indices]
        return neighbours_figure(
            self.query_pixels, rows, self.scores.tolist(), size=size, query_labels=self.query_labels
        )


def knn(
    corpus_features: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``corpus_features`` (M, C) for each of ``queries`` (Q, C):
    (row numbers (Q, k), scores (Q, k)), by faiss."""
    import faiss

    if metric not in METRICS:
        raise ConvscopeError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    base = np.ascontiguousarray(corpus_features, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if base.ndim != 2 or q.ndim != 2 or base.shape[1] != q.shape[1]:
        raise ConvscopeError(
            f"features of shapes {base.shape} and {q.shape} cannot be compared (same width needed)"
        )
    if metric == "cosine":
        base, q = _unit_rows(base), _unit_rows(q)
        index = faiss.IndexFlatIP(base.shape[1])
    else:
        index = faiss.IndexFlatL2(base.shape[1])
    if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:  # pragma: no cover - GPU builds only
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(base)
    scores, rows = index.search(q, min(k, base.shape[0]))
    if metric == "l2":
        scores = np.sqrt(np.maximum(scores, 0))
    return rows.astype(np.int64), scores


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.maximum(norms, 1e-12)


def query_features(
    bundle: Any, images: Sequence[Any] | Corpus, layer: str, pool: str = "avg", batch_size: int = 32
) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """Pooled features (Q, C) of query images (paths, ``sample:NAME``, PIL images, arrays, or a
    corpus), computed as the corpus features are, their labels and the images the model saw."""
    from convscope.core.guard import preserved
    from convscope.core.recorder import Recorder
    from convscope.corpus.sources import batches
    from convscope.data.images import image_label, load_images

    if isinstance(images, Corpus):
        corpus, labels = images, [images.label(i) for i in range(len(images))]
    else:
        items = [images] if isinstance(images, str | os.PathLike) else list(images)
        if not items:
            raise ConvscopeError("no query image given")
        loaded = load_images(items)  # a bad query is an error, not a skip
        corpus = DatasetCorpus(loaded)
        labels = [image_label(src, i) for i, src in enumerate(items)]
    rows = []
    n_batches = (len(corpus) + batch_size - 1) // batch_size
    with preserved(bundle.model), torch.inference_mode(), Recorder(bundle.model, [layer]) as rec:
        for b in batches(corpus, bundle, range(n_batches), batch_size):
            if b.skipped:
                i, reason = b.skipped[0]
                raise ConvscopeError(f"query {labels[i]} cannot be decoded: {reason}")
            rec.clear()
            bundle.model(b.x)
            rows.append(pool_activation(rec.activation(layer), pool).float().cpu())
    pixels = [corpus.pixels(i, bundle) for i in range(len(corpus))]
    return torch.cat(rows).numpy(), labels, pixels


def neighbours(
    model: Any,
    query_images: Any,
    corpus: Any,
    layer: str,
    *,
    k: int = 8,
    metric: str = "cosine",
    pool: str = "avg",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
) -> Neighbours:
    """The ``k`` corpus images nearest to each query in ``layer``'s pooled feature space.

    The corpus features come from :func:`convscope.features` (cached; undecodable corpus images
    are left out). ``k`` larger than the corpus gives every image. Returns :class:`Neighbours`.
    """
    import convscope
    from convscope.core.layers import resolve_layer

    if metric not in METRICS:
        raise ConvscopeError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConvscopeError(f"k must be an integer >= 1, not {k!r}")
    bundle = convscope.load_model(model)
    corpus = open_corpus(corpus)
    spec = resolve_layer(bundle.model, layer).spec
    feats: Features = features(
        bundle,
        corpus,
        spec,
        pool=pool,
        cache_dir=cache_dir,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    q, labels, pixels = query_features(bundle, query_images, spec, pool, batch_size)
    valid = feats.indices
    rows, scores = knn(np.asarray(feats.array[valid], dtype=np.float32), q, k, metric)
    return Neighbours(
        indices=valid[rows],
        scores=scores,
        metric=metric,
        query_labels=labels,
        query_pixels=pixels,
        meta={
            "layer": spec,
            "pool": pool,
            "corpus": corpus.describe(),
            "model": bundle.name,
            "k": int(rows.shape[1]),
            "features": str(feats.path),
        },
    )
