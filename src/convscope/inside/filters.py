"""Convolution filters as images, and which filters are alike.

A convolution's weight is (out, in / groups, kh, kw): filter ``o`` is an ``in / groups``-channel
kh x kw pattern, matched against its input patch by a dot product, so the filter *is* the pattern
the unit looks for (lecture notes 001-003; the 64 x 3 x 11 x 11 first layer of AlexNet, Krizhevsky
et al. 2012). A layer reading R, G, B is drawn in colour; a deeper one per filter as the mean over
its input channels or one row per input channel, all on one symmetric scale with zero mid-grey
(:mod:`convscope.viz.weights`). In a grouped convolution filter ``o`` reads only the input channels
of its group ``o // (out / groups)``: a depthwise filter is one kh x kw pattern on one channel.

"Is it similar to other filters?": :meth:`Filters.similar` ranks filters by the cosine similarity of
their weights, ``cos(a, b) = a . b / (|a| |b|)`` (0 for an all-zero filter), and
:meth:`Filters.order` sorts them so that similar filters sit together: the leaf order of an
average-linkage hierarchical clustering on the cosine distance ``1 - cos``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image
from torch import nn

from convscope.core.guard import preserved
from convscope.core.layers import LayerRef, resolve_layer
from convscope.core.recorder import Recorder
from convscope.errors import ConvscopeError, LayerError, ModelError, did_you_mean
from convscope.inside.tracing import example_input

__all__ = ["Filters", "filters"]

MODES = ("auto", "rgb", "mean", "channels")
_MAX_CELLS = 20000  # a grid larger than this is refused: choose filters=
_OPTIMAL_ORDER_LIMIT = 512  # optimal leaf ordering is cubic in the number of filters


@dataclass(frozen=True)
class Filters:
    """The filters of one convolution.

    Attributes:
        layer: the layer's name.
        weights: (out, in / groups, kh, kw), a detached CPU copy (for a transposed convolution,
            rearranged to the same per-output-channel form).
        groups: the layer's groups (``out`` for a depthwise convolution).
        in_channels: the channels of the layer's input.
        indices: the drawing order (filter numbers); :meth:`order` changes it.
    """

    layer: str
    weights: torch.Tensor
    groups: int
    in_channels: int
    indices: tuple[int, ...]

    @property
    def n(self) -> int:
        return self.weights.shape[0]

    # -- similarity ------------------------------------------------------------------------------
    def cosine(self) -> torch.Tensor:
        """(out, out) cosine similarity of the flattened filters (0 where one is all zero)."""
        flat = self.weights.reshape(self.n, -1).double()
        norm = flat.norm(dim=1, keepdim=True)
        unit = torch.where(norm > 0, flat / norm.clamp_min(1e-300), torch.zeros_like(flat))
        return (unit @ unit.T).float()

    def similar(self, i: int, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` filters most similar to filter ``i`` (cosine similarity of their weights),
        most similar first, as ``(filter, cosine)``; ties go to the lower filter number."""
        if not isinstance(i, int) or not 0 <= i < self.n:
            raise LayerError(
                f"filter {i!r} out of range: layer {self.layer} has {self.n} (0-{self.n - 1})"
            )
        if k < 1:
            raise ConvscopeError(f"k must be at least 1, not {k}")
        sims = self.cosine()[i].tolist()
        ranked = sorted((j for j in range(self.n) if j != i), key=lambda j: (-sims[j], j))
        return [(j, sims[j]) for j in ranked[:k]]

    def order(self, by: str = "similarity") -> Filters:
        """The same filters drawn in another order: ``"similarity"`` (hierarchical clustering,
        average linkage on ``1 - cos``, leaves in order; optimal leaf ordering up to 512 filters),
        ``"norm"`` (largest L2 norm first) or ``"index"``."""
        if by == "index":
            idx = list(range(self.n))
        elif by == "norm":
            norms = self.weights.reshape(self.n, -1).norm(dim=1)
            idx = sorted(range(self.n), key=lambda j: (-float(norms[j]), j))
        elif by == "similarity":
            idx = _cluster_order(self.cosine())
        else:
            raise ConvscopeError(f"order by 'similarity', 'norm' or 'index', not {by!r}")
        return replace(self, indices=tuple(idx))

    # -- drawing ---------------------------------------------------------------------------------
    def resolve_mode(self, mode: str = "auto") -> str:
        """``"auto"`` is ``"rgb"`` for a layer that reads 3 channels in one group, else
        ``"mean"``."""
        if mode not in MODES:
            raise ConvscopeError(f"mode is one of {', '.join(MODES)}, not {mode!r}")
        if mode == "auto":
            return "rgb" if self.weights.shape[1] == 3 and self.groups == 1 else "mean"
        if mode == "rgb" and self.weights.shape[1] != 3:
            raise ConvscopeError(
                f"mode 'rgb' needs filters with 3 input channels; {self.layer}'s have "
                f"{self.weights.shape[1]} (use mode='mean' or 'channels')"
            )
        return mode

    def pixels(
        self,
        mode: str = "auto",
        *,
        scale: str = "layer",
        filters: Sequence[int] | None = None,
        cmap: str | None = None,
    ) -> torch.Tensor:
        """The cells of :meth:`grid` before upscaling, as uint8 (rows, cols, kh, kw, 3):

        - ``"rgb"``: one row, a cell per filter, its 3 input channels as R, G, B;
        - ``"mean"``: one row, a cell per filter, the mean over its input channels;
        - ``"channels"``: a row per input channel (of the filter's group), a column per filter.

        ``scale="layer"``: one symmetric scale, the largest ``|value|`` drawn (over the whole
        layer, not only the chosen filters); ``"filter"``: each filter its own. Then
        ``pixel = round(127.5 * (1 + value / s))``: zero is mid-grey."""
        from convscope.viz.weights import symmetric_scale, weight_pixels

        mode = self.resolve_mode(mode)
        idx = list(self.indices) if filters is None else self._check(filters)
        w = self.weights.float()
        if mode == "mean":
            w = w.mean(dim=1, keepdim=True)
        if scale == "layer":
            s = symmetric_scale(w).expand(len(idx), 1, 1, 1)
        elif scale == "filter":
            s = symmetric_scale(w, "item")[idx]
        else:
            raise ConvscopeError(f"scale is 'layer' or 'filter', not {scale!r}")
        w = w[idx]
        if mode in ("rgb", "mean"):
            return weight_pixels(w, s, cmap)[None]
        # channels: a row per input channel, a column per filter (cells in row-major order)
        per_cell = w.transpose(0, 1).reshape(-1, 1, *w.shape[2:])
        cells = weight_pixels(per_cell, s.repeat(w.shape[1], 1, 1, 1), cmap)
        return cells.reshape(w.shape[1], len(idx), *cells.shape[1:])

    def grid(
        self,
        mode: str = "auto",
        *,
        scale: str = "layer",
        filters: Sequence[int] | None = None,
        cell: int = 36,
        cols: int | None = None,
        cmap: str | None = None,
        labels: bool = False,
    ) -> Image.Image:
        """The filters as a picture (a PIL image), in :attr:`indices` order unless ``filters``
        names some. Each kh x kw filter is upscaled by nearest neighbour (an integer factor, about
        ``cell`` pixels a side) so small kernels stay visible. ``"rgb"``/``"mean"``: a square-ish
        grid (``cols`` per row); ``"channels"``: a row per input channel, a column per filter.
        ``labels``: filter numbers above the cells (channels mode)."""
        from convscope.viz.weights import tile, upscale

        mode = self.resolve_mode(mode)
        cells = self.pixels(mode, scale=scale, filters=filters, cmap=cmap)
        rows, ncols = cells.shape[:2]
        if rows * ncols > _MAX_CELLS:
            raise ConvscopeError(
                f"{rows * ncols} cells is too many for one picture; choose some filters "
                f"(filters=[...]) or mode='mean'"
            )
        kh, kw = cells.shape[2:4]
        factor = max(1, cell // max(kh, kw))
        flat = upscale(cells.reshape(rows * ncols, kh, kw, 3), factor)
        idx = list(self.indices) if filters is None else [int(f) for f in filters]
        if mode == "channels":
            return tile(
                flat,
                ncols,
                row_labels=[f"in {c}" for c in range(rows)] if labels else None,
                col_labels=[str(i) for i in idx] if labels else None,
            )
        per_row = cols or max(1, round((ncols * 1.0) ** 0.5 * 1.5))
        return tile(flat, min(per_row, ncols))

    def save(self, path: str | os.PathLike, **grid_options: Any) -> str:
        """Write :meth:`grid` as a PNG at ``path`` (all or nothing); returns the path."""
        from pathlib import Path

        from convscope.fileio import write_all
        from convscope.viz.render import png_bytes

        p = Path(path)
        write_all(p.parent, {p.name: png_bytes(self.grid(**grid_options))})
        return str(p)

    def _repr_png_(self) -> bytes:
        from convscope.viz.render import png_bytes

        return png_bytes(self.grid())

    def _check(self, filters: Sequence[int]) -> list[int]:
        idx = [int(f) for f in filters]
        bad = [f for f in idx if not 0 <= f < self.n]
        if bad:
            raise LayerError(
                f"filter(s) {bad} out of range: layer {self.layer} has {self.n} (0-{self.n - 1})"
            )
        if not idx:
            raise ConvscopeError("no filters chosen")
        return idx


def _cluster_order(cos: torch.Tensor) -> list[int]:
    n = cos.shape[0]
    if n <= 2:
        return list(range(n))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    dist = (1.0 - cos.double()).clamp_min(0).numpy()
    dist = (dist + dist.T) / 2
    dist[range(n), range(n)] = 0.0
    tree = linkage(
        squareform(dist, checks=False), method="average", optimal_ordering=n <= _OPTIMAL_ORDER_LIMIT
    )
    return [int(i) for i in leaves_list(tree)]


class _Found(Exception):
    """Raised by the recorder's hook at the first convolution: the pass stops there."""


def first_convolution(model: nn.Module, example: torch.Tensor) -> str:
    """The name of the first 2-D convolution the input meets: a forward pass of ``example`` with
    every convolution watched by the recorder, stopped as soon as one finishes (so it costs the
    stem, not the network)."""
    convs = [LayerRef(n, m, None) for n, m in model.named_modules() if n and is_convolution(m)]
    if not convs:
        raise LayerError("the model has no 2-D convolution")

    def stop(name: str, k: int, out: Any) -> None:
        raise _Found(name)

    try:
        with preserved(model), torch.no_grad(), Recorder(model, convs, reduce=stop):
            model(example)
    except _Found as found:
        return str(found.args[0])
    except ConvscopeError:
        raise
    except Exception as e:
        raise ModelError(
            f"the model does not run on an input of shape {tuple(example.shape)}: "
            f"{type(e).__name__}: {' '.join(str(e).split())}"
        ) from None
    raise LayerError("no 2-D convolution runs in the model's forward pass")


def is_convolution(module: nn.Module) -> bool:
    """A 2-D convolution (or transposed convolution): a module with a 4-D weight that
    :class:`torch.nn.modules.conv._ConvNd` defines."""
    w = getattr(module, "weight", None)
    return (
        isinstance(module, nn.modules.conv._ConvNd) and isinstance(w, torch.Tensor) and w.ndim == 4
    )


def _per_output(module: nn.Module) -> torch.Tensor:
    """The weight as (out, in / groups, kh, kw), also for a transposed convolution (whose weight is
    (in, out / groups, kh, kw))."""
    w = module.weight.detach().to("cpu", copy=True)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        g = module.groups
        i, og, kh, kw = w.shape
        w = w.reshape(g, i // g, og, kh, kw).transpose(1, 2).reshape(g * og, i // g, kh, kw)
    return w


def filters(
    model: Any, layer: str | nn.Module = "first", *, input_shape: Sequence[int] | None = None
) -> Filters:
    """The filters of a convolution, as weights and pictures.

    Args:
        model: a bundle, a registered name or any ``nn.Module`` (:func:`convscope.load_model`).
        layer: a convolution's name, or ``"first"``: the first convolution the input meets, found
            by tracing one forward pass (not by module order).
        input_shape: the example traced for ``"first"``, (C, H, W); default 3 channels at the
            bundle's crop size.

    Returns:
        A :class:`Filters`: ``.weights`` (out, in / groups, kh, kw), ``.grid()``, ``.save()``,
        ``.similar(i, k)``, ``.order("similarity")``.
    """
    from convscope.models import load_model

    bundle = load_model(model)
    net = bundle.model
    if isinstance(layer, str) and layer.strip() == "first":
        name = first_convolution(net, example_input(bundle, input_shape))
        module = dict(net.named_modules())[name]
    else:
        ref = resolve_layer(net, layer)
        name, module = ref.name, ref.module
        if not is_convolution(module):
            convs = [n for n, m in net.named_modules() if n and is_convolution(m)]
            what = (
                "has no weights"
                if getattr(module, "weight", None) is None
                else f"has a {getattr(module.weight, 'ndim', '?')}-D weight"
            )
            hint = (
                " (for a linear layer reading an image, use convscope.weight_templates)"
                if isinstance(module, nn.Linear)
                else ""
            )
            raise LayerError(
                f"layer {ref.spec!r} is a {type(module).__name__} and {what}, not a 2-D "
                f"convolution{did_you_mean(ref.name, convs) if convs else ''}{hint}"
            )
    w = _per_output(module)
    return Filters(
        layer=name,
        weights=w,
        groups=int(module.groups),
        in_channels=int(module.in_channels),
        indices=tuple(range(w.shape[0])),
    )
