"""SmoothGrad, and the bookkeeping shared by the methods that run many perturbed copies.

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

Layout of the perturbed copies (shared with integrated gradients and occlusion): row
``p = j * N + i`` of the perturbed batch is copy ``j`` of image ``i``, so every run of ``N`` rows
is one perturbed copy of the whole batch, in its order. Class targets are read with ``gather``
on the classes resolved once on the clean input; a callable target is applied to each run of
``N`` rows (so it sees a batch shaped and ordered like the clean one), which is why, with a
callable target, ``batch_size`` is rounded down to a multiple of ``N`` (and at least ``N``).
``batch_size=None`` runs one image's worth of copies per forward (``n_samples`` rows for
SmoothGrad, ``steps`` for integrated gradients), so memory does not grow with ``N``: all
``N * steps`` copies of 4 Lite0 images at once take ~17 GB of CPU memory, and are slower.
"""

from __future__ import annotations

import torch

from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method
from convscope.core.targets import Target
from convscope.errors import MethodError, TargetError

__all__ = [
    "as_baseline",
    "clean_forward",
    "copy_scores",
    "empty_rows",
    "row_chunks",
    "smoothgrad",
]


# -- shared by the multi-pass methods (smoothgrad, integrated_gradients, occlusion) -------------
def clean_forward(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, scores) on the clean batch, without autograd; resolves ``ctx.target.indices``."""
    with torch.no_grad():
        output = ctx.model(ctx.x)
        scores = ctx.target.scores(output)
    return output.detach(), scores.detach()


def copy_scores(target: Target, output: torch.Tensor, images: torch.Tensor, n: int) -> torch.Tensor:
    """Scores of perturbed copies: row ``r`` of ``output`` comes from image ``images[r]``.

    Class targets use the classes resolved on the clean batch (:func:`clean_forward`); a callable
    target is applied to each run of ``n`` rows, which must be whole copies of the clean batch.
    ``target`` itself is left as the clean forward set it.
    """
    if target.fn is None:
        if target.score == "prob":
            output = output.softmax(dim=1)
        elif target.score == "logprob":
            output = output.log_softmax(dim=1)
        return output.gather(1, target.indices[images][:, None])[:, 0]
    if output.shape[0] % n:  # row_chunks hands callables whole copies; a bug if raised
        raise RuntimeError("callable targets need whole copies of the batch")
    parts = []
    for group in output.split(n):
        s = target.fn(group)
        if not isinstance(s, torch.Tensor) or s.shape != (n,):
            raise TargetError(
                f"a target callable must return a tensor of shape ({n},); "
                f"got {getattr(s, 'shape', type(s).__name__)}"
            )
        parts.append(s)
    return torch.cat(parts)


def row_chunks(
    rows: int, n: int, batch_size: int | None, target: Target, default: int
) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of at most ``batch_size`` perturbed rows (``default`` if None);
    whole copies of the ``n``-image batch when the target is a callable."""
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise MethodError(f"batch_size must be a positive integer or None, not {batch_size!r}")
    step = min(default if batch_size is None else batch_size, rows)
    if target.fn is not None:
        step = max(n, step - step % n)
    return [(s, min(s + step, rows)) for s in range(0, rows, step)]


def empty_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """An uninitialized (rows, C, H, W) buffer in ``x``'s dtype, device and memory format.

    The memory format matters: convolutions pick other kernels for channels-last inputs, and on
    EfficientNet-Lite0 the input gradients of the two formats differ by up to ~1e-3 (relative), so
    perturbed copies are kept in the format of the clean input (and of plain saliency).
    """
    fmt = torch.contiguous_format
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        fmt = torch.channels_last
    return torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)


def as_baseline(baseline: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``baseline`` as a tensor of ``x``'s dtype and device with ``x.ndim`` dims that broadcasts
    to ``x`` (its first dim is 1 or N)."""
    if isinstance(baseline, bool) or not isinstance(baseline, int | float | torch.Tensor):
        raise MethodError(
            f"baseline must be a number or a tensor broadcastable to the input, "
            f"not {type(baseline).__name__}"
        )
    b = torch.as_tensor(
        baseline.detach() if isinstance(baseline, torch.Tensor) else baseline,
        dtype=x.dtype,
        device=x.device,
    )
    shape = tuple(x.shape)
    ok = b.ndim <= x.ndim
    if ok:
        b = b.reshape((1,) * (x.ndim - b.ndim) + tuple(b.shape))
        try:
            ok = torch.broadcast_shapes(b.shape, x.shape) == x.shape
        except RuntimeError:
            ok = False
    if not ok:
        raise MethodError(
            f"a baseline of shape {tuple(baseline.shape)} does not broadcast to the input {shape}"
        )
    return b


# -- SmoothGrad ------------------------------------------------------------------------------
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
    inputs per forward pass (default: ``n_samples``); ``seed`` makes the noise reproducible
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
    chunks = row_chunks(n * n_samples, n, batch_size, ctx.target, default=n_samples)
    buf = empty_rows(x, chunks[0][1] - chunks[0][0])
    for start, stop in chunks:
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
