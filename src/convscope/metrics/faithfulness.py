"""Faithfulness metrics: does the model's confidence follow what the map calls important?

- **Deletion and insertion** (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for
  Explanation of Black-box Models", BMVC 2018, arXiv:1806.07421, section 4.1): pixels are ranked by
  the map, most relevant first, and removed (deletion: replaced by a baseline) or inserted
  (insertion: copied from the image into the baseline) in ``steps`` equal chunks. The curve is the
  target class's softmax probability :math:`p_k` after chunk :math:`k` (:math:`k = 0..steps`, at
  the fraction :math:`k / steps` of the pixels), its area by the trapezoid rule:

  .. math:: \\mathrm{AUC} = \\frac{1}{steps}\\Big(\\frac{p_0 + p_{steps}}{2} +
      \\sum_{k=1}^{steps-1} p_k\\Big)

  Lower deletion AUC and higher insertion AUC are better.
- **Average Drop and Increase in Confidence** (Chattopadhay et al., "Grad-CAM++: Improved Visual
  Explanations for Deep Convolutional Networks", WACV 2018, arXiv:1710.11063, section 5.1): the
  map, rectified and divided by its maximum, multiplies the image; with :math:`Y_i` the target's
  probability on image :math:`i` and :math:`O_i` on the masked image,

  .. math:: \\mathrm{AD} = \\frac{100}{N} \\sum_i \\frac{\\max(0, Y_i - O_i)}{Y_i}, \\qquad
      \\mathrm{IC} = \\frac{100}{N} \\sum_i \\mathbb{1}[O_i > Y_i]

  Lower AD and higher IC are better.

Everything runs in torch on the model's device, in batched forwards under ``torch.no_grad`` inside
:func:`convscope.core.guard.preserved`; the model is left as it was. The baselines are in
:mod:`convscope.metrics.baselines`, the scoring of several methods in
:mod:`convscope.metrics.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convscope.core.guard import preserved
from convscope.core.outputs import selecting
from convscope.core.perturbed_batches import check_batch_size
from convscope.core.targets import TargetSpec
from convscope.data.inputs import prepare_inputs
from convscope.metrics.baselines import Baseline, baseline_input, black_input
from convscope.metrics.common import (
    bundle_of,
    check_steps,
    checked_maps,
    class_targets,
    probabilities,
)
from convscope.result import Explanation

__all__ = [
    "ConfidenceResult",
    "CurveResult",
    "curve_auc",
    "average_drop_increase",
    "masked_confidence",
    "batched_curves",
    "deletion",
    "insertion",
    "pixel_ranks",
]


@dataclass
class CurveResult:
    """A deletion or insertion curve per image.

    Attributes:
        kind: ``"deletion"`` or ``"insertion"``.
        fractions: (steps + 1,) the fractions of pixels removed/inserted: 0, 1/steps, ..., 1.
        curves: (N, steps + 1) the target's softmax probability at each fraction.
        auc: (N,) the area under each curve (trapezoid rule over [0, 1]).
        targets: the class explained for each image.
    """

    kind: str
    fractions: torch.Tensor
    curves: torch.Tensor
    auc: torch.Tensor
    targets: list[int]

    @property
    def mean_auc(self) -> float:
        """The AUC averaged over images."""
        return float(self.auc.mean())


@dataclass
class ConfidenceResult:
    """Average Drop and Increase in Confidence, with their per-image parts.

    Attributes:
        average_drop: :math:`100 \\cdot \\mathrm{mean}_i \\max(0, Y_i - O_i) / Y_i` (lower is better).
        increase_in_confidence: :math:`100 \\cdot \\mathrm{mean}_i 1[O_i > Y_i]` (higher is better).
        original: (N,) :math:`Y`, the target's probability on each image.
        masked: (N,) :math:`O`, on the image multiplied by its normalized map.
        drop: (N,) :math:`100 \\max(0, Y - O) / Y` per image.
        targets: the class explained for each image.
    """

    average_drop: float
    increase_in_confidence: float
    original: torch.Tensor
    masked: torch.Tensor
    drop: torch.Tensor
    targets: list[int]


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """(N, H, W) maps -> (N, H*W) the rank of each pixel, 0 for the most relevant: pixels sorted by
    the map in descending order, ties broken by pixel index (row-major), stable."""
    flat = maps.reshape(maps.shape[0], -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    pos = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return ranks.scatter_(1, order, pos)


def batched_curves(
    model: nn.Module,
    x: torch.Tensor,
    ranks: torch.Tensor,
    targets: torch.Tensor,
    baselines: list[tuple[torch.Tensor, bool]],
    steps: int,
    batch_size: int | None,
) -> torch.Tensor:
    """(K, N, steps + 1) probabilities for K (baseline, insert) curves of every image; all
    K * N * (steps + 1) images in batched forwards. The caller holds :func:`preserved`."""
    n, c, h, w = x.shape
    s1 = steps + 1
    counts = torch.arange(s1, device=x.device) * (h * w) // steps  # pixels changed after k steps
    bases = [b.expand_as(x) for b, _ in baselines]  # views: no (K, N, C, H, W) copy
    insert = torch.tensor([ins for _, ins in baselines], device=x.device)
    total = len(baselines) * n * s1
    step = batch_size or n * s1
    out = torch.empty(total, device=x.device)
    with torch.no_grad():
        for start in range(0, total, step):
            job = torch.arange(start, min(start + step, total), device=x.device)
            kind, img, k = job // (n * s1), (job // s1) % n, job % s1
            changed = ranks[img] < counts[k][:, None]  # (B, HW): the first counts[k] pixels
            from_x = (changed == insert[kind][:, None]).view(-1, 1, h, w)
            base = torch.empty_like(x[img])
            for j, b in enumerate(bases):
                rows = (kind == j).nonzero().flatten()
                if len(rows):
                    base[rows] = b[img[rows]]
            batch = torch.where(from_x, x[img], base)
            probs = probabilities(model, batch, None)
            out[start : start + len(job)] = probs.gather(1, targets[img][:, None])[:, 0]
    return out.view(len(baselines), n, s1)


def curve_auc(curves: torch.Tensor, steps: int) -> torch.Tensor:
    return torch.trapezoid(curves, dx=1.0 / steps, dim=-1)


def _curve_metric(
    kind: str,
    model: Any,
    images: Any,
    maps: torch.Tensor | Explanation,
    target: TargetSpec,
    steps: int,
    baseline: Baseline,
    sigma: float,
    batch_size: int | None,
) -> CurveResult:
    check_steps(steps)
    check_batch_size(batch_size)
    bundle, known = bundle_of(model)
    x = prepare_inputs(bundle, images, pixels=False)[0]
    m = checked_maps(maps, x)
    base = baseline_input(baseline, x, black_input(bundle, x, known), sigma)
    with preserved(bundle.model), selecting(bundle.model, bundle.output) as net:
        targets = class_targets(bundle, target, maps, probabilities(net, x, batch_size))
        curves = batched_curves(
            net,
            x,
            pixel_ranks(m),
            targets,
            [(base, kind == "insertion")],
            steps,
            batch_size,
        )[0]
    return CurveResult(
        kind=kind,
        fractions=torch.linspace(0, 1, steps + 1, device=x.device),
        curves=curves,
        auc=curve_auc(curves, steps),
        targets=targets.tolist(),
    )


def deletion(
    model: Any,
    images: Any,
    maps: torch.Tensor | Explanation,
    target: TargetSpec = None,
    *,
    steps: int = 28,
    baseline: Baseline = "constant",
    sigma: float = 5.0,
    batch_size: int | None = 64,
) -> CurveResult:
    """Deletion curve and AUC (Petsiuk et al. 2018, RISE, arXiv:1806.07421): the most relevant
    pixels first are replaced by the baseline, ``H*W*k // steps`` of them at step ``k``; the curve
    is the target's softmax probability :math:`p_k`, the AUC
    :math:`\\frac{1}{steps}(\\frac{p_0 + p_{steps}}{2} + \\sum_{0<k<steps} p_k)`. Lower is better.

    Args:
        model: a bundle, a model name or an ``nn.Module`` (see :func:`convscope.load_model`).
        images: anything :func:`convscope.explain` takes (a preprocessed tensor is used as is).
        maps: (N, H, W) maps at the input size, or an :class:`Explanation` (its ``.maps``).
        target: the class per image; default: the Explanation's targets, else ``"top1"``.
        steps: the number of chunks (the curve has ``steps + 1`` points).
        baseline: ``"constant"`` (default: the model input of a black image when the bundle's
            Preprocess is known, else 0), ``"blur"`` (:func:`gaussian_blur` of the image), a number,
            or a tensor in model-input space ((C,), (C, H, W) or (N, C, H, W)).
        sigma: the blur's standard deviation in pixels.
        batch_size: images per forward pass (None: all ``N * (steps + 1)`` at once).
    """
    return _curve_metric(
        "deletion", model, images, maps, target, steps, baseline, sigma, batch_size
    )


def insertion(
    model: Any,
    images: Any,
    maps: torch.Tensor | Explanation,
    target: TargetSpec = None,
    *,
    steps: int = 28,
    baseline: Baseline = "blur",
    sigma: float = 5.0,
    batch_size: int | None = 64,
) -> CurveResult:
    """Insertion curve and AUC (Petsiuk et al. 2018, RISE, arXiv:1806.07421): starting from the
    baseline (default: the blurred image, as RISE does), the most relevant pixels first are copied
    in from the image, ``H*W*k // steps`` of them at step ``k``; the curve is the target's softmax
    probability :math:`p_k`, the AUC
    :math:`\\frac{1}{steps}(\\frac{p_0 + p_{steps}}{2} + \\sum_{0<k<steps} p_k)`. Higher is better.

    Arguments as for :func:`deletion`.
    """
    return _curve_metric(
        "insertion", model, images, maps, target, steps, baseline, sigma, batch_size
    )


def masked_confidence(
    model: nn.Module,
    x: torch.Tensor,
    m: torch.Tensor,
    targets: torch.Tensor,
    base: torch.Tensor,
    original: torch.Tensor,
    batch_size: int | None,
) -> ConfidenceResult:
    """AD/IC from checked maps; the caller holds :func:`preserved`."""
    r = m.clamp_min(0)
    peak = r.flatten(1).amax(dim=1).view(-1, 1, 1)
    norm = torch.where(peak > 0, r / peak.clamp_min(torch.finfo(r.dtype).tiny), 0.0)
    masked_x = base + norm[:, None].to(x.dtype) * (x - base)
    masked = probabilities(model, masked_x, batch_size).gather(1, targets[:, None])[:, 0]
    drop = (
        100 * (original - masked).clamp_min(0) / original.clamp_min(torch.finfo(torch.float32).tiny)
    )
    return ConfidenceResult(
        average_drop=float(drop.mean()),
        increase_in_confidence=float(100 * (masked > original).float().mean()),
        original=original,
        masked=masked,
        drop=drop,
        targets=targets.tolist(),
    )


def average_drop_increase(
    model: Any,
    images: Any,
    maps: torch.Tensor | Explanation,
    target: TargetSpec = None,
    *,
    baseline: Baseline | None = None,
    batch_size: int | None = 64,
) -> ConfidenceResult:
    """Average Drop and Increase in Confidence (Chattopadhay et al. 2018, Grad-CAM++,
    arXiv:1710.11063): with :math:`m = \\mathrm{ReLU}(L) / \\max \\mathrm{ReLU}(L)` per image, the
    masked input is :math:`b + m (x - b)` (``b`` the model input of a black image, so this is the
    pixels times ``m``, normalization being affine); :math:`Y` and :math:`O` are the target's
    softmax probabilities on the image and the masked image;
    :math:`\\mathrm{AD} = 100\\,\\mathrm{mean}(\\max(0, Y - O) / Y)` (lower is better),
    :math:`\\mathrm{IC} = 100\\,\\mathrm{mean}(1[O > Y])` (higher is better).

    Args:
        model, images, maps, target: as for :func:`deletion`.
        baseline: ``b``; default ``"constant"`` (the black input, 0 for a bare ``nn.Module``).
        batch_size: images per forward pass.
    """
    check_batch_size(batch_size)
    bundle, known = bundle_of(model)
    x = prepare_inputs(bundle, images, pixels=False)[0]
    m = checked_maps(maps, x)
    base = baseline_input(
        "constant" if baseline is None else baseline, x, black_input(bundle, x, known), 5.0
    )
    with preserved(bundle.model), selecting(bundle.model, bundle.output) as net:
        probs = probabilities(net, x, batch_size)
        targets = class_targets(bundle, target, maps, probs)
        original = probs.gather(1, targets[:, None])[:, 0]
        return masked_confidence(net, x, m, targets, base, original, batch_size)
