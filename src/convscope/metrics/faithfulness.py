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
:func:`convscope.core.guard.preserved`; the model is left as it was.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.bundle import ModelBundle, Preprocess
from convscope.core.guard import preserved
from convscope.core.outputs import not_a_tensor, selecting
from convscope.core.result import Explanation
from convscope.core.targets import TargetSpec, resolve_targets
from convscope.errors import ConvscopeError

__all__ = [
    "ConfidenceResult",
    "CurveResult",
    "average_drop_increase",
    "black_input",
    "deletion",
    "evaluate",
    "gaussian_blur",
    "insertion",
    "pixel_ranks",
]

Baseline = str | float | Sequence[float] | torch.Tensor


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


# -- shared plumbing (also used by convscope.metrics.sanity) ------------------------------------
def _bundle(model: Any) -> tuple[ModelBundle, bool]:
    """(bundle, whether its preprocessing is known): a bare ``nn.Module`` gets the default
    Preprocess from :func:`load_model`, which is a guess, so its inputs' black level is unknown."""
    from convscope.models import load_model

    return load_model(model), not isinstance(model, nn.Module)


def _inputs(bundle: ModelBundle, images: Any) -> torch.Tensor:
    from convscope.api import prepare_inputs

    return prepare_inputs(bundle, images)[0]


def _maps(maps: torch.Tensor | Explanation, x: torch.Tensor) -> torch.Tensor:
    """Check (N, H, W) maps against an (N, C, H, W) batch; return them as float on x's device."""
    m = maps.maps if isinstance(maps, Explanation) else maps
    if not isinstance(m, torch.Tensor):
        m = torch.as_tensor(m)
    want = (x.shape[0], *x.shape[-2:])
    if m.ndim != 3 or tuple(m.shape) != want:
        raise ConvscopeError(
            f"maps must have shape (N, H, W) = {want} to match the images; got {tuple(m.shape)}"
        )
    m = m.detach().to(x.device, torch.float32)
    if not torch.isfinite(m).all():
        raise ConvscopeError("maps contain NaN or infinite values")
    return m


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConvscopeError(f"steps must be an integer of at least 1, not {steps!r}")


def _check_batch(batch_size: int | None) -> int | None:
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConvscopeError(f"batch_size must be at least 1, not {batch_size!r}")
    return batch_size


