"""Streaming top-k per channel: the bookkeeping of top-k mining (Zeiler & Fergus 2014, Sec. 4).

For a layer with output ``a`` of shape (N, C, H, W), each image ``n`` (global corpus index
``g_n``) scores channel ``c`` by

    s[n, c] = max_{i,j} a[n, c, i, j]          (reduce="max", the paper's choice)
    s[n, c] = mean_{i,j} a[n, c, i, j]         (reduce="mean")

and its *position* is ``argmax_{i,j} a[n, c, i, j]`` (the first in row-major order among equal
maxima), the neuron whose receptive field is cut out as the patch. The top k of channel c are
the k images with the largest ``s[·, c]``, ties broken by the smaller global index. Each image
enters each channel at most once, so ``(-s, g)`` is a total order and the top k are unique: the
answer does not depend on batch size, order of arrival or how the corpus was split between
processes, and partial top-k lists merge exactly (:meth:`TopK.merge`).

State is O(C x k) whatever the corpus size: each batch's (C, N) scores are concatenated with the
(C, k) state and cut back to k by a two-key stable sort.
"""

from __future__ import annotations

import torch

from convscope.errors import ConvscopeError

__all__ = ["REDUCTIONS", "TopK", "score_batch"]

REDUCTIONS = ("max", "mean")

# Empty slots: -inf value and the largest index, so they sort after every real entry.
_EMPTY_INDEX = torch.iinfo(torch.int64).max


def score_batch(a: torch.Tensor, reduce: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (N, C) and flat argmax positions (N, C) of a (N, C, H, W) activation."""
    flat = a.flatten(2)
    values, where = flat.max(dim=2)
    if reduce == "mean":
        values = flat.mean(dim=2)
    return values, where


class TopK:
    """The running top ``k`` of ``channels`` channels of a layer whose map has ``width`` columns.

    Tensors (on the device of the first update, moved to the CPU by :meth:`state_dict`):
    ``values`` (C, k) float, ``indices`` (C, k) int64 global indices, ``where`` (C, k) int64 flat
    positions; unfilled slots hold -inf and an index of 2**63 - 1.
    """

    def __init__(self, channels: int, k: int, width: int, reduce: str = "max") -> None:
        if reduce not in REDUCTIONS:
            raise ConvscopeError(f"unknown reduce {reduce!r}; use one of {', '.join(REDUCTIONS)}")
        if k < 1:
            raise ConvscopeError(f"k must be at least 1, not {k}")
        self.k, self.width, self.reduce = int(k), int(width), reduce
        self.values = torch.full((channels, k), -torch.inf)
        self.indices = torch.full((channels, k), _EMPTY_INDEX, dtype=torch.int64)
        self.where = torch.full((channels, k), -1, dtype=torch.int64)

    @property
    def channels(self) -> int:
        return self.values.shape[0]

    def update(self, a: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in a batch: ``a`` (N, C, H, W) activations of the images with global ``indices``."""
        if a.ndim != 4 or a.shape[1] != self.channels or a.shape[3] != self.width:
            raise ConvscopeError(
                f"activation of shape {tuple(a.shape)} does not match a top-k of "
                f"{self.channels} channels and {self.width} columns"
            )
        values, where = score_batch(a, self.reduce)
        if not torch.isfinite(values).all():
            bad = indices[(~torch.isfinite(values)).any(dim=1).cpu()].tolist()
            raise ConvscopeError(
                f"the layer's activations are not finite (NaN or inf) for corpus images {bad[:5]}"
            )
        n = values.shape[0]
        idx = indices.to(values.device).view(n, 1).expand(n, self.channels)
        self._fold(values.t(), idx.t(), where.t())

    def merge(self, other: TopK) -> None:
        """Fold in another partial top-k (of other images): the result is the top-k of the union."""
        if (other.channels, other.width, other.reduce) != (self.channels, self.width, self.reduce):
            raise ConvscopeError("cannot merge top-k lists of different layers or options")
        self._fold(other.values, other.indices, other.where)

    def _fold(self, values: torch.Tensor, indices: torch.Tensor, where: torch.Tensor) -> None:
        device = values.device
        if self.values.device != device:
            self.values, self.indices, self.where = (
                t.to(device) for t in (self.values, self.indices, self.where)
            )
        v = torch.cat([self.values, values.to(self.values.dtype)], dim=1)
        g = torch.cat([self.indices, indices], dim=1)
        w = torch.cat([self.where, where], dim=1)
        # Lexicographic (value descending, index ascending): sort by the minor key, then stably
        # by the major key.
        order = torch.argsort(g, dim=1, stable=True)
        v, g, w = v.gather(1, order), g.gather(1, order), w.gather(1, order)
        order = torch.argsort(v, dim=1, descending=True, stable=True)[:, : self.k]
        self.values, self.indices, self.where = (
            v.gather(1, order),
            g.gather(1, order),
            w.gather(1, order),
        )

    def filled(self) -> int:
        """How many slots per channel hold a real entry (the same for every channel)."""
        return int((self.indices[0] != _EMPTY_INDEX).sum()) if self.channels else 0

    def positions(self) -> torch.Tensor:
        """(C, k, 2) row and column of each entry in the layer's map (-1 for empty slots)."""
        w = self.where.cpu()
        rows = torch.where(w >= 0, w // self.width, -1)
        cols = torch.where(w >= 0, w % self.width, -1)
        return torch.stack([rows, cols], dim=-1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "values": self.values.cpu(),
            "indices": self.indices.cpu(),
            "where": self.where.cpu(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("values", "indices", "where"):
            if tuple(state[key].shape) != tuple(self.values.shape):
                raise ConvscopeError(f"top-k state {key} has shape {tuple(state[key].shape)}")
        self.values, self.indices, self.where = (
            state["values"].clone(),
            state["indices"].clone(),
            state["where"].clone(),
        )
