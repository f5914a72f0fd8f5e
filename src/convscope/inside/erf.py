"""The effective receptive field: how much each input pixel actually moves one unit.

Luo, Li, Urtasun & Zemel, "Understanding the Effective Receptive Field in Deep Convolutional
Neural Networks", NeurIPS 2016 (arXiv:1701.04128), section 2: put a gradient of 1 on the unit at
the centre of a layer's map (all channels), 0 everywhere else, back-propagate to the input, and
average the magnitude over images:

.. math::  E_{ij} = \\frac{1}{N} \\sum_n \\sum_c
    \\left| \\frac{\\partial \\sum_k A_{k, y_0, x_0}(x_n)}{\\partial x_{n,c,i,j}} \\right|

The theoretical receptive field (:func:`convscope.receptive_field`) bounds where :math:`E` can be
non-zero; the paper's finding is that :math:`E` is roughly Gaussian and fills only a fraction of
it. A channel (``"LAYER:K"``) or a neuron (``"LAYER:K:I:J"``) can be asked instead of the centre of
all channels. Cost: one forward and one backward pass per batch of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from convscope.core.guard import preserved
from convscope.core.recorder import Recorder
from convscope.core.units import Unit, parse_unit
from convscope.errors import ConvscopeError, LayerError

__all__ = ["EffectiveReceptiveField", "effective_receptive_field"]


@dataclass
class EffectiveReceptiveField:
    """``map`` (H, W): the mean over images of :math:`\\sum_c |\\partial u / \\partial x_c|`;
    ``unit`` the unit (layer, channel or None for all, position); ``box`` its theoretical
    receptive field (top, left, bottom, right); ``pixels`` the first image as the model saw it
    (H, W, 3 uint8) or None; ``images`` how many images were averaged."""

    map: torch.Tensor
    unit: Unit
    position: tuple[int, int]
    box: tuple[int, int, int, int]
    pixels: torch.Tensor | None
    images: int

    def inside_box(self) -> float:
        """The fraction of the map's total inside the theoretical box (1.0 when exact)."""
        t, left, b, r = self.box
        m = self.map.double()
        total = float(m.sum())
        return float(m[t:b, left:r].sum()) / total if total > 0 else 0.0

    def radius(self, mass: float = 0.9) -> float:
        """The radius (pixels) of the disc around the map's centre of mass holding ``mass`` of
        its total: the "effective" size, to compare with the theoretical box."""
        m = self.map.double()
        total = m.sum()
        if total <= 0:
            return 0.0
        h, w = m.shape
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cy, cx = float((m * ys).sum() / total), float((m * xs).sum() / total)
        d = ((ys - cy) ** 2 + (xs - cx) ** 2).sqrt().flatten()
        order = d.argsort()
        cum = m.flatten()[order].cumsum(0) / total
        k = int(torch.searchsorted(cum, torch.tensor(mass, dtype=cum.dtype)))
        return float(d[order][min(k, d.numel() - 1)])

    def image(self, size: int = 224, cmap: str = "magma") -> Image.Image:
        """The map as a heat map (its maximum white-hot) with the theoretical box outlined."""
        from convscope.viz.receptive_field import erf_picture

        return erf_picture(self.map, self.box, size=size, cmap=cmap)


def effective_receptive_field(
    model: Any,
    images: Any,
    unit: str | Unit,
    *,
    position: tuple[int, int] | None = None,
    batch_size: int | None = None,
) -> EffectiveReceptiveField:
    """The effective receptive field of ``unit`` averaged over ``images`` (Luo et al. 2016).

    Args:
        model: a bundle, a registered name or any ``nn.Module``.
        images: paths, ``"sample:NAME"``, PIL images, arrays or a preprocessed tensor.
        unit: ``"LAYER"`` (the centre unit of the map, all channels, as in the paper),
            ``"LAYER:K"`` (channel K at the centre) or ``"LAYER:K:I:J"`` (one neuron).
        position: (row, column) of the unit in the map instead of the centre (for ``"LAYER"`` or
            ``"LAYER:K"``).
        batch_size: images per forward/backward pass (default all).
    """
    from convscope.runner import outside_inference_mode

    return outside_inference_mode(_erf)(model, images, unit, position, batch_size)


def _erf(
    model: Any, images: Any, unit: Any, position: Any, batch_size: int | None
) -> EffectiveReceptiveField:
    from convscope.data.inputs import prepare_inputs
    from convscope.inside.receptive_field import receptive_field
    from convscope.models import load_model

    bundle = load_model(model)
    u = parse_unit(unit)
    ref = u.layer_ref(bundle.model)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConvscopeError(f"batch_size must be a positive integer, not {batch_size!r}")
    x, pixels, _ = prepare_inputs(bundle, images)
    n = x.shape[0]
    total = torch.zeros(x.shape[-2:], dtype=torch.float64, device=x.device)
    if position is not None and u.position is not None:
        raise ConvscopeError(f"unit {u.spec} has a position already; do not give position=")
    if position is not None:
        if not (isinstance(position, tuple | list) and len(position) == 2) or not all(
            isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in position
        ):
            raise ConvscopeError(f"position is (row, column) with integers >= 0, not {position!r}")
        position = (int(position[0]), int(position[1]))
    else:
        position = u.position
    with preserved(bundle.model, frozen=True):
        for s in range(0, n, batch_size or n):
            xb = x[s : s + (batch_size or n)].detach().requires_grad_(True)
            with torch.enable_grad(), Recorder(bundle.model, [ref], gradients=True) as rec:
                bundle.model(xb)
                a = rec.activation(ref)
                if a.ndim != 4:
                    raise LayerError(
                        f"layer {ref.spec} outputs shape {tuple(a.shape)}, not an (N, C, H, W) "
                        "map; an effective receptive field needs positions"
                    )
                u.check(a.shape)
                if position is not None and not (
                    position[0] < a.shape[2] and position[1] < a.shape[3]
                ):
                    raise LayerError(
                        f"position {position} is outside the {a.shape[2]}x{a.shape[3]} map of "
                        f"{ref.spec}"
                    )
                if position is None:
                    position = (a.shape[2] // 2, a.shape[3] // 2)
                i, j = position
                picked = a[:, :, i, j] if u.channel is None else a[:, u.channel, i, j]
                (g,) = torch.autograd.grad(picked.sum(), xb)
            total += g.abs().sum(dim=1).sum(dim=0).double()
    rf = receptive_field(bundle, ref, tuple(x.shape[-2:]), channels=x.shape[1])
    return EffectiveReceptiveField(
        map=(total / n).float().cpu(),
        unit=u,
        position=position,
        box=rf.box(*position),
        pixels=None if pixels is None else pixels[0].cpu(),
        images=n,
    )