def _probs(model: nn.Module, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """(N, classes) softmax probabilities, in batches, under no_grad (the caller holds preserved)."""
    step = batch_size or x.shape[0]
    outs = []
    with torch.no_grad():
        for s in range(0, x.shape[0], step):
            out = model(x[s : s + step])
            if not isinstance(out, torch.Tensor):
                raise not_a_tensor(out)
            if out.ndim != 2:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ConvscopeError(
                    f"faithfulness metrics need a model output of shape (N, classes); got {shape}"
                )
            outs.append(out.float().softmax(dim=1))
    return torch.cat(outs)


def _class_targets(
    bundle: ModelBundle,
    target: TargetSpec,
    maps: torch.Tensor | Explanation,
    probs: torch.Tensor,
) -> torch.Tensor:
    """(N,) class indices: ``target`` resolved on the original output, or the Explanation's."""
    n = probs.shape[0]
    if target is None:
        if isinstance(maps, Explanation):
            if maps.targets is None:
                raise ConvscopeError(
                    "the explanation has a callable target; these metrics need class targets"
                )
            target = list(maps.targets)
        else:
            target = "top1"
    if callable(target) and not isinstance(target, str | int):
        raise ConvscopeError("these metrics need class targets (an index, a name or topK)")
    tgt = resolve_targets(target, n, bundle.class_names)
    tgt.scores(probs)  # fills tgt.indices (rank targets from the original output)
    return tgt.indices


def black_input(bundle: ModelBundle, x: torch.Tensor, known: bool = True) -> torch.Tensor:
    """The model input of a black image, (1, C, 1, 1), when the bundle's :class:`Preprocess` is
    known and the input has 3 channels; else 0 (the model-input origin)."""
    pre = bundle.preprocess
    if known and isinstance(pre, Preprocess) and x.shape[1] == 3:
        black = torch.zeros(1, 1, 1, 3, dtype=torch.uint8, device=x.device)
        return pre.normalize(black).to(x.dtype)
    return torch.zeros(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)


def gaussian_blur(x: torch.Tensor, sigma: float = 5.0, size: int = 11) -> torch.Tensor:
    """Blur an (N, C, H, W) batch with a ``size`` x ``size`` Gaussian of standard deviation
    ``sigma`` (normalized to sum 1; separable depthwise torch convolutions, replicate padding so a
    constant image stays constant). RISE's insertion baseline is such a blur (11 x 11, sigma 5;
    Petsiuk et al. 2018)."""
    if not sigma > 0:
        raise ConvscopeError(f"blur sigma must be positive, not {sigma!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ConvscopeError(f"blur size must be an odd positive integer, not {size!r}")
    r = size // 2
    t = torch.arange(size, device=x.device, dtype=torch.float32) - r
    k = torch.exp(-(t**2) / (2 * float(sigma) ** 2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv2d(y, k.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


def _baseline(
    spec: Baseline,
    x: torch.Tensor,
    black: torch.Tensor,
    sigma: float,
) -> torch.Tensor:
    """A baseline broadcastable to x: "constant" (the black input), "blur", a number, or a tensor
    in model-input space of shape (C,), (C, H, W) or (N, C, H, W)."""
    if isinstance(spec, str):
        if spec == "constant":
            return black
        if spec == "blur":
            return gaussian_blur(x, sigma)
        raise ConvscopeError(
            f"unknown baseline {spec!r}; use 'constant', 'blur', a number or a tensor"
        )
    b = torch.as_tensor(spec, dtype=x.dtype).to(x.device)
    n, c = x.shape[:2]
    if b.ndim == 0:
        return b.view(1, 1, 1, 1)
    if b.ndim == 1 and b.shape[0] == c:
        return b.view(1, c, 1, 1)
    if b.ndim == 3 and tuple(b.shape) == tuple(x.shape[1:]):
        return b[None]
    if b.ndim == 4 and tuple(b.shape) == tuple(x.shape):
        return b
    raise ConvscopeError(
        f"a baseline tensor must be a number or have shape ({c},), {tuple(x.shape[1:])} or "
        f"{tuple(x.shape)}; got {tuple(b.shape)}"
    )


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """(N, H, W) maps -> (N, H*W) the rank of each pixel, 0 for the most relevant: pixels sorted by
    the map in descending order, ties broken by pixel index (row-major), stable."""
    flat = maps.reshape(maps.shape[0], -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    pos = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return ranks.scatter_(1, order, pos)


def _curves(
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
            probs = _probs(model, batch, None)
            out[start : start + len(job)] = probs.gather(1, targets[img][:, None])[:, 0]
    return out.view(len(baselines), n, s1)


def _auc(curves: torch.Tensor, steps: int) -> torch.Tensor:
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
    _check_steps(steps)
    _check_batch(batch_size)
    bundle, known = _bundle(model)
    x = _inputs(bundle, images)
    m = _maps(maps, x)
    base = _baseline(baseline, x, black_input(bundle, x, known), sigma)
    with preserved(bundle.model), selecting(bundle.model, bundle.output) as net:
        targets = _class_targets(bundle, target, maps, _probs(net, x, batch_size))
        curves = _curves(
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
        auc=_auc(curves, steps),
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


def _confidence(
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
    masked = _probs(model, masked_x, batch_size).gather(1, targets[:, None])[:, 0]
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
    _check_batch(batch_size)
    bundle, known = _bundle(model)
    x = _inputs(bundle, images)
    m = _maps(maps, x)
    base = _baseline(
        "constant" if baseline is None else baseline, x, black_input(bundle, x, known), 5.0
    )
    with preserved(bundle.model), selecting(bundle.model, bundle.output) as net:
        probs = _probs(net, x, batch_size)
        targets = _class_targets(bundle, target, maps, probs)
        original = probs.gather(1, targets[:, None])[:, 0]
        return _confidence(net, x, m, targets, base, original, batch_size)


METRIC_COLUMNS = ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence")


def evaluate(
    bundle_or_model: Any,
    images: Any,
    methods: str | Sequence[str] = ("gradcam", "saliency"),
    target: TargetSpec = "top1",
    layer: str | Sequence[str] | None = "auto",
    *,
    steps: int = 28,
    batch_size: int | None = 32,
    deletion_baseline: Baseline = "constant",
    insertion_baseline: Baseline = "blur",
    sigma: float = 5.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Score methods with the faithfulness metrics: one row per method.

    ``options`` gives method options by method name (``{"occlusion": {"window": 32}}``).

    Each method is run once with :func:`convscope.explain` (timed), then on its maps: deletion
    and insertion AUC (Petsiuk et al. 2018, RISE: trapezoid area under the target's softmax
    probability as the most relevant pixels are removed / inserted in ``steps`` chunks) and
    Average Drop / Increase in Confidence (Chattopadhay et al. 2018, Grad-CAM++:
    :math:`100\\,\\mathrm{mean}(\\max(0, Y-O)/Y)` and :math:`100\\,\\mathrm{mean}(1[O>Y])`).
    The deletion and insertion curves of all images share batched forwards.

    Returns:
        Rows ``{"method", "layer", "n_images", "deletion_auc", "insertion_auc", "average_drop",
        "increase_in_confidence", "seconds"}``: metrics averaged over images; ``seconds`` is the
        wall time of the method's :func:`convscope.explain` call. Deletion AUC and Average Drop:
        lower is better; insertion AUC and Increase in Confidence: higher is better.
    """
    from convscope.api import explain, split_batch_size

    _check_steps(steps)
    _check_batch(batch_size)
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise ConvscopeError("no methods given")
    bundle, known = _bundle(bundle_or_model)
    x = _inputs(bundle, images)
    black = black_input(bundle, x, known)
    dbase = _baseline(deletion_baseline, x, black, sigma)
    ibase = _baseline(insertion_baseline, x, black, sigma)
    rows = []
    for name in names:
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
        sync()
        t0 = time.perf_counter()
        per_pass, own = split_batch_size(batch_size, (options or {}).get(name))
        result = explain(
            bundle, x, method=name, target=target, layer=layer, batch_size=per_pass, **own
        )
        sync()
        seconds = time.perf_counter() - t0
        m = _maps(result, x)
        with preserved(bundle.model), selecting(bundle.model, bundle.output) as net:
            probs = _probs(net, x, batch_size)
            targets = _class_targets(bundle, None, result, probs)
            curves = _curves(
                net,
                x,
                pixel_ranks(m),
                targets,
                [(dbase, False), (ibase, True)],
                steps,
                batch_size,
            )
            original = probs.gather(1, targets[:, None])[:, 0]
            conf = _confidence(net, x, m, targets, black, original, batch_size)
        auc = _auc(curves, steps)
        rows.append(
            {
                "method": result.method,
                "layer": result.layer,
                "n_images": int(x.shape[0]),
                "deletion_auc": float(auc[0].mean()),
                "insertion_auc": float(auc[1].mean()),
                "average_drop": conf.average_drop,
                "increase_in_confidence": conf.increase_in_confidence,
                "seconds": seconds,
            }
        )
    return rows
