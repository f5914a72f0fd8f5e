"""HiResCAM.

Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
neural networks" (arXiv:2011.08891): the gradient multiplies the activations elementwise instead
of being averaged per channel first,

.. math::
    L^c = \\mathrm{ReLU}\\Big(\\sum_k \\frac{\\partial S^c}{\\partial A^k} \\odot A^k\\Big)

For a network ending in global average pooling and one linear layer this is CAM (divided by
:math:`hw`), rectified; for other heads it shows the locations the score used. The rectification:
the authors' code computes the sum and then clips it at 0 before normalizing (their
``clip_and_norm_volume``, the same step as for their Grad-CAM), as pytorch-grad-cam does; it is
applied here so ``hirescam`` and ``gradcam`` compare like for like. Cost: one forward and one
backward pass to the layer.
"""

from __future__ import annotations

from convscope.cam.base import layer_forward, per_layer
from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method


@register_method(
    "hirescam",
    family="cam",
    needs_layer=True,
    paper="Draelos & Carin 2020, HiResCAM (arXiv:2011.08891)",
    passes="1 forward + 1 backward to the layer",
    summary="ReLU(sum_k dS/dA_k * A_k), elementwise: no averaging of the gradient",
)
def hirescam(ctx: Context) -> MethodOutput:
    """:math:`\\mathrm{ReLU}(\\sum_k \\partial S^c/\\partial A^k \\odot A^k)` (Draelos & Carin 2020)."""
    p = layer_forward(ctx, gradients=True, method="HiResCAM")
    return MethodOutput(per_layer(p, lambda a, g: (g * a).sum(dim=1).clamp_min(0)), p.output)
