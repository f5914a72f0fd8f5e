"""Occlusion.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
(arXiv:1311.2901), section 4.2, as captum's ``Occlusion`` defines it: a window :math:`W_k` (all
colour channels) slides over the image; each pixel gets the mean score drop over the windows
that cover it,

.. math::
    M_{ij} = \\frac{1}{|\\{k : (i,j) \\in W_k\\}|} \\sum_{k : (i,j) \\in W_k}
        \\big( S_t(x) - S_t(x \\odot (1 - \\mathbb{1}_{W_k}) + x' \\odot \\mathbb{1}_{W_k}) \\big)

with baseline :math:`x'` (signed: positive where hiding the pixels lowers the score).

Window placement (captum's): along a side of length :math:`L` with window :math:`w` and stride
:math:`s`, windows start at :math:`0, s, 2s, \\dots, \\lceil (L - w)/s \\rceil s`; when
:math:`(L - w)` is not a multiple of :math:`s` the last window is *not* moved back to end at the
border: it starts at :math:`\\lceil (L - w)/s \\rceil s` and is cut by the border (a narrower
window). A window larger than the image is clipped to it (captum refuses it); with a stride larger
than the window (captum refuses it) uncovered pixels get 0.

Cost: one forward pass per window position and image (plus one), no backward; the whole method
runs under ``torch.no_grad``.
"""

from __future__ import annotations

import torch

from convscope.core.context import Context, MethodOutput
from convscope.core.perturbed_batches import (
    as_baseline,
    clean_forward,
    copy_scores,
    empty_rows,
    progress,
    row_chunks,
)
from convscope.core.registry import register_method
from convscope.errors import MethodError

__all__ = ["occlusion", "window_masks"]


def _pair(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else value
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)
    ):
        raise MethodError(f"{what} must be a positive integer or a pair (h, w), not {value!r}")
    return int(pair[0]), int(pair[1])


def window_masks(length: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """(K, length) bool: where each of the K window positions along one side covers."""
    window = min(window, length)
    count = -(-(length - window) // stride) + 1  # ceil((L - w) / s) + 1, as captum
    starts = torch.arange(count, device=device)[:, None] * stride
    pos = torch.arange(length, device=device)[None]
    masks = (pos >= starts) & (pos < starts + window)
    return masks[masks.any(dim=1)]  # a stride beyond the window can start one past the border


@register_method(
    "occlusion",
    family="gradient",
    needs_layer=False,
    paper="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks "
    "(arXiv:1311.2901)",
    passes="1 forward per window position and image, + 1 forward; no backward",
    summary="mean score drop when a sliding window (all channels) is set to a baseline",
)
def occlusion(
    ctx: Context,
    *,
    window: int | tuple[int, int] = 16,
    stride: int | tuple[int, int] = 8,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
) -> MethodOutput:
    """Mean of :math:`S_t(x) - S_t(x \\text{ with window } W_k \\text{ set to } x')` over the
    windows covering each pixel (Zeiler & Fergus 2014, as captum's ``Occlusion``).

    Options: ``window`` (h, w) or one int, spanning all channels; ``stride`` (h, w) or one int;
    ``baseline`` :math:`x'`, a number or a tensor that broadcasts to the input, in model-input
    space (0 is the mean colour of a mean/std-normalized model); ``batch_size`` occluded inputs per
    forward pass (None: one image's windows per pass, at most 64, on a GPU, fewer on a CPU: see
    :func:`convscope.core.perturbed_batches.default_rows`).

    ``extras``: ``attributions`` (N, C, H, W), the map repeated over the channels.
    """
    (wh, ww), (sh, sw) = _pair(window, "window"), _pair(stride, "stride")
    with torch.no_grad():
        x = ctx.x.detach()
        n, c, h, w = x.shape
        base = as_baseline(baseline, x)
        output, clean_scores = clean_forward(ctx)
        rmask = window_masks(h, wh, sh, x.device)  # (Kr, H)
        cmask = window_masks(w, ww, sw, x.device)  # (Kc, W)
        n_windows = rmask.shape[0] * cmask.shape[0]
        count = rmask.sum(dim=0, dtype=x.dtype)[:, None] * cmask.sum(dim=0, dtype=x.dtype)

        total = x.new_zeros((n, h, w))
        chunks = row_chunks(
            n * n_windows, n, batch_size, ctx.target, default=min(n_windows, 64), like=x
        )
        buf = empty_rows(x, chunks[0][1] - chunks[0][0])
        for start, stop in progress(chunks, ctx, "occlusion"):
            rows = torch.arange(start, stop, device=x.device)
            images, k = rows % n, rows // n
            mask = rmask[k // cmask.shape[0], :, None] & cmask[k % cmask.shape[0], None, :]
            xb = torch.index_select(x, 0, images, out=buf[: stop - start])
            fill = base if base.shape[0] == 1 else base[images]
            torch.where(mask[:, None], fill, xb, out=xb)
            drop = clean_scores[images] - copy_scores(ctx.target, ctx.model(xb), images, n)
            total.index_add_(0, images, drop.view(-1, 1, 1) * mask)
        maps = total / count.clamp_min(1)
    return MethodOutput(
        maps,
        output,
        extras={"attributions": maps[:, None].expand(n, c, h, w), "windows": n_windows},
    )
