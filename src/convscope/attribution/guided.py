"""Guided backpropagation, the deconvnet, and guided Grad-CAM.

All three change only how gradients pass rectifier modules (:mod:`convscope.core.rectifier_rules`), for
``nn.ReLU`` and ``nn.ReLU6`` alike; the reference tools rewrite ``nn.ReLU`` only and return the plain
gradient on ReLU6 networks such as EfficientNet-Lite0 and MobileNetV2. Maps are the maximum over
colour channels of the absolute reconstruction (as for saliency); the full (N, C, H, W)
reconstruction is in ``extras["attributions"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from convscope.cam.base import weighted_sum
from convscope.core.context import Context, MethodOutput
from convscope.core.recorder import Recorder
from convscope.core.rectifier_rules import RectifierRules
from convscope.core.registry import register_method
from convscope.errors import LayerError

T = TypeVar("T")


def _robustly(run: Callable[[bool], T]) -> T:
    """``run(robust=False)``: the rules through the rectifiers' own backward (cheapest); if the
    model modifies a rectifier's output in place afterwards (``x = relu(x); x += y``), autograd
    refuses that backward, and ``run(robust=True)`` keeps each rectifier's mask itself."""
    try:
        return run(False)
    except RuntimeError as e:
        if "modified by an inplace operation" not in str(e):
            raise
    return run(True)


def _reconstruct(ctx: Context, rule: str, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    def run(robust: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x = ctx.x.detach().requires_grad_(True)
        with torch.enable_grad(), RectifierRules(ctx.model, rule, method, robust) as rules:
            output = ctx.model(x)
            rules.check()
            scores = ctx.target.scores(output)
            (grad,) = torch.autograd.grad(scores.sum(), x)
        return grad, output.detach()

    return _robustly(run)


@register_method(
    "guided_backprop",
    family="gradient",
    needs_layer=False,
    paper="Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net (arXiv:1412.6806)",
    passes="1 forward + 1 backward to the input",
    summary="gradient passed through rectifiers only where input active and gradient positive",
)
def guided_backprop(ctx: Context) -> MethodOutput:
    """Guided backpropagation (Springenberg et al. 2015, eq. in sec. 3.4): at each rectifier,
    :math:`R_i = 1[l < x_i < u] \\cdot \\max(R_{i+1}, 0)`; the map is :math:`\\max_c |R_c|`."""
    grad, output = _reconstruct(ctx, "guided", "guided_backprop")
    return MethodOutput(grad.abs().amax(dim=1), output, {"attributions": grad})


@register_method(
    "deconvnet",
    family="gradient",
    needs_layer=False,
    paper="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks (arXiv:1311.2901)",
    passes="1 forward + 1 backward to the input",
    summary="reconstruction with rectifiers applied to the backward signal",
)
def deconvnet(ctx: Context) -> MethodOutput:
    """Deconvnet reconstruction (Zeiler & Fergus 2014, sec. 2.1): at each rectifier
    :math:`R_i = \\max(R_{i+1}, 0)`, whatever the forward pass did; map :math:`\\max_c |R_c|`."""
    grad, output = _reconstruct(ctx, "deconvnet", "deconvnet")
    return MethodOutput(grad.abs().amax(dim=1), output, {"attributions": grad})


@register_method(
    "guided_gradcam",
    family="gradient",
    needs_layer=True,
    paper="Selvaraju et al. 2017, Grad-CAM (arXiv:1610.02391), sec. 3.1",
    passes="1 forward + 1 backward to the layer + 1 backward to the input",
    summary="guided backpropagation times the upsampled Grad-CAM map",
)
def guided_gradcam(ctx: Context) -> MethodOutput:
    """Guided Grad-CAM (Selvaraju et al. 2017): :math:`R^{guided} \\odot
    \\mathrm{up}(L^c_{Grad\\text{-}CAM})` per channel, Grad-CAM upsampled bilinearly; map
    :math:`\\max_c |\\cdot|`. One forward pass: Grad-CAM's gradient is taken with the true derivative,
    then guided backpropagation's from the same graph."""
    if len(ctx.layers) != 1:
        raise LayerError("guided_gradcam takes one layer")

    def run(robust: bool) -> tuple[torch.Tensor, ...]:
        x = ctx.x.detach().requires_grad_(True)
        with (
            torch.enable_grad(),
            RectifierRules(ctx.model, "plain", "guided_gradcam", robust) as rules,
            Recorder(ctx.model, ctx.layers, gradients=True) as rec,
        ):
            output = ctx.model(x)
            rules.check()
            scores = ctx.target.scores(output).sum()
            a = rec.activation(ctx.layer)
            if a.ndim != 4:
                raise LayerError(
                    f"layer {ctx.layer.spec!r} outputs shape {tuple(a.shape)}, not a 4-D "
                    "(N, C, H, W) feature map; guided_gradcam needs a convolutional layer"
                )
            (g,) = torch.autograd.grad(scores, a, retain_graph=True)
            rules.rule = "guided"
            (guided,) = torch.autograd.grad(scores, x)
        return x, output, a, g, guided

    x, output, a, g, guided = _robustly(run)
    cam = weighted_sum(g.mean(dim=(2, 3)), a.detach())
    up = torch.nn.functional.interpolate(
        cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False
    )
    attributions = guided * up
    return MethodOutput(
        attributions.abs().amax(dim=1), output.detach(), {"attributions": attributions}
    )
