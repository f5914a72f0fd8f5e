"""The shared base of the class-activation-map family.

:func:`layer_forward` runs one batched forward pass recording the chosen layers (through the one
recorder) and, if asked, the gradients of the target scores with respect to them (the backward
pass stops at the deepest recorded layer). Each CAM method is then a short function of the
activations ``A`` (N, K, h, w) and gradients ``G``.
"""

from __future__ import annotations

import torch

from convscope.core.context import Context
from convscope.core.recorder import Recorder
from convscope.errors import LayerError

__all__ = ["LayerPass", "layer_forward", "per_layer", "weighted_sum"]


class LayerPass:
    """What :func:`layer_forward` returns: model output, scores, activations and gradients."""

    def __init__(self, output, scores, activations, gradients):
        self.output = output
        self.scores = scores
        self.activations: list[torch.Tensor] = activations
        self.gradients: list[torch.Tensor] | None = gradients


def layer_forward(ctx: Context, gradients: bool = True, method: str = "this method") -> LayerPass:
    """Forward ``ctx.x``, record ``ctx.layers``; with ``gradients`` also d(sum of scores)/dA."""
    with (
        torch.set_grad_enabled(gradients),
        Recorder(ctx.model, ctx.layers, gradients=gradients) as rec,
    ):
        output = ctx.model(ctx.x)
        scores = ctx.target.scores(output)
        acts = [rec.activation(ref) for ref in ctx.layers]
        for ref, a in zip(ctx.layers, acts):
            if a.ndim != 4:
                raise LayerError(
                    f"layer {ref.spec!r} outputs shape {tuple(a.shape)}, not a 4-D (N, C, H, W) "
                    f"feature map; {method} needs a convolutional layer"
                )
        grads = list(rec.grad(scores.sum(), acts)) if gradients else None
    return LayerPass(
        output.detach(),
        scores.detach(),
        [a.detach() for a in acts],
        None if grads is None else [g.detach() for g in grads],
    )


def weighted_sum(
    weights: torch.Tensor, activations: torch.Tensor, relu: bool = True
) -> torch.Tensor:
    """:math:`\\sum_k w_k A_k` over channels, rectified when ``relu``: (N, K[, h, w]) x (N, K, h, w) -> (N, h, w)."""
    if weights.ndim == 2:
        weights = weights[:, :, None, None]
    cam = (weights * activations).sum(dim=1)
    return cam.clamp_min(0) if relu else cam


def per_layer(p: LayerPass, fn) -> list[torch.Tensor]:
    """``[fn(A, G) for each recorded layer]`` (G is None when no gradients were taken)."""
    grads = p.gradients if p.gradients is not None else [None] * len(p.activations)
    return [fn(a, g) for a, g in zip(p.activations, grads)]
