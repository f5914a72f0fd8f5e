"""SmoothGrad.

Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding noise",
ICML workshop 2017 (arXiv:1706.03825), eq. (3), applied to the saliency map of Simonyan et al.
(the absolute gradient, then the max over colour channels, as convscope's ``saliency``); the mean
of the absolute gradients is captum's ``NoiseTunnel(Saliency)`` with ``abs=True``:

.. math::
    M_{ij} = \\max_c \\frac{1}{n} \\sum_{k=1}^{n}
        \\left| \\frac{\\partial S_t}{\\partial x_{c,i,j}}(x + \\epsilon_k) \\right|, \\qquad
    \\epsilon_k \\sim \\mathcal{N}(0, \\sigma^2 I), \\quad
    \\sigma = \\mathrm{noise} \\cdot (\\max x - \\min x)

with :math:`\\max x - \\min x` taken per image over the (normalized) model input, the paper's
"noise level". Cost: ``n_samples`` forward and backward passes per image (plus one forward).

Noise: copy ``j`` of image ``i`` is the ``j``-th ``torch.randn((C, H, W))`` draw of a generator
seeded ``seed + i`` (of the global generator, in the order the copies are made, when ``seed`` is
None), so for a given seed the noise does not depend on ``batch_size`` or on the device's
chunking. It is the noise of captum's ``NoiseTunnel(Saliency).attribute(x[i:i+1],
nt_type="smoothgrad", nt_samples=n_samples, stdevs=sigma_i, abs=True)`` run under
``torch.manual_seed(seed + i)``: captum draws ``torch.normal(0, sigma)`` of shape
``(n_samples, C, H, W)``, which is ``sigma * torch.randn`` from the global generator, and on the
CPU one draw of ``k`` images is ``k`` draws of one image when ``C * H * W`` is a multiple of 16
(PyTorch fills normal samples in blocks of 16), as it is for 3 x 224 x 224.

The perturbed copies are laid out and batched as :mod:`convscope.core.perturbed_batches` describes.
"""

from __future__ import annotations

import torch

from convscope.core.context import Context, MethodOutput
from convscope.core.perturbed_batches import (
    clean_forward,
    copy_scores,
    empty_rows,
    progress,
    row_chunks,
)
from convscope.core.registry import register_method
from convscope.errors import MethodError

__all__ = ["smoothgrad"]


@register_method(
    "smoothgrad",
    family="gradient",
    needs_layer=False,
    paper="Smilkov et al. 2017, SmoothGrad: removing noise by adding noise (arXiv:1706.03825)",
    passes="n_samples forwards + backwards to the input per image, + 1 forward",
    summary="max over colour channels of the mean |dS/dx| over noisy copies of the input",
)
def smoothgrad(
    ctx: Context,
    *,
    n_samples: int = 25,
    noise: float = 0.15,
    batch_size: int | None = None,
    seed: int | None = None,
) -> MethodOutput:
    """:math:`\\max_c \\frac1n \\sum_k |\\partial S_t/\\partial x_c (x + \\epsilon_k)|`,
    :math:`\\epsilon_k \\sim N(0, \\sigma^2)`, :math:`\\sigma` = ``noise`` times the image's value
    range (Smilkov et al. 2017).

    Options: ``n_samples`` noisy copies per image; ``noise`` the noise level
    :math:`\\sigma / (\\max x - \\min x)` (the paper suggests 0.1-0.2); ``batch_size`` perturbed
    inputs per forward pass (default: ``n_samples`` on a GPU, fewer on a CPU: see
    :func:`convscope.core.perturbed_batches.default_rows`); ``seed`` makes the noise reproducible
    (image ``i`` uses a generator seeded ``seed + i``).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise MethodError(f"n_samples must be a positive integer, not {n_samples!r}")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or noise < 0:
        raise MethodError(f"noise must be a number >= 0, not {noise!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise MethodError(f"seed must be an integer or None, not {seed!r}")
    x = ctx.x.detach()
    n = x.shape[0]
    output, _ = clean_forward(ctx)
    flat = x.flatten(1)
    sigma = noise * (flat.amax(dim=1) - flat.amin(dim=1))  # (N,)
    gens: list[torch.Generator | None] = [None] * n
    if seed is not None:
        gens = [torch.Generator(device=x.device).manual_seed(seed + i) for i in range(n)]

    total = torch.zeros_like(x)
    chunks = row_chunks(n * n_samples, n, batch_size, ctx.target, default=n_samples, like=x)
    buf = empty_rows(x, chunks[0][1] - chunks[0][0])
    for start, stop in progress(chunks, ctx, "SmoothGrad"):
        xb = buf[: stop - start]
        images = torch.arange(start, stop, device=x.device) % n
        for i in range(n):  # image i's rows: every n-th, its copies in order
            for row in xb[(i - start) % n :: n]:
                row.copy_(torch.randn(row.shape, generator=gens[i], dtype=x.dtype, device=x.device))
        xb.mul_(sigma[images].view(-1, 1, 1, 1)).add_(x[images])  # x + sigma * eps, as captum
        with torch.enable_grad():
            xg = xb.detach().requires_grad_(True)
            scores = copy_scores(ctx.target, ctx.model(xg), images, n)
            (grad,) = torch.autograd.grad(scores.sum(), xg)
        total.index_add_(0, images, grad.abs())
    mean = total / n_samples
    return MethodOutput(mean.amax(dim=1), output, extras={"attributions": mean, "sigma": sigma})
