"""Grad-CAM++.

Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Improved Visual Explanations for
Deep Convolutional Networks", WACV 2018 (arXiv:1710.11063), eqs. 7, 19:

.. math::
    \\alpha_{ij}^{kc} = \\frac{g_{ij}^2}{2 g_{ij}^2 + \\sum_{a,b} A^k_{ab}\\, g_{ij}^3}, \\qquad
    w_k^c = \\sum_{i,j} \\alpha_{ij}^{kc}\\, \\mathrm{ReLU}(g_{ij}), \\qquad
    L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big)

with :math:`g_{ij} = \\partial S^c / \\partial A^k_{ij}` the gradient of the class score. Eq. 19 is
the paper's closed form for :math:`Y^c = \\exp(S^c)` (the higher derivatives of a piecewise-linear
network are powers of the first one); :math:`\\alpha = 0` where the denominator is 0 (where
:math:`g = 0`). The factor :math:`\\exp(S^c)` that :math:`\\partial Y^c/\\partial A` adds to every
weight is one positive number per image: it is left out (as pytorch-grad-cam and torchcam do), so
raw maps stay in the score's units and cannot overflow; the authors' code also divides
:math:`\\alpha` by its spatial sum, which the paper does not, and which is not done here.

Note: :math:`\\sum_{a,b} A_{ab}` multiplies the third power of the gradient *at* :math:`(i, j)`;
torchcam 0.5 sums :math:`A_{ab}\\, g_{ab}^3` instead (and its division by the denominator is lost
to a masked in-place operation on a copy, so its weights are :math:`\\sum_{ij} \\mathrm{ReLU}(g)^3`).
Cost: one forward pass and one backward pass to the layer.
"""

from __future__ import annotations

import torch

from convscope.cam.base import layer_forward, per_layer, weighted_sum
from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method


def gradcampp_weights(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """:math:`w_k = \\sum_{ij} \\alpha_{ij}^k \\mathrm{ReLU}(g_{ij})`, (N, K, h, w) -> (N, K)."""
    g2 = g * g
    denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g
    nonzero = denom != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denom, torch.ones_like(denom)), 0.0)
    return (alpha * g.clamp_min(0)).sum(dim=(2, 3))


@register_method(
    "gradcam++",
    family="cam",
    needs_layer=True,
    paper="Chattopadhay et al. 2018, Grad-CAM++ (arXiv:1710.11063)",
    passes="1 forward + 1 backward to the layer",
    summary="ReLU(sum_k w_k A_k), w_k = sum_ij alpha_ij ReLU(dS/dA_k,ij) with alpha from the "
    "2nd/3rd-power closed form",
)
def gradcampp(ctx: Context) -> MethodOutput:
    """:math:`\\mathrm{ReLU}(\\sum_k w_k^c A^k)`, :math:`w_k^c = \\sum_{ij} \\alpha_{ij}^{kc}
    \\mathrm{ReLU}(\\partial S^c/\\partial A^k_{ij})` (Chattopadhay et al. 2018, eq. 19).

    ``extras``: ``weights`` (one (N, K) tensor per layer).
    """
    p = layer_forward(ctx, gradients=True, method="Grad-CAM++")
    weights = per_layer(p, gradcampp_weights)
    maps = [weighted_sum(w, a) for w, a in zip(weights, p.activations)]
    return MethodOutput(maps, p.output, extras={"weights": weights})
