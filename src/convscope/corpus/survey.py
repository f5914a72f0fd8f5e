"""One pass for a small corpus: the top-k of several layers, the pooled features of another and
the model's top-1 class per image, all from the same forward passes (the demo page's dataset
section uses it). Features are kept in memory (N x C floats): for large corpora use
:func:`convscope.features`, which caches them on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from convscope.corpus.features import pool_activation
from convscope.corpus.mining import TopUnits, _result, _TopKConsumer
from convscope.corpus.sources import Batch, Corpus
from convscope.corpus.sources import open as open_corpus
from convscope.corpus.stream import stream

__all__ = ["Survey", "survey"]


@dataclass
class Survey:
    """``top``: the mined layers; ``features`` (N, C) pooled features of ``feature_layer`` (NaN
    rows for skipped images); ``valid`` (N,) bool; ``top1`` (N,) predicted class or -1."""

    top: TopUnits
    features: np.ndarray
    valid: np.ndarray
    top1: np.ndarray
    feature_layer: str
    seconds: float


class _Collect:
    def __init__(self, n: int, index: int, pool: str) -> None:
        self.n, self.index, self.pool = n, index, pool
        self.rows: np.ndarray | None = None
        self.top1 = np.full(n, -1, dtype=np.int64)

    def update(self, batch: Batch, acts: list[torch.Tensor], output: Any) -> None:
        f = pool_activation(acts[self.index], self.pool).float().cpu().numpy()
        if self.rows is None:
            self.rows = np.full((self.n, f.shape[1]), np.nan, dtype=np.float32)
        idx = batch.indices.numpy()
        self.rows[idx] = f
        if isinstance(output, torch.Tensor) and output.ndim == 2:
            self.top1[idx] = output.argmax(1).cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def gather(self) -> None:  # pragma: no cover - surveys run in one process
        raise NotImplementedError("survey() runs in one process; use convscope.features")


def survey(
    model: Any,
    corpus: Any,
    mine_layers: Sequence[str],
    feature_layer: str,
    *,
    k: int = 9,
    pool: str = "avg",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
) -> Survey:
    """Top-k of ``mine_layers``, pooled features of ``feature_layer`` and top-1 predictions of
    ``corpus`` in one streaming pass (one process, nothing on disk)."""
    import convscope
    from convscope.core.layers import resolve_layer

    bundle = convscope.load_model(model)
    corpus: Corpus = open_corpus(corpus)
    specs = [resolve_layer(bundle.model, n).spec for n in mine_layers]
    fspec = resolve_layer(bundle.model, feature_layer).spec
    layers = specs + ([fspec] if fspec not in specs else [])
    mine = _TopKConsumer(k, "max", specs)
    collect = _Collect(len(corpus), layers.index(fspec), pool)

    class _Both:
        def update(self, batch, acts, output):
            mine.update(batch, acts[: len(specs)], output)
            collect.update(batch, acts, output)

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

        def gather(self):  # pragma: no cover
            collect.gather()

    info = stream(
        bundle,
        corpus,
        layers,
        [_Both()],
        key={"k": k, "survey": fspec},
        job="survey",
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        desc="survey",
    )
    top = _result(bundle, corpus, mine, info, k, "max")
    valid = np.ones(len(corpus), dtype=bool)
    for i, _ in info["skipped"]:
        valid[i] = False
    return Survey(top, collect.rows, valid, collect.top1, fspec, info["seconds"])
