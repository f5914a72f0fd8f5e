"""What the method tests share: targets, small models computed by hand, and calling a registered
method directly (the parity criterion and the reference copies are in tests/reference.py; the
``lite0`` and ``lite0_x`` fixtures in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from captum._utils.gradient import compute_layer_gradients_and_eval
from torch import nn

from convscope.core.context import Context, MethodOutput
from convscope.core.guard import preserved
from convscope.core.layers import resolve_layer
from convscope.core.registry import get_method
from convscope.core.targets import TargetSpec, resolve_targets
from tests.reference import assert_no_hooks, reference_copy

TINY_TARGETS = [0, 3, 1, 4]
# EfficientNet-Lite0 on the four photos of tests/reference.py (PHOTOS):
LITE0_TARGETS = [967, 281, 3, 500]  # espresso, tabby cat, tiger shark, cliff dwelling
# for the CAM family: with LITE0_TARGETS some rectified maps of images 3-4 are all zero
LITE0_CAM_TARGETS = [
    967,
    281,
    560,
    812,
]  # espresso, tabby, football helmet (2nd), space shuttle (4th)


def run_method(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    target: TargetSpec = "top1",
    layers: list[str] = (),
    score: str = "logit",
    **options,
) -> tuple[MethodOutput, Context]:
    """Call a registered method directly, as :func:`convscope.explain` does (under
    :func:`preserved`), for options ``explain`` keeps for itself (``batch_size``) and to read its
    ``extras`` per layer; returns the method's output and the context it ran with."""
    with preserved(model):
        ctx = Context(
            model,
            x,
            resolve_targets(target, x.shape[0], score=score),
            [resolve_layer(model, layer) for layer in layers],
        )
        return get_method(name).fn(ctx, **options), ctx


class LinearImage(nn.Module):
    """f(x) = W x + b on a flattened image: dS_c/dx = W_c everywhere. ``W`` is
    ``sin(0, 1, 2, ...)`` row by row; ``b`` is ``(0, 1, ..)`` (``bias=False``: zero)."""

    def __init__(
        self, shape: tuple[int, int, int] = (3, 8, 8), n_classes: int = 3, bias: bool = True
    ) -> None:
        super().__init__()
        self.shape = shape
        self.fc = nn.Linear(shape[0] * shape[1] * shape[2], n_classes)
        with torch.no_grad():
            n = self.fc.weight.numel()
            self.fc.weight.copy_(torch.arange(n, dtype=torch.float32).view_as(self.fc.weight).sin())
            self.fc.bias.copy_(torch.arange(n_classes, dtype=torch.float32) if bias else 0)

    def weight(self, c: int) -> torch.Tensor:
        return self.fc.weight[c].detach().view(self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


# -- the CAM family's hand-written references ---------------------------------------------------
def layer_grads(
    model: nn.Module, layer: str, x: torch.Tensor, targets: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations A, gradients dS_t/dA) of a module that runs once, from captum, on a copy."""
    ref = reference_copy(model)
    module = dict(ref.named_modules())[layer]
    (grads,), (acts,) = compute_layer_gradients_and_eval(ref, module, x.clone(), target_ind=targets)
    assert_no_hooks(ref)
    return acts.detach(), grads.detach()


def fused(maps: list[torch.Tensor]) -> torch.Tensor:
    """LayerCAM's fusion of per-layer maps at one size: each divided by its per-image max |map|,
    then the elementwise max."""
    scaled = [m / m.abs().flatten(1).amax(dim=1).clamp_min(1e-30)[:, None, None] for m in maps]
    return torch.stack(scaled).amax(dim=0)


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[
        :, 0
    ]


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()
