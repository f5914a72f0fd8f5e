"""Ablation-CAM.

Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization", WACV 2020, section 3: the weight of a channel is the relative drop of
the class score when that channel of the layer is set to zero,

.. math::
    w_k^c = \\frac{y^c - y^c_k}{y^c}, \\qquad
    L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big)

with :math:`y^c_k` the score with channel :math:`k` of the layer's output zeroed (for every image
at once). The rest of the network after the layer runs through :class:`convscope.core.tail.Tail`
(built once per layer), so the layers before it are not recomputed. The division by :math:`y^c`
assumes a positive score (the paper's case: the predicted class); with a negative score every
weight changes sign, and a score of exactly 0 is refused (:class:`~convscope.errors.MethodError`).

Cost: one forward pass, building the tail (:class:`~convscope.core.tail.Tail` traces the model,
captures what the tail needs in one traced forward pass and checks the tail on two copies of the
batch against the model's output), then the tail on ``K`` ablated copies
of the batch (``K`` the layer's channels), ``batch_size`` rows per pass, without autograd. Row
``k * N + i`` of the ablated batch is image ``i`` with channel ``k`` zeroed.
"""

from __future__ import annotations

import torch

from convscope.cam.base import layer_forward, weighted_sum
from convscope.core.context import Context, MethodOutput
from convscope.core.perturbed_batches import copy_scores, progress, row_chunks
from convscope.core.registry import register_method
from convscope.core.tail import Tail
from convscope.errors import MethodError


@register_method(
    "ablationcam",
    family="cam",
    needs_layer=True,
    paper="Desai & Ramaswamy 2020, Ablation-CAM (WACV 2020)",
    passes="1 forward + K forwards of the network after the layer (K channels); no backward",
    summary="ReLU(sum_k w_k A_k), w_k = relative drop of the score when channel k is zeroed",
)
def ablationcam(ctx: Context, *, batch_size: int | None = None) -> MethodOutput:
    """:math:`\\mathrm{ReLU}(\\sum_k w_k^c A^k)`, :math:`w_k^c = (y^c - y^c_k) / y^c`
    (Desai & Ramaswamy 2020).

    Options: ``batch_size`` ablated rows per pass of the tail (default 64 on a GPU, on a CPU as
    many as :func:`convscope.core.perturbed_batches.default_rows` allows for the layer's activation; at least
    one copy of the batch).

    ``extras``: ``weights`` (:math:`w^c`), ``split`` (True where the tail ran only the layers after
    the chosen one), one entry per layer.
    """
    p = layer_forward(ctx, gradients=False, method="Ablation-CAM")
    x = ctx.x.detach()
    n = x.shape[0]
    scores = p.scores[:, None]
    zero = (scores[:, 0] == 0).nonzero()[:, 0].tolist()
    if zero:  # w = (y - y_k) / y is undefined: an error, not maps of NaN
        raise MethodError(
            f"Ablation-CAM divides by the class score, which is exactly 0 for image(s) "
            f"{', '.join(map(str, zero))}; explain another target or score"
        )
    maps, all_weights, splits = [], [], []
    with torch.no_grad():
        for ref, a in zip(ctx.layers, p.activations):
            tail = Tail(ctx.model, ref, x, output=p.output)
            k = a.shape[1]
            ablated_scores = a.new_empty(k * n)
            chunks = row_chunks(k * n, n, batch_size, ctx.target, default=64, whole=True, like=a)
            buf = torch.empty(
                (chunks[0][1] - chunks[0][0], *a.shape[1:]), dtype=a.dtype, device=a.device
            )
            for start, stop in progress(chunks, ctx, "Ablation-CAM"):
                rows = buf[: stop - start].view(-1, *a.shape)  # (copies, N, K, h, w)
                rows.copy_(a.expand_as(rows))
                channels = torch.arange(start // n, stop // n, device=a.device)
                rows[torch.arange(len(channels), device=a.device), :, channels] = 0
                images = torch.arange(start, stop, device=a.device) % n
                out = tail(buf[: stop - start], donate=True)  # refilled every pass
                ablated_scores[start:stop] = copy_scores(ctx.target, out, images, n)
            weights = (scores - ablated_scores.view(k, n).T) / scores
            all_weights.append(weights)
            splits.append(tail.split)
            maps.append(weighted_sum(weights, a))
    return MethodOutput(maps, p.output, extras={"weights": all_weights, "split": splits})
