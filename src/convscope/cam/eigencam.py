"""Eigen-CAM.

Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020
(arXiv:2008.00299), section III: the layer's output for one image, reshaped to
:math:`O \\in \\mathbb{R}^{hw \\times K}`, is factored as :math:`O = U \\Sigma V^\\top` and the map
is its projection on the first right-singular vector,

.. math::  L = O\\, v_1 \\quad (\\text{reshaped to } h \\times w)

As in the paper, :math:`O` is not centered (pytorch-grad-cam subtracts the mean of each channel
first). The sign of a singular vector is arbitrary; here it is chosen so that each map sums to
:math:`\\geq 0` (for non-negative activations, after a ReLU, the first component of the uncentered
:math:`O` is then non-negative everywhere). No gradient and no class: the map is the same for
every target (the target only picks what ``Explanation.targets`` reports). Cost: one forward pass
and one small eigen-decomposition per image (of the (hw x hw) Gram matrix).
"""

from __future__ import annotations

import torch

from convscope.cam.base import layer_forward, per_layer
from convscope.core.context import Context, MethodOutput
from convscope.core.registry import register_method


def first_component(a: torch.Tensor) -> torch.Tensor:
    """Projection of each image's (hw, K) activations on their first right-singular vector,
    sign fixed so the map sums to >= 0: (N, K, h, w) -> (N, h, w).

    Computed through the smaller Gram matrix instead of an SVD of the whole map: with
    :math:`O = U \\Sigma V^\\top`, :math:`O v_1 = \\sigma_1 u_1`, and :math:`u_1` and
    :math:`\\sigma_1^2` are the top eigenvector and eigenvalue of :math:`O O^\\top` (hw x hw, 49 x 49
    at a 7 x 7 head); when the layer has fewer channels than positions, :math:`v_1` is the top
    eigenvector of :math:`O^\\top O` (K x K). The eigen-decomposition runs in float64, so the map
    matches the SVD's to float32 precision.
    """
    n, k, h, w = a.shape
    o = a.flatten(2).transpose(1, 2).double()  # (N, hw, K)
    if h * w <= k:
        vals, vecs = torch.linalg.eigh(o @ o.transpose(1, 2))  # ascending eigenvalues
        proj = vecs[..., -1] * vals[:, -1:].clamp_min(0).sqrt()  # sigma_1 u_1, (N, hw)
    else:
        _, vecs = torch.linalg.eigh(o.transpose(1, 2) @ o)
        proj = (o @ vecs[..., -1:])[..., 0]  # O v_1
    sign = torch.where(proj.sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign).reshape(n, h, w).to(a.dtype)


@register_method(
    "eigencam",
    family="cam",
    needs_layer=True,
    paper="Muhammad & Yeasin 2020, Eigen-CAM (arXiv:2008.00299)",
    passes="1 forward; no backward",
    summary="projection of the activations on their first principal component; "
    "class-agnostic (same map for every target)",
)
def eigencam(ctx: Context) -> MethodOutput:
    """:math:`O v_1`, :math:`v_1` the first right-singular vector of the (hw, K) activations
    (Muhammad & Yeasin 2020); the target does not change the map."""
    p = layer_forward(ctx, gradients=False, method="Eigen-CAM")
    return MethodOutput(per_layer(p, lambda a, _: first_component(a)), p.output)
