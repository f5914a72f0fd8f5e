"""Ablation-CAM.

Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization", WACV 2020, section 3: the weight of a channel is the relative drop of
the class score when that channel of the layer is set to zero,

.. math::
    w_k^c = \\frac{y^c - y^c_k}{y^c}, \\qquad
    L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big)

with :math:`y^c_k` the score with channel :math:`k` of the layer's output zeroed (for every image
at once). The rest of the network after the layer runs through :class:`convscope.core.surgery.Tail`
(built once per layer), so the layers before it are not recomputed. The division by :math:`y^c`
assumes a positive score (the paper's case: the predicted class); with a negative score every
weight changes sign.

Cost: one forward pass to build the tail, then ``K`` forward passes of the tail (``K`` the
layer's channels), each with the whole batch, without autograd.
"""

from __future__ import annotations

import torch

from convscope.cam.base import layer_forward, weighted_sum
from convscope.cam.scorecam import copy_scores
from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method
from convscope.core.surgery import Tail


@register_method(
    "ablationcam",
    family="cam",
    needs_layer=True,
    paper="Desai & Ramaswamy 2020, Ablation-CAM (WACV 2020)",
    passes="1 forward + K forwards of the network after the layer (K channels); no backward",
    summary="ReLU(sum_k w_k A_k), w_k = relative drop of the score when channel k is zeroed",
)
def ablationcam(ctx: Context) -> MethodOutput:
    """:math:`\\mathrm{ReLU}(\\sum_k w_k^c A^k)`, :math:`w_k^c = (y^c - y^c_k) / y^c`
    (Desai & Ramaswamy 2020).

    ``extras``: ``weights`` (:math:`w^c`), ``split`` (True where the tail ran only the layers after
    the chosen one), one entry per layer.
    """
    p = layer_forward(ctx, gradients=False, method="Ablation-CAM")
    x = ctx.x.detach()
    n = x.shape[0]
    images = torch.arange(n, device=x.device)
    scores = p.scores[:, None]
    maps, all_weights, splits = [], [], []
    with torch.no_grad():
        for ref, a in zip(ctx.layers, p.activations):
            tail = Tail(ctx.model, ref, x)
            ablated = torch.empty_like(a)
            weights = a.new_empty(n, a.shape[1])
            for k in range(a.shape[1]):
                # refilled for every call: an in-place op after the layer may change its input
                ablated.copy_(a)
                ablated[:, k] = 0
                weights[:, k] = copy_scores(ctx.target, tail(ablated), images, n)
            weights = (scores - weights) / scores
            all_weights.append(weights)
            splits.append(tail.split)
            maps.append(weighted_sum(weights, a))
    return MethodOutput(maps, p.output, extras={"weights": all_weights, "split": splits})
