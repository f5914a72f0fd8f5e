"""Regularizers: what keeps an optimized image looking like an image.

Two kinds, each a small function on a batch of images ``x`` (N, 3, H, W), applied per image:

- **penalties**, differentiable terms of the objective (:func:`convscope.featurevis.objectives.l2`
  and ``total_variation`` wrap them): :func:`l2_penalty` (Simonyan et al. 2014) and
  :func:`total_variation` (Mahendran & Vedaldi 2015);
- **operators** ``r_theta`` applied to the pixels after each gradient step (Yosinski et al. 2015,
  *Understanding Neural Networks Through Deep Visualization*, section 3): :func:`decay` (L2 decay),
  :func:`gaussian_blur` every few steps, :func:`clip_small_norm` (pixels of small norm set to 0)
  and :func:`clip_small_contribution` (pixels of small contribution ``|x * grad|`` set to 0).

The operators act on the image's deviation from the colour where the model input is 0 (the
preprocessing's mean): "0" is that colour, as the mean-subtracted image of the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "clip_small_contribution",
    "clip_small_norm",
    "decay",
    "gaussian_blur",
    "gaussian_kernel",
    "l2_penalty",
    "total_variation",
]


def l2_penalty(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """``||x - c||_2^2`` per image, summed over channels and pixels: (N,)."""
    return (x - center.view(1, -1, 1, 1)).square().flatten(1).sum(dim=1)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image, ``sum |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|``
    over channels: (N,)."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).sum(dim=1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).sum(dim=1)
    return dh + dw


def decay(x: torch.Tensor, rate: torch.Tensor | float) -> torch.Tensor:
    """Yosinski's L2 decay ``x <- (1 - theta_decay) x``; ``rate`` a number or one per image."""
    r = torch.as_tensor(rate, dtype=x.dtype, device=x.device)
    return x * (1 - r).reshape(-1, 1, 1, 1) if r.ndim else x * (1 - r)


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """The normalized 1-D Gaussian of standard deviation ``sigma`` with radius
    ``int(truncate * sigma + 0.5)``, as ``scipy.ndimage.gaussian_filter`` builds it."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return k / k.sum()


def _symmetric_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices that pad a length-``n`` axis by ``radius`` mirroring about the edge, the edge value
    repeated (``d c b a | a b c d | d c b a``: scipy's ``mode="reflect"``)."""
    idx = torch.arange(-radius, n + radius, device=device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - 1 - idx, idx)


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Blur each channel of each image with a Gaussian of standard deviation ``sigma`` pixels,
    separably, with the edges mirrored: equal to ``scipy.ndimage.gaussian_filter(channel, sigma)``
    (Yosinski et al. blur with it every ``theta_b_every`` steps). ``sigma <= 0`` returns ``x``."""
    if sigma <= 0:
        return x
    k = gaussian_kernel(sigma, truncate).to(x.device, x.dtype)
    r = (k.numel() - 1) // 2
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    flat = flat.index_select(2, _symmetric_index(h, r, x.device))
    flat = F.conv2d(flat, k.view(1, 1, -1, 1))
    flat = flat.index_select(3, _symmetric_index(w, r, x.device))
    flat = F.conv2d(flat, k.view(1, 1, 1, -1))
    return flat.reshape(n, c, h, w)


def _percentile(values: torch.Tensor, pct: torch.Tensor) -> torch.Tensor:
    """Per row of ``values`` (N, M), its ``pct[n]``-th percentile, linearly interpolated between
    the sorted values like ``numpy.percentile`` (the default method)."""
    m = values.shape[1]
    ordered = values.sort(dim=1).values
    pos = (pct.to(values.dtype) / 100).clamp(0, 1) * (m - 1)
    lo = pos.floor().long().clamp(0, m - 1)
    hi = (lo + 1).clamp(max=m - 1)
    frac = pos - lo.to(values.dtype)
    a = ordered.gather(1, lo[:, None])[:, 0]
    b = ordered.gather(1, hi[:, None])[:, 0]
    return a + frac * (b - a)


def _per_image(pct: torch.Tensor | float, n: int, device: torch.device) -> torch.Tensor:
    p = torch.as_tensor(pct, dtype=torch.float32, device=device)
    return p.expand(n) if p.ndim == 0 else p


def clip_small_norm(x: torch.Tensor, pct: torch.Tensor | float) -> torch.Tensor:
    """Yosinski's clipping of pixels with small norm (theta_n_pct): in each image, the pixels whose
    norm over the colour channels is below the image's ``pct``-th percentile of pixel norms are
    set to 0. ``pct`` a number or one per image; 0 leaves the image as it is."""
    n = x.shape[0]
    p = _per_image(pct, n, x.device)
    norms = x.norm(dim=1).flatten(1)  # (N, HW)
    keep = norms >= _percentile(norms, p)[:, None]
    keep = keep | (p <= 0)[:, None]
    return x * keep.view(n, 1, *x.shape[2:]).to(x.dtype)


def clip_small_contribution(
    x: torch.Tensor, grad: torch.Tensor, pct: torch.Tensor | float
) -> torch.Tensor:
    """Yosinski's clipping of pixels with small contribution (theta_c_pct): a pixel's
    contribution is the linear estimate of how much the objective would change if the pixel were
    set to 0, ``|sum_c x[c] * grad[c]|``; in each image the pixels whose contribution is below the
    image's ``pct``-th percentile are set to 0. ``grad`` is the objective's gradient at the image
    before the step (as in the authors' code)."""
    n = x.shape[0]
    p = _per_image(pct, n, x.device)
    benefit = (x * grad).sum(dim=1).abs().flatten(1)
    keep = benefit >= _percentile(benefit, p)[:, None]
    keep = keep | (p <= 0)[:, None]
    return x * keep.view(n, 1, *x.shape[2:]).to(x.dtype)


def blur_due(step: int, every: int) -> bool:
    """Whether Yosinski's blur runs after step ``step`` (0-based): every ``every`` steps, from the
    first (the authors' ``ii % blur_every == 0``)."""
    return every > 0 and step % every == 0
