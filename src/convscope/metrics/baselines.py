"""Baselines for the faithfulness metrics: what a removed pixel becomes (deletion, Average Drop)
or what an image starts from (insertion): the black image in model-input space, a Gaussian blur
of the image (RISE's insertion baseline), a number or a tensor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from convscope.core.bundle import ModelBundle, Preprocess
from convscope.errors import ConvscopeError

__all__ = ["Baseline", "baseline_input", "black_input", "gaussian_blur"]

Baseline = str | float | Sequence[float] | torch.Tensor


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


def baseline_input(
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
