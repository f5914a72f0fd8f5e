"""Vanilla gradient saliency.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps", ICLR workshop 2014 (arXiv:1312.6034), section 3.1:

.. math::  M_{ij} = \\max_c \\left| \\frac{\\partial S_t(I)}{\\partial I_{c,i,j}} \\right|

where :math:`S_t` is the (pre-softmax) score of target class :math:`t` and :math:`I` the
(normalized) model input. Cost: one forward and one backward pass to the input.
"""

from __future__ import annotations

import torch

from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method


def input_gradient(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """(dS/dx of shape (N, C, H, W), model output): one forward and one backward to the input."""
    x = ctx.x.detach().requires_grad_(True)
    with torch.enable_grad():
        output = ctx.model(x)
        scores = ctx.target.scores(output)
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad, output.detach()


@register_method(
    "saliency",
    family="gradient",
    needs_layer=False,
    paper="Simonyan et al. 2014, Deep Inside Convolutional Networks (arXiv:1312.6034)",
    passes="1 forward + 1 backward to the input",
    summary="max over colour channels of |dS/dx|",
)
def saliency(ctx: Context) -> MethodOutput:
    """:math:`\\max_c |\\partial S_t / \\partial x_c|` per pixel (Simonyan et al. 2014)."""
    grad, output = input_gradient(ctx)
    return MethodOutput(grad.abs().amax(dim=1), output)
