"""Localization metrics: does the map point at the object, given a ground-truth mask?

- **Pointing game** (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016,
  arXiv:1608.00507, section 5.1): a hit when the map's maximum lies within ``tolerance`` pixels
  (15 in the paper) of the mask, i.e. inside the mask dilated by a disk of that radius;
  accuracy = hits / images.
- **Energy-based pointing game** (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
  Convolutional Neural Networks", CVPR-W 2020, arXiv:1910.01279, section 5.2):
  :math:`\\sum_{p \\in M} L^+_p / \\sum_p L^+_p` with :math:`L^+ = \\mathrm{ReLU}(L)`.
- **Relevance mass accuracy** (Arras, Osman & Samek, "CLEVR-XAI: A benchmark dataset for the
  ground truth evaluation of neural network explanations", Information Fusion 2022,
  arXiv:2003.07258): the same ratio for positive relevance, :math:`R_{in} / R_{tot}`.
- **Relevance rank accuracy** (Arras et al. 2022): with :math:`K = |M|`, the fraction of the
  top-K pixels (by the map, ties broken by pixel index) that lie in the mask.

Maps are (N, H, W) (or an :class:`~convscope.result.Explanation`); masks are (N, H, W) or
(H, W) (one mask for every image), boolean or 0/1, at the size of the maps (the model's input).
Masks drawn on the original photos are brought there by :func:`resize_masks`, which resizes and
crops them as the bundle's preprocessing did the photos. Everything is torch; nothing runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from convscope.errors import ConvscopeError
from convscope.result import Explanation

__all__ = [
    "PointingResult",
    "energy_pointing_game",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "resize_masks",
]


@dataclass
class PointingResult:
    """Pointing-game hits per image and their mean.

    Attributes:
        hits: (N,) bool, True where the map's maximum lies within the tolerance of the mask.
        points: (N, 2) the (row, column) of each map's maximum (the first in row-major order).
        accuracy: hits / N.
    """

    hits: torch.Tensor
    points: torch.Tensor
    accuracy: float


def _maps_masks(maps: torch.Tensor | Explanation, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
    m = maps.maps if isinstance(maps, Explanation) else maps
    m = torch.as_tensor(m)
    if m.ndim != 3:
        raise ConvscopeError(f"maps must have shape (N, H, W); got {tuple(m.shape)}")
    m = m.detach().float()
    if not torch.isfinite(m).all():
        raise ConvscopeError("maps contain NaN or infinite values")
    try:
        k = torch.as_tensor(_stackable(masks), device=m.device)
    except (TypeError, ValueError, RuntimeError):
        sizes = (
            sorted({tuple(np.shape(x)) for x in masks}) if isinstance(masks, list | tuple) else []
        )
        got = f"masks of sizes {', '.join(map(str, sizes))}" if sizes else "something else"
        raise ConvscopeError(
            f"masks must be one (N, H, W) array at the maps' size {tuple(m.shape[1:])}; got "
            f"{got}: masks drawn on the photos go through metrics.resize_masks(bundle, masks) "
            "first"
        ) from None
    shape = tuple(k.shape)
    if k.ndim == 2:
        k = k.expand(m.shape[0], *k.shape)
    if k.ndim != 3 or tuple(k.shape) != tuple(m.shape):
        hint = ""
        if k.ndim in (2, 3) and tuple(k.shape[-2:]) != tuple(m.shape[1:]):
            hint = (
                "; masks drawn on the photos go through metrics.resize_masks(bundle, masks) first"
            )
        raise ConvscopeError(
            f"masks must have shape (N, H, W) = {tuple(m.shape)} or (H, W) = "
            f"{tuple(m.shape[1:])} to match the maps; got {shape}{hint}"
        )
    if k.dtype != torch.bool:
        if not ((k == 0) | (k == 1)).all():
            raise ConvscopeError("masks must be boolean or hold only 0 and 1")
        k = k != 0
    empty = (~k.flatten(1).any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ConvscopeError(f"the mask of image(s) {', '.join(map(str, empty))} is empty")
    return m, k


def _stackable(masks: Any) -> Any:
    """A list of same-size arrays or tensors as one array (torch.as_tensor takes no list of
    arrays)."""
    if isinstance(masks, list | tuple) and masks and not isinstance(masks[0], int | float | bool):
        return np.stack([np.asarray(torch.as_tensor(x).cpu()) for x in masks])
    return masks


def resize_masks(bundle: Any, masks: Any) -> torch.Tensor:
    """Masks drawn on the original photos -> (N, H, W) bool masks at the model's input size,
    resized and cropped exactly as :meth:`Preprocess.geometry` did the photos (nearest-neighbour,
    so a mask stays 0/1). ``masks`` is one (H, W) mask or a list of them (any sizes), boolean or
    0/1. The bundle's preprocessing must be a :class:`~convscope.core.bundle.Preprocess` (a
    custom callable's geometry is unknown: give the masks at the model's input size instead)."""
    from PIL import Image

    from convscope.core.bundle import Preprocess

    pre = getattr(bundle, "preprocess", None)
    if not isinstance(pre, Preprocess):
        raise ConvscopeError(
            "resize_masks needs a bundle whose preprocess is a convscope Preprocess; with a custom "
            "preprocess, give masks at the model's input size"
        )
    items = list(masks) if isinstance(masks, list | tuple) else [masks]
    out = []
    for i, mask in enumerate(items):
        a = np.asarray(torch.as_tensor(mask).cpu())
        if a.ndim != 2:
            raise ConvscopeError(f"mask {i} must be (H, W); got shape {a.shape}")
        if a.dtype != bool:
            if not np.isin(a, (0, 1)).all():
                raise ConvscopeError(f"mask {i} must be boolean or hold only 0 and 1")
            a = a != 0
        im = Image.fromarray(a.astype(np.uint8) * 255)
        out.append(np.asarray(pre.geometry(im, Image.NEAREST)) >= 128)
    return torch.from_numpy(np.stack(out))


def pointing_game(
    maps: torch.Tensor | Explanation, masks: Any, tolerance: float = 15
) -> PointingResult:
    """Pointing game (Zhang et al. 2016, Excitation Backprop, arXiv:1608.00507):
    :math:`\\mathrm{hit}_i = 1[\\min_{q \\in M_i} \\lVert p_i - q \\rVert_2 \\le \\tau]` with
    :math:`p_i = \\arg\\max L_i` (the first maximum in row-major order) and :math:`\\tau` the
    ``tolerance`` in pixels (15 in the paper; 0: the maximum must lie in the mask);
    accuracy :math:`= \\sum_i \\mathrm{hit}_i / N`.
    """
    if not tolerance >= 0:
        raise ConvscopeError(f"tolerance must be at least 0, not {tolerance!r}")
    m, k = _maps_masks(maps, masks)
    n, h, w = m.shape
    flat = m.flatten(1).argmax(dim=1)
    rows, cols = flat // w, flat % w
    ys = torch.arange(h, device=m.device).view(1, h, 1)
    xs = torch.arange(w, device=m.device).view(1, 1, w)
    d2 = (ys - rows.view(n, 1, 1)) ** 2 + (xs - cols.view(n, 1, 1)) ** 2
    hits = ((d2 <= float(tolerance) ** 2) & k).flatten(1).any(dim=1)
    return PointingResult(hits, torch.stack([rows, cols], dim=1), float(hits.float().mean()))


def energy_pointing_game(maps: torch.Tensor | Explanation, masks: Any) -> torch.Tensor:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM, arXiv:1910.01279):
    :math:`\\sum_{p \\in M} L^+_p / \\sum_p L^+_p` per image, :math:`L^+ = \\mathrm{ReLU}(L)`;
    0 for a map with no positive value. Returns (N,)."""
    m, k = _maps_masks(maps, masks)
    pos = m.clamp_min(0).flatten(1)
    inside = (pos * k.flatten(1)).sum(dim=1)
    total = pos.sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(pos.dtype).tiny), 0.0)


def relevance_mass_accuracy(maps: torch.Tensor | Explanation, masks: Any) -> torch.Tensor:
    """Relevance mass accuracy (Arras et al. 2022, CLEVR-XAI, arXiv:2003.07258):
    :math:`R_{within} / R_{total}`, the positive relevance inside the mask over all positive
    relevance (the energy pointing game's ratio); 0 for a map with no positive value. Returns (N,)."""
    return energy_pointing_game(maps, masks)


def relevance_rank_accuracy(maps: torch.Tensor | Explanation, masks: Any) -> torch.Tensor:
    """Relevance rank accuracy (Arras et al. 2022, CLEVR-XAI, arXiv:2003.07258):
    :math:`|P_{top K} \\cap M| / K` with :math:`K = |M|` and :math:`P_{top K}` the K pixels of
    highest relevance (descending, ties broken by pixel index). Returns (N,)."""
    from convscope.metrics.faithfulness import pixel_ranks

    m, k = _maps_masks(maps, masks)
    ranks = pixel_ranks(m)
    kf = k.flatten(1)
    size = kf.sum(dim=1, keepdim=True)
    top = ranks < size
    return (top & kf).sum(dim=1).float() / size[:, 0].float()
