"""CAM, the original class activation map.

Zhou, Khosla, Lapedriza, Oliva & Torralba, "Learning Deep Features for Discriminative
Localization", CVPR 2016 (arXiv:1512.04150), section 2: for a network whose last feature map
:math:`f_k(x, y)` is globally average-pooled and fed to one linear layer with weights
:math:`w_k^c`, the class score is :math:`S_c = \\sum_k w_k^c \\frac{1}{Z}\\sum_{x,y} f_k(x, y) + b_c`
and the class activation map is

.. math::  M_c(x, y) = \\sum_k w_k^c f_k(x, y)

(not rectified, no bias). No gradient: one forward pass. The head is checked numerically: the
linear layer applied to the global average of the chosen layer's output must give the model's
output (to a relative 1e-4); otherwise CAM does not apply and the method says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convscope.cam.base import weighted_sum
from convscope.core.context import Context, MethodOutput
from convscope.core.layers import LayerRef, resolve_layer
from convscope.core.recorder import Recorder
from convscope.core.registry import register_method
from convscope.errors import LayerError, MethodError

RTOL = 1e-4


def _not_a_cam_head(ref: LayerRef, why: str) -> MethodError:
    return MethodError(
        f"cam needs a network that ends in global average pooling and one linear layer after "
        f"layer {ref.spec!r} ({why}); use gradcam"
    )


@register_method(
    "cam",
    family="cam",
    needs_layer=True,
    paper="Zhou et al. 2016, Learning Deep Features for Discriminative Localization "
    "(arXiv:1512.04150)",
    passes="1 forward; no backward",
    summary="sum_k w_k^c A_k with w the final linear layer's weights (GAP + linear heads only)",
)
def cam(ctx: Context, *, fc_layer: str | None = None) -> MethodOutput:
    """:math:`M_c = \\sum_k w_k^c A_k`, :math:`w^c` the row of class :math:`c` in the final linear
    layer (Zhou et al. 2016).

    Options: ``fc_layer`` the name of that ``nn.Linear`` (default: the last ``nn.Linear`` whose
    output is the model's output, else the last one that runs in the forward pass). It must take the global average of the layer's output: that is checked
    on the batch. Explains class logits only (``score="logit"``, class targets).

    ``extras``: ``fc_layer`` (its name), ``weights`` (one (N, K) tensor per layer).
    """
    model = ctx.model
    if fc_layer is not None:
        ref = resolve_layer(model, fc_layer)
        if not isinstance(ref.module, nn.Linear):
            raise MethodError(
                f"cam: fc_layer {fc_layer!r} is a {type(ref.module).__name__}, not an nn.Linear"
            )
        linears = [LayerRef(ref.name, ref.module, None)]
    else:
        linears = [
            LayerRef(name, m, None)
            for name, m in model.named_modules()
            if name and isinstance(m, nn.Linear)
        ]
    names = {r.name for r in linears}
    with torch.no_grad(), Recorder(model, [*ctx.layers, *linears]) as rec:
        output = model(ctx.x)
        ctx.target.scores(output)
        acts = [rec.activation(ref) for ref in ctx.layers]
    ran = [name for name, _ in rec.order if name in names]
    for ref, a in zip(ctx.layers, acts):
        if a.ndim != 4:
            raise LayerError(
                f"layer {ref.spec!r} outputs shape {tuple(a.shape)}, not a 4-D (N, C, H, W) "
                "feature map; cam needs a convolutional layer"
            )
    if not ran:
        what = f"{fc_layer!r} did not run" if fc_layer else "no nn.Linear ran in the forward pass"
        raise _not_a_cam_head(ctx.layers[0], what)
    fc_name = ran[-1]
    if fc_layer is None:  # the linear layer that gives the model's output, when one does
        recorded = rec.activations()
        for name in reversed(ran):
            a = recorded.get(name)
            if isinstance(a, torch.Tensor) and a.shape == output.shape and torch.equal(a, output):
                fc_name = name
                break
    fc: nn.Linear = dict(model.named_modules())[fc_name]
    if ctx.target.fn is not None or ctx.target.score != "logit":
        raise MethodError(
            "cam explains a class logit through the final layer's weights; it takes class "
            f"targets with score='logit' (not {'a callable' if ctx.target.fn else ctx.target.score}"
            "); use gradcam"
        )
    weights = fc.weight.detach()
    bias = None if fc.bias is None else fc.bias.detach()
    out = output.detach()
    maps, used = [], []
    for ref, a in zip(ctx.layers, acts):
        if weights.shape[1] != a.shape[1]:
            raise _not_a_cam_head(
                ref, f"{fc_name!r} takes {weights.shape[1]} features, the layer has {a.shape[1]}"
            )
        head = F.linear(a.mean(dim=(2, 3)), weights, bias)
        scale = out.abs().max().clamp_min(torch.finfo(out.dtype).tiny)
        if head.shape != out.shape or bool((head - out).abs().max() > RTOL * scale):
            raise _not_a_cam_head(
                ref, f"{fc_name}(global average of the layer) is not the model's output"
            )
        w = weights[ctx.target.indices]  # (N, K)
        used.append(w)
        maps.append(weighted_sum(w, a, relu=False))
    return MethodOutput(maps, out, extras={"fc_layer": fc_name, "weights": used})
