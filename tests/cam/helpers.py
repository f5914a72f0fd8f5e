"""Shared by the CAM-family tests (in the style of tests/parity/test_reference_parity.py).

Every reference runs on its own ``copy.deepcopy`` of the model in eval mode; layer activations and
gradients for the hand-written references come from captum's
``compute_layer_gradients_and_eval`` (captum's own hooks, on that copy), or, for a module that
runs more than once, from the model's pieces called by hand.
"""

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
from tests.reference import PHOTOS, RTOL, assert_no_hooks, assert_parity, photos, reference_copy  # noqa: F401

TINY_TARGETS = [0, 3, 1, 4]
LITE0_TARGETS = [967, 281, 560, 812]  # espresso, tabby, football helmet (2nd), space shuttle (4th)
# (with [967, 281, 3, 500] of the parity tests, some rectified maps of images 3-4 are all zero)


def run_method(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    target: TargetSpec,
    layers: list[str],
    score: str = "logit",
    **options,
) -> MethodOutput:
    """Call a registered method directly, as :func:`convscope.explain` does, to read all of
    its ``extras`` per layer."""
    with preserved(model):
        ctx = Context(
            model,
            x,
            resolve_targets(target, x.shape[0], score=score),
            [resolve_layer(model, layer) for layer in layers],
        )
        return get_method(name).fn(ctx, **options)


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
