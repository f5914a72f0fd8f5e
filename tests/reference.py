"""What the parity tests share: the parity criterion, private model copies for references, the
no-hooks-left check and the four real photos."""

from __future__ import annotations

import copy

import torch
from PIL import Image
from torch import nn

RTOL = 1e-5
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


def assert_parity(ours: torch.Tensor, ref: torch.Tensor, what: str, rtol: float = RTOL) -> float:
    """Elementwise |ours - ref| <= rtol * max|ref| for each image; returns the worst ratio."""
    ours, ref = torch.as_tensor(ours).detach(), torch.as_tensor(ref).detach()
    ours, ref = ours.double().cpu(), ref.double().cpu()
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    scale = ref.abs().flatten(1).amax(dim=1)
    assert bool((scale > 0).all()), f"{what}: a reference map is all zero ({scale.tolist()})"
    diff = (ours - ref).abs().flatten(1).amax(dim=1)
    ratio = (diff / scale).max().item()
    print(f"PARITY {what}: max |diff| / max |ref| = {ratio:.3e}")
    assert ratio <= rtol, f"{what}: per-image max |diff| / max |ref| = {(diff / scale).tolist()}"
    return ratio


def reference_copy(model: nn.Module) -> nn.Module:
    """A private copy of ``model`` in eval mode for a reference to run (and hook into), so that
    nothing a reference leaves behind can reach the model convscope explains."""
    ref = copy.deepcopy(model).eval()
    assert not any(m.training for m in ref.modules())
    return ref


def assert_no_hooks(model: nn.Module) -> None:
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            assert not getattr(m, attr), f"{name or 'model'} has {attr} left"


def photos() -> list[Image.Image]:
    import skimage.data

    return [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
