"""Grad-CAM.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017 (arXiv:1610.02391), eqs. 1-2, as in the lecture notes:

.. math::
    \\alpha_k^c = \\frac{1}{Z} \\sum_{i,j} \\frac{\\partial y^c}{\\partial A^k_{ij}}, \\qquad
    L^c = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k^c A^k\\Big)

:math:`y^c` is the pre-softmax score of class :math:`c`, :math:`A^k` channel :math:`k` of the
chosen layer's output (h x w, :math:`Z = hw`). Cost: one forward pass and one backward pass to the
layer.
"""

from __future__ import annotations

from convscope.cam.base import layer_forward, per_layer, weighted_sum
from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method


@register_method(
    "gradcam",
    family="cam",
    needs_layer=True,
    paper="Selvaraju et al. 2017, Grad-CAM (arXiv:1610.02391)",
    passes="1 forward + 1 backward to the layer",
    summary="ReLU(sum_k mean_ij(dS/dA_k) A_k) at a conv layer",
)
def gradcam(ctx: Context) -> MethodOutput:
    """:math:`\\mathrm{ReLU}(\\sum_k \\alpha_k^c A^k)` with :math:`\\alpha_k^c` the spatial mean of
    :math:`\\partial y^c/\\partial A^k` (Selvaraju et al. 2017)."""
    p = layer_forward(ctx, gradients=True, method="Grad-CAM")
    return MethodOutput(per_layer(p, lambda a, g: weighted_sum(g.mean(dim=(2, 3)), a)), p.output)
