"""LayerCAM.

Jiang, Zhang, Hou, Cheng & Wei, "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 2021, section III: every location gets its own weight, the positive part of
the gradient there,

.. math::
    \\hat A^k_{ij} = \\mathrm{ReLU}\\Big(\\frac{\\partial S^c}{\\partial A^k_{ij}}\\Big) A^k_{ij},
    \\qquad M^c = \\mathrm{ReLU}\\Big(\\sum_k \\hat A^k\\Big)

Cost: one forward and one backward pass to the layer. Several layers are fused by the core (each
map scaled by its per-image maximum, then the elementwise maximum); the paper's extra
:math:`\\tanh(2 M / \\max M)` rescaling of shallow layers before fusing is not applied here.
"""

from __future__ import annotations

from convscope.cam.base import layer_forward, per_layer
from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method


@register_method(
    "layercam",
    family="cam",
    needs_layer=True,
    paper="Jiang et al. 2021, LayerCAM (IEEE TIP, doi:10.1109/TIP.2021.3089943)",
    passes="1 forward + 1 backward to the layer",
    summary="ReLU(sum_k ReLU(dS/dA_k) * A_k), a weight per location; good at shallow layers",
)
def layercam(ctx: Context) -> MethodOutput:
    """:math:`\\mathrm{ReLU}(\\sum_k \\mathrm{ReLU}(\\partial S^c/\\partial A^k) \\odot A^k)`
    (Jiang et al. 2021)."""
    p = layer_forward(ctx, gradients=True, method="LayerCAM")
    maps = per_layer(p, lambda a, g: (g.clamp_min(0) * a).sum(dim=1).clamp_min(0))
    return MethodOutput(maps, p.output)
