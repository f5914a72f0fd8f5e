"""Score-CAM.

Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, "Score-CAM: Score-Weighted Visual Explanations
for Convolutional Neural Networks", CVPR workshops 2020 (arXiv:1910.01279), section 3 and
Algorithm 1: each channel, upsampled to the input and min-max normalized, masks the input; the
class score of each masked input, softmaxed over the channels, weights the channels:

.. math::
    H^k = s\\big(\\mathrm{Up}(A^k)\\big), \\quad s(M) = \\frac{M - \\min M}{\\max M - \\min M},
    \\qquad \\alpha^c = \\mathrm{softmax}_k\\big(S^c(X \\odot H^k) - S^c(X_b)\\big),
    \\qquad L^c = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k^c A^k\\Big)

:math:`\\mathrm{Up}` is bilinear (``align_corners=False``, as the core's upsampling), the input
:math:`X` is the model input as given (a mask of 0 sends a pixel to 0 in model-input space), and a
channel that is constant gets the all-zero mask. The baseline term :math:`S^c(X_b)` is the same for
every channel, so the softmax cancels it and it is not computed. (The authors' code weights by the
softmax *probability* of the class on each masked input, without the softmax over channels.)

torchcam's ``ScoreCAM`` normalizes each channel at the layer's resolution and then upsamples
(:math:`\\mathrm{Up}(s(A^k))`): that differs from the paper whenever a channel's extreme lies
between the upsampled pixel centres, so the two agree only at layers with the input's resolution.

Cost: one forward pass plus ``K`` forward passes per image (``K`` the layer's channels), run
``batch_size`` masked inputs at a time without autograd. Layout of the masked batch: row
``k * N + i`` is image ``i`` masked by its channel ``k`` (whole copies of the batch, so a callable
target sees batches like the clean one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convscope.cam.base import layer_forward, weighted_sum
from convscope.core.context import Context, MethodOutput
from convscope.core.perturbed_batches import copy_scores, progress, row_chunks
from convscope.core.registry import register_method


def score_masks(a: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """:math:`s(\\mathrm{Up}(A))` for (B, h, w) maps -> (B, H, W): bilinear upsampling, then each
    map min-max normalized to [0, 1] (a constant map becomes 0)."""
    up = F.interpolate(a[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    span = up.amax(dim=(1, 2), keepdim=True) - lo
    ok = span > 0
    return torch.where(ok, (up - lo) / torch.where(ok, span, torch.ones_like(span)), 0.0)


@register_method(
    "scorecam",
    family="cam",
    needs_layer=True,
    paper="Wang et al. 2020, Score-CAM (arXiv:1910.01279)",
    passes="1 + K forwards per image (K channels of the layer); no backward",
    summary="ReLU(sum_k w_k A_k), w = softmax over channels of the score of the input masked "
    "by each upsampled, normalized channel",
)
def scorecam(ctx: Context, *, batch_size: int | None = None) -> MethodOutput:
    """:math:`\\mathrm{ReLU}(\\sum_k \\alpha_k^c A^k)`, :math:`\\alpha^c = \\mathrm{softmax}_k
    S^c(X \\odot s(\\mathrm{Up}(A^k)))` (Wang et al. 2020).

    Options: ``batch_size`` masked inputs per forward pass (default 64 on a GPU, fewer on a CPU:
    see :func:`convscope.core.perturbed_batches.default_rows`).

    ``extras``: ``scores`` (the masked-input scores :math:`S^c(X \\odot H^k)`) and ``weights``
    (:math:`\\alpha^c`), one (N, K) tensor each per layer.
    """
    p = layer_forward(ctx, gradients=False, method="Score-CAM")
    x = ctx.x.detach()
    n = x.shape[0]
    maps, all_scores, all_weights = [], [], []
    with torch.no_grad():
        for a in p.activations:
            k = a.shape[1]
            flat = a.transpose(0, 1).flatten(0, 1)  # (K * N, h, w): row k * N + i
            scores = a.new_empty(k * n)
            for start, stop in progress(
                row_chunks(k * n, n, batch_size, ctx.target, default=64, like=ctx.x),
                ctx,
                "Score-CAM",
            ):
                images = torch.arange(start, stop, device=x.device) % n
                masked = x[images] * score_masks(flat[start:stop], x.shape[-2:])[:, None]
                scores[start:stop] = copy_scores(ctx.target, ctx.model(masked), images, n)
            scores = scores.view(k, n).T  # (N, K)
            weights = scores.softmax(dim=1)
            all_scores.append(scores)
            all_weights.append(weights)
            maps.append(weighted_sum(weights, a))
    return MethodOutput(maps, p.output, extras={"scores": all_scores, "weights": all_weights})
