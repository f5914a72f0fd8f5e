"""XGrad-CAM (axiom-based Grad-CAM).

Fu, Hu, Zhang, Zhou, Li & Zhang (Fu et al.), "Axiom-based Grad-CAM: Towards Accurate
Visualization and Explanation of CNNs", BMVC 2020 (arXiv:2008.02312), section 3:

.. math::
    \\alpha_k^c = \\sum_{i,j} \\frac{A^k_{ij}}{\\sum_{a,b} A^k_{ab}}
        \\frac{\\partial S^c}{\\partial A^k_{ij}}, \\qquad
    L^c = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k^c A^k\\Big)

(the gradient averaged with the activation as weight, instead of Grad-CAM's uniform mean); a
channel whose activations sum to 0 gets weight 0. Cost: one forward and one backward pass to the
layer.
"""

from __future__ import annotations

import torch

from convscope.cam.base import layer_forward, per_layer, weighted_sum
from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method


def xgradcam_weights(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_{ij} A_{ij} g_{ij} / \\sum_{ij} A_{ij}` per channel, (N, K, h, w) -> (N, K)."""
    total = a.sum(dim=(2, 3))
    nonzero = total != 0
    safe = torch.where(nonzero, total, torch.ones_like(total))
    return torch.where(nonzero, (a * g).sum(dim=(2, 3)) / safe, 0.0)


@register_method(
    "xgradcam",
    family="cam",
    needs_layer=True,
    paper="Fu et al. 2020, Axiom-based Grad-CAM (arXiv:2008.02312)",
    passes="1 forward + 1 backward to the layer",
    summary="ReLU(sum_k w_k A_k), w_k = activation-weighted mean of dS/dA_k",
)
def xgradcam(ctx: Context) -> MethodOutput:
    """:math:`\\mathrm{ReLU}(\\sum_k \\alpha_k^c A^k)`, :math:`\\alpha_k^c = \\sum_{ij} A^k_{ij}
    \\partial S^c/\\partial A^k_{ij} / \\sum_{ij} A^k_{ij}` (Fu et al. 2020).

    ``extras``: ``weights`` (one (N, K) tensor per layer).
    """
    p = layer_forward(ctx, gradients=True, method="XGrad-CAM")
    weights = per_layer(p, xgradcam_weights)
    maps = [weighted_sum(w, a) for w, a in zip(weights, p.activations)]
    return MethodOutput(maps, p.output, extras={"weights": weights})
