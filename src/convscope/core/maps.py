"""Arithmetic on (N, H, W) maps: scaling for display, upsampling to the input, fusing layers.

Pure torch on the maps' device; the renderers in :mod:`convscope.viz` and the results in
:mod:`convscope.result` both use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["display_norm", "display_peak", "fuse_layer_maps", "normalize_maps", "upsample_maps"]


def normalize_maps(maps: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Scale each map of an (N, H, W) batch for display.

    ``"max"``: divide by the per-map maximum of ``|map|`` (the lecture notes' ``S / S_max``), so
    non-negative maps land in [0, 1] and signed maps in [-1, 1]. ``"minmax"``: map the per-map
    range onto [0, 1]. ``"p99"``: divide by the per-map 99th percentile of ``|map|`` and clip to
    [-1, 1], the usual display of gradient maps, whose few extreme pixels would otherwise leave the
    rest black. A map that is all zero stays zero.
    """
    flat = maps.reshape(maps.shape[0], -1)
    if mode in ("max", "p99"):
        peak = display_peak(maps, mode).clamp_min(torch.finfo(torch.float32).tiny).to(maps.dtype)
        out = maps / peak.view(-1, *([1] * (maps.ndim - 1)))
        return out if mode == "max" else out.clamp(-1, 1)
    if mode == "minmax":
        lo = flat.amin(dim=1).view(-1, *([1] * (maps.ndim - 1)))
        hi = flat.amax(dim=1).view(-1, *([1] * (maps.ndim - 1)))
        return (maps - lo) / (hi - lo).clamp_min(torch.finfo(maps.dtype).tiny)
    raise ValueError(f"unknown normalization {mode!r}; use 'max', 'p99' or 'minmax'")


def display_norm(family: str | None) -> str:
    """How a method family's maps are scaled for display (:func:`normalize_maps`): ``"p99"`` for
    input-gradient maps (``family="gradient"``), whose few extreme pixels would leave the rest
    black, else ``"max"``."""
    return "p99" if family == "gradient" else "max"


def display_peak(maps: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """The raw value that :func:`normalize_maps` shows as 1, per map: the maximum of ``|map|``
    (``"max"``) or its 99th percentile (``"p99"``); (N,) float32."""
    mag = maps.reshape(maps.shape[0], -1).abs().float()
    if mode == "max":
        return mag.amax(dim=1)
    if mode == "p99":
        return torch.quantile(mag, 0.99, dim=1)
    raise ValueError(f"display_peak takes 'max' or 'p99', not {mode!r}")


def upsample_maps(maps: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """(N, h, w) maps -> (N, *size) by bilinear interpolation (``align_corners=False``); maps
    already at ``size`` are returned as they are."""
    if maps.shape[-2:] == size:
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def fuse_layer_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """Fuse per-layer maps (already at one size): each scaled by its per-image max, then the
    elementwise max across layers (as LayerCAM, Jiang et al. 2021, fuses its layers)."""
    return torch.stack([normalize_maps(m, "max") for m in maps]).amax(dim=0)
